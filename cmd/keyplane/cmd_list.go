package main

import (
	"context"
	"fmt"
	"io"
	"text/tabwriter"
	"time"

	"github.com/keyplane/keyplane/iana"
	"github.com/keyplane/keyplane/kernelops"
)

func init() {
	register(&command{name: "sa", summary: "a dataplane's SAs ('sa list')", subs: []*command{{
		name: "list", summary: "list a dataplane's SAs with counters, read directly (no daemon)",
		help: processLocalHelp + "\nWith -json an array of objects, with --stream one per line (the dump is streamed either way).",
		run:  runSAList,
	}}})
	register(&command{name: "policy", summary: "a dataplane's policies ('policy list')", subs: []*command{{
		name: "list", summary: "list a dataplane's policies, read directly (no daemon)",
		help: processLocalHelp + "\nWith -json an array of objects, with --stream one per line.",
		run:  runPolicyList,
	}}})
}

const processLocalHelp = `Reads the dataplane itself: the kernel's SAD and SPD for xfrm and pfkey, VPP's for vpp.
The nokernel backend is refused: its state lives only inside the process that opened it
(the daemon), so a command would see a fresh, empty model. For a daemon's SAs on any
backend use 'keyplane child list'.`

func runSAList(ctx context.Context, e *env, args []string) error {
	return runDump(ctx, e, args, func(sad kernelops.SAD, bf *backendFlags) error {
		return printSAs(e.stdout, sad.SAs(ctx), bf)
	})
}

func runPolicyList(ctx context.Context, e *env, args []string) error {
	return runDump(ctx, e, args, func(spd kernelops.SPD, bf *backendFlags) error {
		return printPolicies(e.stdout, spd.Policies(ctx), bf)
	})
}

// errProcessLocal refuses a backend whose state only its opener sees.
func errProcessLocal(name, what string) error {
	return fmt.Errorf("the %s backend keeps its state inside the process that opened it: %s here would read a fresh, empty model, not the daemon's; "+
		"use 'keyplane child list' (and 'keyplane events') for a running daemon, or --backend xfrm|pfkey|vpp for a real dataplane", name, what)
}

// runDump opens the dataplane and hands facet F to print.
func runDump[F any](ctx context.Context, e *env, args []string, print func(F, *backendFlags) error) error {
	fs := newFlags(e, e.path)
	bf := addBackendFlags(fs)
	fs.BoolVar(&bf.stream, "stream", false, "with -json: one JSON object per line instead of an array")
	if err := e.parse(fs, args); err != nil {
		return err
	}
	if fs.NArg() != 0 {
		return usageError{fmt.Sprintf("no arguments, got %q", fs.Args())}
	}
	if processLocal[bf.name] {
		return errProcessLocal(bf.name, "'keyplane "+e.path+"'")
	}
	b, err := bf.open(ctx)
	if err != nil {
		return err
	}
	defer b.Close()
	f, err := kernelops.As[F](b)
	if err != nil {
		return err
	}
	return print(f, bf)
}

// encodeList writes a dump as a JSON list, identifiers in the CLI's
// format; the list is closed even when the dump fails midway.
func encodeList[T any](w io.Writer, seq func(func(*T, error) bool), stream bool) error {
	l := &jsonList{w: w, stream: stream}
	err := func() error {
		for x, err := range seq {
			if err != nil {
				return err
			}
			v, err := hexIDs(x)
			if err != nil {
				return err
			}
			if err := l.add(v); err != nil {
				return err
			}
		}
		return nil
	}()
	if eerr := l.end(); err == nil {
		err = eerr
	}
	return err
}

// printSAs streams a dump as a table or as JSON.
func printSAs(w io.Writer, sas func(func(*kernelops.SAEntry, error) bool), bf *backendFlags) error {
	if bf.json {
		return encodeList(w, sas, bf.stream)
	}
	tw := tabwriter.NewWriter(w, 0, 4, 2, ' ', 0)
	fmt.Fprintln(tw, "SA\tMODE\tREQID\tCIPHER\tSTATE\tBYTES\tPACKETS\tLAST USED")
	n := 0
	for sa, err := range sas {
		if err != nil {
			tw.Flush()
			return err
		}
		n++
		cipher := sa.Encryption.ID.String()
		if sa.Integrity.ID != iana.IntegNone {
			cipher += "+" + sa.Integrity.ID.String()
		}
		fmt.Fprintf(tw, "%s\t%s\t%s\t%s\t%s\t%d\t%d\t%s\n", sa.ID, sa.Mode, reqid(sa.ReqID), cipher, sa.State,
			sa.Counters.Bytes, sa.Counters.Packets, ago(sa.Counters.LastUsed))
	}
	tw.Flush()
	fmt.Fprintf(w, "%d SAs\n", n)
	return nil
}

func ago(t time.Time) string {
	if t.IsZero() {
		return "-"
	}
	return t.Format(time.TimeOnly)
}

func printPolicies(w io.Writer, ps func(func(*kernelops.PolicyEntry, error) bool), bf *backendFlags) error {
	if bf.json {
		return encodeList(w, ps, bf.stream)
	}
	tw := tabwriter.NewWriter(w, 0, 4, 2, ' ', 0)
	fmt.Fprintln(tw, "SELECTOR\tDIR\tACTION\tPRIORITY\tTEMPLATE")
	n := 0
	for p, err := range ps {
		if err != nil {
			tw.Flush()
			return err
		}
		n++
		tmpl := "-"
		if len(p.Templates) > 0 {
			t := p.Templates[0]
			tmpl = fmt.Sprintf("%s %s reqid %s", t.Proto, t.Mode, reqid(t.ReqID))
			if t.Mode == kernelops.ModeTunnel {
				tmpl += fmt.Sprintf(" %s->%s", t.Src, t.Dst)
			}
		}
		fmt.Fprintf(tw, "%s\t%s\t%s\t%d\t%s\n", p.Selector, p.Dir, p.Action, p.Priority, tmpl)
	}
	tw.Flush()
	fmt.Fprintf(w, "%d policies\n", n)
	return nil
}
