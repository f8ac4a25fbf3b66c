package nokernel_test

import (
	"context"
	"fmt"
	"net/netip"
	"strings"
	"time"

	"github.com/keyplane/keyplane/backends/nokernel"
	"github.com/keyplane/keyplane/iana"
	"github.com/keyplane/keyplane/kernelops"
	"github.com/keyplane/keyplane/kernelops/clock"
)

// A child SA and its policy on the model, traffic through it, and the
// soft then hard expire of its packet lifetime.
func Example() {
	ctx := context.Background()
	clk := clock.NewFake(time.Date(2026, 1, 1, 0, 0, 0, 0, time.UTC))
	b, _ := nokernel.Open(ctx, kernelops.Options{Clock: clk})
	defer b.Close()
	sub, _ := b.Subscribe(ctx, kernelops.SubscribeOptions{Kinds: kernelops.KindExpire | kernelops.KindAcquire})

	local, remote := netip.MustParseAddr("192.0.2.1"), netip.MustParseAddr("198.51.100.1")
	sa := &kernelops.SA{
		ID:         kernelops.SAID{Src: local, Dst: remote, SPI: 0xc0de0001, Proto: kernelops.ProtoESP},
		Mode:       kernelops.ModeTunnel,
		ReqID:      1,
		Encryption: kernelops.Encryption{ID: iana.EncrAESGCM16, KeyBits: 128, Key: make(kernelops.Key, 20)},
		Lifetime:   kernelops.Lifetimes{Soft: kernelops.Limits{Packets: 3}, Hard: kernelops.Limits{Packets: 5}},
	}
	b.AddSA(ctx, sa)
	b.AddPolicy(ctx, &kernelops.Policy{
		Selector:  kernelops.Selector{Src: netip.MustParsePrefix("10.1.0.0/16"), Dst: netip.MustParsePrefix("10.2.0.0/16")},
		Dir:       kernelops.DirOut,
		Action:    kernelops.ActionIPsec,
		Templates: []kernelops.Template{{Src: local, Dst: remote, Proto: kernelops.ProtoESP, Mode: kernelops.ModeTunnel, ReqID: 1}},
	})
	pkt := nokernel.Packet{Src: netip.MustParseAddr("10.1.0.1"), Dst: netip.MustParseAddr("10.2.0.1"), Proto: 17, DstPort: 9, Len: 100}
	for range 6 {
		r, _ := b.Inject(ctx, pkt)
		fmt.Println(strings.TrimSpace(r.Verdict.String() + " " + r.Reason))
	}
	for range 3 {
		switch ev := (<-sub.Events()).(type) {
		case *kernelops.ExpireEvent:
			fmt.Printf("expire hard=%v limit=%s\n", ev.Hard, ev.Limit)
		case *kernelops.AcquireEvent:
			fmt.Printf("acquire reqid %d %s->%s\n", ev.ReqID, ev.Src, ev.Dst)
		}
	}
	// Output:
	// protected
	// protected
	// protected
	// protected
	// protected
	// dropped no SA for template esp tunnel 192.0.2.1->198.51.100.1 reqid 1 (acquire pending)
	// expire hard=false limit=packets
	// expire hard=true limit=packets
	// acquire reqid 1 192.0.2.1->198.51.100.1
}
