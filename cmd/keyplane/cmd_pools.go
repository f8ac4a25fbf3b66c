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
	register(&command{name: "pools", summary: "the daemon's virtual IP pools ('pools list')", subs: []*command{{
		name: "list", summary: "list the virtual IP pools and their leases",
		help: `One line per lease: its pool (addresses, size, leases online and offline), the identity
it belongs to, its address and whether an IKE SA holds it (online) or it waits for that identity
to come back (offline). A pool without leases has one line of its own.
With -json an array of pools, their leases inside; with --stream one per line.`,
		run: runPoolsList,
	}}})
}

func runPoolsList(ctx context.Context, e *env, args []string) error {
	return runCtlList(ctx, e, "pools-list", args, func(r *control.Response, l *jsonList) error {
		pools, err := decodePools(r)
		if err != nil {
			return err
		}
		for _, p := range pools {
			if err := l.add(p); err != nil {
				return err
			}
		}
		return nil
	}, func(r *control.Response, w io.Writer) { printPools(w, r) })
}

// handlePools answers pools-list from the engine.
func (d *daemon) handlePools(srv *control.Server) {
	srv.Handle("pools-list", func(ctx context.Context, req control.Request) (control.Response, error) {
		ps, err := d.eng.Pools(ctx)
		if err != nil {
			return control.Response{}, err
		}
		return data(ps)
	})
}

func decodePools(r *control.Response) ([]ike.PoolInfo, error) {
	var ps []ike.PoolInfo
	if err := json.Unmarshal(r.Data, &ps); err != nil {
		return nil, fmt.Errorf("pools-list reply: %w", err)
	}
	return ps, nil
}

func printPools(w io.Writer, r *control.Response) {
	ps, err := decodePools(r)
	if err != nil {
		fmt.Fprintln(w, err)
		return
	}
	tw := tabwriter.NewWriter(w, 0, 4, 2, ' ', 0)
	fmt.Fprintln(tw, "POOL\tADDRS\tSIZE\tONLINE\tOFFLINE\tIDENTITY\tADDRESS\tSTATE")
	leases := 0
	for _, p := range ps {
		head := fmt.Sprintf("%s\t%s\t%d\t%d\t%d", p.Name, p.Addrs, p.Size, p.Online, p.Offline)
		if len(p.Leases) == 0 {
			fmt.Fprintf(tw, "%s\t-\t-\t-\n", head)
		}
		for i, l := range p.Leases {
			leases++
			if i > 0 {
				head = "\t\t\t\t"
			}
			state := "offline"
			if l.Online {
				state = "online"
			}
			fmt.Fprintf(tw, "%s\t%s\t%s\t%s\n", head, l.Identity, l.Addr, state)
		}
	}
	tw.Flush()
	fmt.Fprintf(w, "%d pools, %d leases\n", len(ps), leases)
}
