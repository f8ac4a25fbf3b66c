package main

import (
	"context"
	"fmt"
	"text/tabwriter"

	"github.com/keyplane/keyplane/kernelops"
)

func init() {
	register(&command{name: "caps", summary: "show what a dataplane can do, and why not where it can't", run: runCaps})
}

type capJSON struct {
	Name    string `json:"name"`
	Present bool   `json:"present"`
	Note    string `json:"note,omitempty"`
}

func runCaps(ctx context.Context, e *env, args []string) error {
	fs := newFlags(e, "caps")
	bf := addBackendFlags(fs)
	if err := e.parse(fs, args); err != nil {
		return err
	}
	b, err := bf.open(ctx)
	if err != nil {
		return err
	}
	defer b.Close()
	c := b.Capabilities()
	if bf.json {
		out := struct {
			Backend         string                 `json:"backend"`
			Caps            []capJSON              `json:"caps"`
			Algorithms      kernelops.AlgorithmSet `json:"algorithms"`
			MaxReplayWindow uint32                 `json:"max_replay_window"`
			SPIMin          string                 `json:"spi_min"`
			SPIMax          string                 `json:"spi_max"`
		}{Backend: b.Name(), Algorithms: c.Algorithms, MaxReplayWindow: c.MaxReplayWindow, SPIMin: spi32(c.SPIMin), SPIMax: spi32(c.SPIMax)}
		for _, x := range kernelops.AllCaps() {
			out.Caps = append(out.Caps, capJSON{x.String(), c.Has(x), c.Notes[x]})
		}
		return writeJSON(e.stdout, out)
	}
	fmt.Fprintf(e.stdout, "backend %s\n\n", b.Name())
	tw := tabwriter.NewWriter(e.stdout, 0, 4, 2, ' ', 0)
	fmt.Fprintln(tw, "CAPABILITY\tPRESENT\tNOTE")
	for _, x := range kernelops.AllCaps() {
		yes := "no"
		if c.Has(x) {
			yes = "yes"
		}
		fmt.Fprintf(tw, "%s\t%s\t%s\n", x, yes, c.Notes[x])
	}
	tw.Flush()
	fmt.Fprintf(e.stdout, "\nencryption: %v\nintegrity:  %v\nmax replay window: %d\nSPI range: %s..%s\n",
		c.Algorithms.Encryption, c.Algorithms.Integrity, c.MaxReplayWindow, spi32(c.SPIMin), spi32(c.SPIMax))
	return nil
}
