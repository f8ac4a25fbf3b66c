package main

import (
	"context"
	"encoding/json"
	"fmt"
	"io"
	"text/tabwriter"

	"github.com/keyplane/keyplane/ike"
	"github.com/keyplane/keyplane/ike/control"
)

func init() {
	register(&command{name: "ike", summary: "list the daemon's IKE SAs with their children ('ike list')", run: runIKE})
}

func runIKE(ctx context.Context, e *env, args []string) error {
	return runCtlList(ctx, e, "ike", "ike-list", args, func(r *control.Response) (any, func(io.Writer)) {
		return r.IKESAs, func(w io.Writer) { printIKESAs(w, r.IKESAs) }
	})
}

// runCtlList runs 'NAME list': one control request, shown as a table or,
// with -json, as the JSON of what pick returns.
func runCtlList(ctx context.Context, e *env, name, cmd string, args []string,
	pick func(*control.Response) (any, func(io.Writer))) error {
	if len(args) == 0 || args[0] != "list" {
		return usageError{fmt.Sprintf("want 'keyplane %s list [-s SOCKET] [-json]'", name)}
	}
	fs := newFlags(e, name+" list")
	cf := addCtlFlags(fs)
	if err := fs.Parse(args[1:]); err != nil {
		return err
	}
	r, err := cf.client().Do(ctx, control.Request{Cmd: cmd})
	if err != nil {
		return err
	}
	data, table := pick(r)
	if cf.json {
		return writeJSON(e.stdout, data)
	}
	table(e.stdout)
	return nil
}

func writeJSON(w io.Writer, v any) error {
	enc := json.NewEncoder(w)
	enc.SetIndent("", "  ")
	return enc.Encode(v)
}

func printIKESAs(w io.Writer, sas []ike.IKESAInfo) {
	tw := tabwriter.NewWriter(w, 0, 4, 2, ' ', 0)
	fmt.Fprintln(tw, "NAME\tSTATE\tROLE\tSPI_I\tSPI_R\tLOCAL\tREMOTE\tSUITE\tNAT\tCHILDREN")
	for _, sa := range sas {
		nat := "-"
		switch {
		case sa.NATLocal && sa.NATRemote:
			nat = "both"
		case sa.NATLocal:
			nat = "local"
		case sa.NATRemote:
			nat = "remote"
		}
		fmt.Fprintf(tw, "%s\t%s\t%s\t%s\t%s\t%s\t%s\t%s\t%s\t%d\n", sa.Name, sa.State, sa.Role, sa.SPIi, sa.SPIr,
			sa.Local, sa.Remote, sa.Suite, nat, len(sa.Children))
	}
	tw.Flush()
	fmt.Fprintf(w, "%d IKE SAs\n", len(sas))
}
