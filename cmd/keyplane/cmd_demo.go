//go:build !no_nokernel

package main

import (
	"context"
	"crypto/rand"
	"fmt"
	"net/netip"
	"time"

	"github.com/keyplane/keyplane/backends/nokernel"
	"github.com/keyplane/keyplane/iana"
	"github.com/keyplane/keyplane/kernelops"
)

func init() {
	register(&command{name: "demo", summary: "a child SA pair on the in-memory dataplane: traffic, counters, lifetimes", run: runDemo})
}

// runDemo shows the dataplane side of a tunnel on the nokernel model: the
// SAs and policies an IKE daemon installs for one child, traffic through
// them, and the soft and hard expiries the daemon would rekey on.
func runDemo(ctx context.Context, e *env, args []string) error {
	fs := newFlags(e, "demo")
	soft := fs.Duration("soft", 2*time.Second, "soft lifetime of the demo SAs")
	if err := e.parse(fs, args); err != nil {
		return err
	}
	w := e.stdout
	b, err := nokernel.Open(ctx, kernelops.Options{}.WithDefaults())
	if err != nil {
		return err
	}
	defer b.Close()
	sub, err := b.Subscribe(ctx, kernelops.SubscribeOptions{})
	if err != nil {
		return err
	}
	defer sub.Close()

	local, remote := netip.MustParseAddr("192.0.2.1"), netip.MustParseAddr("198.51.100.1")
	localNet, remoteNet := netip.MustParsePrefix("10.1.0.0/16"), netip.MustParsePrefix("10.2.0.0/16")
	if _, err := b.Net().AddInterface("eth0", netip.PrefixFrom(local, 24)); err != nil {
		return err
	}
	reqid := kernelops.DefaultReqIDMin + 1
	fmt.Fprintf(w, "== nokernel dataplane: one child %s <=> %s over %s <=> %s\n\n", localNet, remoteNet, local, remote)

	// Inbound SPI first, as an IKE responder allocates it before it answers.
	inSPI, err := b.AllocSPI(ctx, kernelops.SPIRequest{Src: remote, Dst: local, Proto: kernelops.ProtoESP, ReqID: reqid})
	if err != nil {
		return err
	}
	life := kernelops.Lifetimes{Soft: kernelops.Limits{AddTime: *soft}, Hard: kernelops.Limits{AddTime: 2 * *soft}}
	mk := func(src, dst netip.Addr, spi uint32) *kernelops.SA {
		k := make(kernelops.Key, 20)
		rand.Read(k)
		return &kernelops.SA{ID: kernelops.SAID{Src: src, Dst: dst, SPI: spi, Proto: kernelops.ProtoESP},
			Mode: kernelops.ModeTunnel, ReqID: reqid, ReplayWindow: 32, Lifetime: life,
			Encryption: kernelops.Encryption{ID: iana.EncrAESGCM16, KeyBits: 128, Key: k}}
	}
	out := mk(local, remote, 0xc1000001)
	in := mk(remote, local, inSPI)
	tmpl := func(src, dst netip.Addr) []kernelops.Template {
		return []kernelops.Template{{Src: src, Dst: dst, Proto: kernelops.ProtoESP, Mode: kernelops.ModeTunnel, ReqID: reqid}}
	}
	ops := []kernelops.Op{
		{Kind: kernelops.OpAddSA, SA: in},
		{Kind: kernelops.OpAddSA, SA: out},
		{Kind: kernelops.OpAddPolicy, Policy: &kernelops.Policy{Selector: kernelops.Selector{Src: localNet, Dst: remoteNet},
			Dir: kernelops.DirOut, Action: kernelops.ActionIPsec, Templates: tmpl(local, remote)}},
		{Kind: kernelops.OpAddPolicy, Policy: &kernelops.Policy{Selector: kernelops.Selector{Src: remoteNet, Dst: localNet},
			Dir: kernelops.DirIn, Action: kernelops.ActionIPsec, Templates: tmpl(remote, local)}},
		{Kind: kernelops.OpAddPolicy, Policy: &kernelops.Policy{Selector: kernelops.Selector{Src: remoteNet, Dst: localNet},
			Dir: kernelops.DirFwd, Action: kernelops.ActionIPsec, Templates: tmpl(remote, local)}},
	}
	if err := kernelops.Apply(ctx, b, ops); err != nil {
		return err
	}
	fmt.Fprintf(w, "installed: inbound SPI %#08x (allocated), outbound SPI %#08x, policies out/in/fwd\n\n", inSPI, out.ID.SPI)

	// Simulated traffic: 100 packets out, 60 in.
	for i := range 100 {
		if _, err := b.Inject(ctx, nokernel.Packet{Dir: kernelops.DirOut, Src: netip.MustParseAddr("10.1.0.5"),
			Dst: netip.MustParseAddr("10.2.0.9"), Proto: 17, SrcPort: 40000, DstPort: 53, Len: 120 + i}); err != nil {
			return err
		}
	}
	for range 60 {
		if _, err := b.Inject(ctx, nokernel.Packet{Dir: kernelops.DirIn, SA: in.ID, Src: netip.MustParseAddr("10.2.0.9"),
			Dst: netip.MustParseAddr("10.1.0.5"), Proto: 17, SrcPort: 53, DstPort: 40000, Len: 300}); err != nil {
			return err
		}
	}
	fmt.Fprintln(w, "after simulated traffic (100 packets out, 60 in):")
	if err := printSAs(w, b.SAs(ctx), &backendFlags{}); err != nil {
		return err
	}
	fmt.Fprintln(w)
	if err := printPolicies(w, b.Policies(ctx), &backendFlags{}); err != nil {
		return err
	}

	fmt.Fprintf(w, "\nwaiting for the soft (%s) and hard (%s) lifetimes ...\n", *soft, 2**soft)
	hard := 0
	deadline := time.After(4**soft + 5*time.Second)
	for hard < 2 {
		select {
		case ev := <-sub.Events():
			fmt.Fprintf(w, "  event %-8s %s\n", ev.Kind(), eventText(ev))
			if x, ok := ev.(*kernelops.ExpireEvent); ok && x.Hard {
				hard++
			}
		case <-deadline:
			return fmt.Errorf("the lifetimes did not fire in time")
		case <-ctx.Done():
			return ctx.Err()
		}
	}
	fmt.Fprintln(w, "\nafter the hard expiry the SAs are gone; the policies stay for the next child:")
	if err := printSAs(w, b.SAs(ctx), &backendFlags{}); err != nil {
		return err
	}
	return nil
}
