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
	if len(args) == 0 || args[0] != "list" {
		return usageError{"want 'keyplane ike list [-s SOCKET] [-json]'"}
	}
	fs := newFlags(e, "ike list")
	cf := addCtlFlags(fs)
	if err := fs.Parse(args[1:]); err != nil {
		return err
	}
	r, err := cf.client().Do(ctx, control.Request{Cmd: "ike-list"})
	if err != nil {
		return err
	}
	if cf.json {
		return writeJSON(e.stdout, r.IKESAs)
	}
	printIKESAs(e.stdout, r.IKESAs)
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
