package main

import (
	"context"
	"encoding/json"
	"fmt"
	"io"
	"text/tabwriter"
	"time"

	"github.com/keyplane/keyplane/iana"
	"github.com/keyplane/keyplane/kernelops"
)

func init() {
	register(&command{name: "sa", summary: "list the dataplane's SAs with counters ('sa list')", run: runSA})
	register(&command{name: "policy", summary: "list the dataplane's policies ('policy list')", run: runPolicy})
}

func listArgs(e *env, name string, args []string) (*backendFlags, error) {
	if len(args) == 0 || args[0] != "list" {
		return nil, usageError{fmt.Sprintf("want 'keyplane %s list [flags]'", name)}
	}
	fs := newFlags(e, name+" list")
	bf := addBackendFlags(fs)
	return bf, fs.Parse(args[1:])
}

func runSA(ctx context.Context, e *env, args []string) error {
	return runDump(ctx, e, "sa", args, func(sad kernelops.SAD, asJSON bool) error {
		return printSAs(e.stdout, sad.SAs(ctx), asJSON)
	})
}

func runPolicy(ctx context.Context, e *env, args []string) error {
	return runDump(ctx, e, "policy", args, func(spd kernelops.SPD, asJSON bool) error {
		return printPolicies(e.stdout, spd.Policies(ctx), asJSON)
	})
}

// runDump opens the dataplane for 'NAME list' and hands facet F to print.
func runDump[F any](ctx context.Context, e *env, name string, args []string, print func(F, bool) error) error {
	bf, err := listArgs(e, name, args)
	if err != nil {
		return err
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
	return print(f, bf.json)
}

// encodeLines streams a dump as JSON lines (one object per entry, so a
// 100k-entry dump never sits in memory).
func encodeLines[T any](w io.Writer, seq func(func(*T, error) bool)) error {
	enc := json.NewEncoder(w)
	for x, err := range seq {
		if err != nil {
			return err
		}
		if err := enc.Encode(x); err != nil {
			return err
		}
	}
	return nil
}

// printSAs streams a dump as a table or as JSON lines.
func printSAs(w io.Writer, sas func(func(*kernelops.SAEntry, error) bool), asJSON bool) error {
	if asJSON {
		return encodeLines(w, sas)
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
		fmt.Fprintf(tw, "%s\t%s\t%#x\t%s\t%s\t%d\t%d\t%s\n", sa.ID, sa.Mode, sa.ReqID, cipher, sa.State,
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

func printPolicies(w io.Writer, ps func(func(*kernelops.PolicyEntry, error) bool), asJSON bool) error {
	if asJSON {
		return encodeLines(w, ps)
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
			tmpl = fmt.Sprintf("%s %s reqid %#x", t.Proto, t.Mode, t.ReqID)
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
