package main

import (
	"context"
	"fmt"
	"io"

	"github.com/keyplane/keyplane/ike/control"
)

func init() {
	register(&command{name: "child", summary: "the daemon's child SAs ('child list')", subs: []*command{{
		name: "list", summary: "list the daemon's child SAs with the dataplane's counters",
		help: "One line per child SA: its unique ID (for terminate/rekey --child-id), name, IKE SA (ID and name), state, mode, SPIs, suite, selectors, byte and packet counters.\n" +
			"With -json an array of objects, with --stream one per line.\n" +
			"The daemon streams the list in batches; --limit N lists the children of the first N IKE SAs, --after ID those of the IKE SAs after that IKE SA ID.\n" +
			sinceHelp,
		run: runChildList,
	}}})
}

func runChildList(ctx context.Context, e *env, args []string) error {
	return runStreamList(ctx, e, "child-list", args, func(r *control.Response) []any {
		out := make([]any, 0, len(r.Children))
		for _, c := range r.Children {
			out = append(out, childOf(c))
		}
		return out
	}, newChildTable)
}

// newChildTable is child list's table.
func newChildTable(w io.Writer) *rowTable {
	return newRowTable(w, "ID\tCHILD\tIKE_ID\tIKE\tSTATE\tMODE\tREQID\tSPI_IN\tSPI_OUT\tSUITE\tLOCAL_TS\tREMOTE_TS\tBYTES_IN\tPKTS_IN\tBYTES_OUT\tPKTS_OUT\tENCAP\tOFFLOAD", "child SAs",
		func(tw io.Writer, r *control.Response) int {
			for _, x := range r.Children {
				c := childOf(x)
				state := c.State
				if c.RekeyNeeded {
					state += " (rekey)"
				}
				bin, pin, bout, pout := fmt.Sprint(c.BytesIn), fmt.Sprint(c.PacketsIn), fmt.Sprint(c.BytesOut), fmt.Sprint(c.PacketsOut)
				if c.CountersOmitted {
					bin, pin, bout, pout = "-", "-", "-", "-"
				}
				fmt.Fprintf(tw, "%d\t%s\t%d\t%s\t%s\t%s\t%s\t%s\t%s\t%s\t%s\t%s\t%s\t%s\t%s\t%s\t%v\t%s\n", c.ChildID, c.Name, c.IKEID, c.IKE, state, c.Mode, c.ReqID, c.SPIIn, c.SPIOut,
					c.Suite, c.LocalTS, c.RemoteTS, bin, pin, bout, pout, c.Encap, c.Offload)
			}
			return len(r.Children)
		})
}

func printChildren(w io.Writer, r *control.Response) {
	t := newChildTable(w)
	t.add(r)
	t.end()
}
