package main

import (
	"context"
	"fmt"
	"io"
	"text/tabwriter"

	"github.com/keyplane/keyplane/ike"
	"github.com/keyplane/keyplane/ike/control"
)

func init() {
	register(&command{name: "child", summary: "list the daemon's child SAs with dataplane counters ('child list')", run: runChild})
}

func runChild(ctx context.Context, e *env, args []string) error {
	return runCtlList(ctx, e, "child", "child-list", args, func(r *control.Response) (any, func(io.Writer)) {
		if r.Children == nil {
			r.Children = []ike.ChildInfo{} // JSON [] rather than null
		}
		return r.Children, func(w io.Writer) { printChildren(w, r.Children) }
	})
}

func printChildren(w io.Writer, chs []ike.ChildInfo) {
	tw := tabwriter.NewWriter(w, 0, 4, 2, ' ', 0)
	fmt.Fprintln(tw, "CHILD\tIKE\tSTATE\tMODE\tSPI_IN\tSPI_OUT\tSUITE\tLOCAL_TS\tREMOTE_TS\tBYTES_IN\tPKTS_IN\tBYTES_OUT\tPKTS_OUT\tENCAP")
	for _, c := range chs {
		state := c.State
		if c.RekeyNeeded {
			state += " (rekey)"
		}
		fmt.Fprintf(tw, "%s\t%s\t%s\t%s\t%s\t%s\t%s\t%s\t%s\t%d\t%d\t%d\t%d\t%v\n", c.Name, c.IKE, state, c.Mode, c.SPIIn, c.SPIOut,
			c.Suite, c.LocalTS, c.RemoteTS, c.BytesIn, c.PacketsIn, c.BytesOut, c.PacketsOut, c.Encap)
	}
	tw.Flush()
	fmt.Fprintf(w, "%d child SAs\n", len(chs))
}
