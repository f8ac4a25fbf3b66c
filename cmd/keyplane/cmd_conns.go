package main

import (
	"context"
	"encoding/json"
	"fmt"
	"io"
	"strings"
	"text/tabwriter"

	"github.com/keyplane/keyplane/ike/control"
)

func init() {
	register(&command{name: "conns", summary: "the daemon's configured connections ('conns list')", subs: []*command{{
		name: "list", summary: "list the daemon's configured connections and children, and what of them is up",
		help: `One line per child: its connection (addresses, identities, IKE SAs up of all), mode,
start action, selectors and how many of its CHILD SAs are installed. This is the running
configuration (after the last reload), not the file.
With -json an array of connections, their children inside; with --stream one per line.`,
		run: runConnsList,
	}}})
}

func runConnsList(ctx context.Context, e *env, args []string) error {
	return runCtlList(ctx, e, "conns-list", args, func(r *control.Response, l *jsonList) error {
		conns, err := decodeConns(r)
		if err != nil {
			return err
		}
		for _, c := range conns {
			if err := l.add(c); err != nil {
				return err
			}
		}
		return nil
	}, func(r *control.Response, w io.Writer) { printConns(w, r) })
}

func decodeConns(r *control.Response) ([]connView, error) {
	var conns []connView
	if err := json.Unmarshal(r.Data, &conns); err != nil {
		return nil, fmt.Errorf("conns-list reply: %w", err)
	}
	return conns, nil
}

func printConns(w io.Writer, r *control.Response) {
	conns, err := decodeConns(r)
	if err != nil {
		fmt.Fprintln(w, err)
		return
	}
	tw := tabwriter.NewWriter(w, 0, 4, 2, ' ', 0)
	fmt.Fprintln(tw, "CONNECTION\tLOCAL\tREMOTE\tIDS\tIKE_UP\tCHILD\tMODE\tSTART\tLOCAL_TS\tREMOTE_TS\tINSTALLED")
	nChildren := 0
	for _, c := range conns {
		n := func(p *int) string {
			if p == nil {
				return "-"
			}
			return fmt.Sprint(*p)
		}
		total := 0
		for _, k := range c.IKESAs {
			total += k
		}
		up := fmt.Sprintf("%s/%d", n(c.Up), total)
		first := true
		for _, ch := range c.Children {
			nChildren++
			cols := []string{"", "", "", "", ""}
			if first {
				cols = []string{c.Name, fmt.Sprintf("%s:%d", strings.Join(c.LocalAddrs, ","), c.LocalPort),
					fmt.Sprintf("%s:%d", strings.Join(c.RemoteAddrs, ","), c.RemotePort), c.LocalID + " -> " + c.RemoteID, up}
				first = false
			}
			fmt.Fprintf(tw, "%s\t%s\t%s\t%s\t%s\t%s\t%s\t%s\t%s\t%s\t%s\n", cols[0], cols[1], cols[2], cols[3], cols[4],
				ch.Name, ch.Mode, ch.StartAction, strings.Join(ch.LocalTS, ","), strings.Join(ch.RemoteTS, ","), n(ch.Installed))
		}
	}
	tw.Flush()
	fmt.Fprintf(w, "%d connections, %d children\n", len(conns), nChildren)
}
