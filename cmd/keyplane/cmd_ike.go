package main

import (
	"context"
	"fmt"
	"io"
	"text/tabwriter"

	"github.com/keyplane/keyplane/ike/control"
)

func init() {
	register(&command{name: "ike", summary: "the daemon's IKE SAs ('ike list')", subs: []*command{{
		name: "list", summary: "list the daemon's IKE SAs with their children",
		help: "One line per IKE SA: its unique ID (for terminate/rekey --ike-id), connection, state, role, SPIs, endpoints, suite, NAT, number of children.\n" +
			"With -json an array of objects (their children inside), with --stream one per line.",
		run: runIKEList,
	}}})
}

func runIKEList(ctx context.Context, e *env, args []string) error {
	return runCtlList(ctx, e, "ike-list", args, func(r *control.Response, l *jsonList) error {
		for _, sa := range r.IKESAs {
			if err := l.add(ikeOf(sa)); err != nil {
				return err
			}
		}
		return nil
	}, func(r *control.Response, w io.Writer) { printIKESAs(w, r) })
}

// runCtlList runs a list command: one control request, shown as a table
// or, with -json, as a list of what each puts.
func runCtlList(ctx context.Context, e *env, cmd string, args []string,
	each func(*control.Response, *jsonList) error, table func(*control.Response, io.Writer)) error {
	fs := newFlags(e, e.path)
	lf := addListFlags(e, fs)
	if err := e.parse(fs, args); err != nil {
		return err
	}
	if fs.NArg() != 0 {
		return usageError{fmt.Sprintf("no arguments, got %q", fs.Args())}
	}
	r, err := lf.client().Do(ctx, control.Request{Cmd: cmd})
	if err != nil {
		return err
	}
	if lf.json {
		l := &jsonList{w: e.stdout, stream: lf.stream}
		err := each(r, l)
		if eerr := l.end(); err == nil {
			err = eerr
		}
		return err
	}
	table(r, e.stdout)
	return nil
}

func printIKESAs(w io.Writer, r *control.Response) {
	tw := tabwriter.NewWriter(w, 0, 4, 2, ' ', 0)
	fmt.Fprintln(tw, "ID\tNAME\tSTATE\tROLE\tSPI_I\tSPI_R\tLOCAL\tREMOTE\tSUITE\tNAT\tCHILDREN")
	for _, x := range r.IKESAs {
		sa := ikeOf(x)
		nat := "-"
		switch {
		case sa.NATLocal && sa.NATRemote:
			nat = "both"
		case sa.NATLocal:
			nat = "local"
		case sa.NATRemote:
			nat = "remote"
		}
		fmt.Fprintf(tw, "%d\t%s\t%s\t%s\t%s\t%s\t%s\t%s\t%s\t%s\t%d\n", sa.IKEID, sa.Name, sa.State, sa.Role, sa.SPIi, sa.SPIr,
			sa.Local, sa.Remote, sa.Suite, nat, len(sa.Children))
	}
	tw.Flush()
	fmt.Fprintf(w, "%d IKE SAs\n", len(r.IKESAs))
}
