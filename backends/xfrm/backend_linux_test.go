package xfrm

import (
	"context"
	"errors"
	"net"
	"net/netip"
	"runtime"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/keyplane/keyplane/iana"
	"github.com/keyplane/keyplane/internal/lab"
	"github.com/keyplane/keyplane/kernelops"
	"github.com/vishvananda/netlink/nl"
)

// Tests that need no ESP: they run on the host and in the VM.

func TestOpenParams(t *testing.T) {
	lab.RequireRoot(t)
	ctx := context.Background()
	for _, tc := range []struct {
		params map[string]string
		target error
		field  string
	}{
		{map[string]string{"bogus": "1"}, kernelops.ErrInvalid, "Params.bogus"},
		{map[string]string{ParamNetns: "kp-no-such-namespace"}, kernelops.ErrNotFound, "Params.netns"},
		{map[string]string{ParamEventRcvbuf: "lots"}, kernelops.ErrInvalid, "Params.event-rcvbuf"},
		{map[string]string{ParamCleanup: "everything"}, kernelops.ErrInvalid, "Params.cleanup"},
	} {
		_, err := Open(ctx, kernelops.Options{Params: tc.params})
		wantIs(t, "open with "+tc.field, err, tc.target)
		var ke *kernelops.Error
		if errors.As(err, &ke) && ke.Field != tc.field {
			t.Errorf("open with %v: field %q, want %q", tc.params, ke.Field, tc.field)
		}
	}
	// The registry reaches the same code.
	_, err := kernelops.Open(ctx, Name, kernelops.Options{Params: map[string]string{"bogus": "1"}})
	wantIs(t, "registry open", err, kernelops.ErrInvalid)
}

func TestHostSAIsNotSupported(t *testing.T) {
	b, _ := fresh(t, kernelops.Options{})
	if b.d.k.ESP {
		t.Skipf("this kernel has ESP (the VM lab): the SA path is tested for real there")
	}
	ctx := context.Background()
	sa := &kernelops.SA{ID: kernelops.SAID{Src: ma("10.0.0.1"), Dst: ma("10.0.0.2"), SPI: 0x1000, Proto: kernelops.ProtoESP},
		Mode: kernelops.ModeTunnel, Encryption: kernelops.Encryption{ID: iana.EncrAESCBC, KeyBits: 128, Key: make([]byte, 16)},
		Integrity: kernelops.Integrity{ID: iana.IntegHMACSHA256_128, Key: make([]byte, 32)}}
	// Without ESP the SAD is not claimed: the front end refuses every
	// SAD call, quoting the probe's reason.
	err := b.AddSA(ctx, sa)
	wantIs(t, "add SA without ESP", err, kernelops.ErrNotSupported)
	if !strings.Contains(err.Error(), "ESP") {
		t.Errorf("error does not say why: %v", err)
	}
	_, err = b.AllocSPI(ctx, kernelops.SPIRequest{Src: sa.ID.Src, Dst: sa.ID.Dst, Proto: kernelops.ProtoESP})
	wantIs(t, "alloc SPI without ESP", err, kernelops.ErrNotSupported)
	for _, err := range b.SAs(ctx) {
		wantIs(t, "dump without ESP", err, kernelops.ErrNotSupported)
	}
	if _, err := kernelops.As[kernelops.SAD](b); !errors.Is(err, kernelops.ErrNotSupported) {
		t.Errorf("As[SAD] without ESP: %v", err)
	}
}

func TestErrorMapping(t *testing.T) {
	b, _ := fresh(t, kernelops.Options{})
	ctx := context.Background()
	p := &kernelops.Policy{Selector: kernelops.Selector{Src: mp("10.1.0.0/16"), Dst: mp("10.2.0.0/16")},
		Dir: kernelops.DirOut, Action: kernelops.ActionBlock}
	err := b.DeletePolicy(ctx, p.ID())
	wantIs(t, "delete missing", err, kernelops.ErrNotFound)
	if errnoOf(err) != syscall.ENOENT {
		t.Errorf("errno %v, want ENOENT", errnoOf(err))
	}
	must(t, "add", b.AddPolicy(ctx, p))
	err = b.AddPolicy(ctx, p)
	wantIs(t, "add twice", err, kernelops.ErrExists)
	if !errors.Is(err, syscall.EEXIST) {
		t.Errorf("errno not kept: %v", err)
	}
	// A request the kernel itself refuses carries its extack text.
	err = b.d.do(ctx, "", func(mb *msgBuilder, seq uint32) error {
		appendPolicy(mb, nl.XFRM_MSG_NEWPOLICY, reqFlags, seq, p, 0)
		mb.buf[nlmsgHdrLen+160] = 7 // no such direction
		return nil
	}, nil)
	wantIs(t, "bad direction", err, kernelops.ErrInvalid)
	var ke *kernelops.Error
	errors.As(err, &ke)
	if ke.Errno != syscall.EINVAL || !strings.Contains(strings.ToLower(ke.Detail), "direction") {
		t.Errorf("kernel reason missing: errno %v detail %q", ke.Errno, ke.Detail)
	}
	// A cancelled context.
	cctx, cancel := context.WithCancel(ctx)
	cancel()
	_, err = b.GetPolicy(cctx, p.ID())
	if !errors.Is(err, context.Canceled) {
		t.Errorf("cancelled get: %v", err)
	}
	for _, err := range b.Policies(cctx) {
		if !errors.Is(err, context.Canceled) {
			t.Errorf("cancelled dump: %v", err)
		}
	}
	// A closed backend.
	b.Close()
	wantIs(t, "add after close", b.AddPolicy(ctx, p), kernelops.ErrClosed)
	_, err = b.Subscribe(ctx, kernelops.SubscribeOptions{})
	wantIs(t, "subscribe after close", err, kernelops.ErrClosed)
}

func TestPolicyExpireEvents(t *testing.T) {
	b, _ := fresh(t, kernelops.Options{})
	ctx := context.Background()
	sub := subscribeAll(t, b, kernelops.KindPolicyExpire)
	p := &kernelops.Policy{Selector: kernelops.Selector{Src: mp("10.1.0.0/16"), Dst: mp("10.2.0.0/16"), Proto: 6},
		Dir: kernelops.DirFwd, Action: kernelops.ActionBlock, Mark: kernelops.Mark{Value: 3, Mask: 0xf},
		// The kernel's policy timer checks the hard limit first and
		// skips the soft warning when both are due at once, so the two
		// are 3 s apart: a timer that fires late still sees soft first.
		Lifetime: kernelops.Lifetimes{Soft: kernelops.Limits{AddTime: time.Second}, Hard: kernelops.Limits{AddTime: 4 * time.Second}}}
	must(t, "add", b.AddPolicy(ctx, p))
	is := func(hard bool) func(*kernelops.PolicyExpireEvent) bool {
		return func(e *kernelops.PolicyExpireEvent) bool { return e.Policy == p.ID() && e.Hard == hard }
	}
	waitEvent(t, sub, 10*time.Second, is(false))
	waitEvent(t, sub, 10*time.Second, is(true))
	_, err := b.GetPolicy(ctx, p.ID())
	wantIs(t, "get after hard policy expire", err, kernelops.ErrNotFound)
}

// TestPolicyLifetimeNone guards against writing XFRM_INF into time
// limits, which the kernel reads as "expired long ago".
func TestPolicyLifetimeNone(t *testing.T) {
	b, _ := fresh(t, kernelops.Options{})
	ctx := context.Background()
	p := &kernelops.Policy{Selector: kernelops.Selector{Src: mp("10.1.0.0/16")}, Dir: kernelops.DirOut, Action: kernelops.ActionBlock}
	must(t, "add", b.AddPolicy(ctx, p))
	time.Sleep(2500 * time.Millisecond) // the kernel's policy timer runs 1 s after insert
	if _, err := b.GetPolicy(ctx, p.ID()); err != nil {
		t.Fatalf("policy without lifetime gone after 2.5 s: %v", err)
	}
}

func TestOpenHoles(t *testing.T) {
	p := lab.NewPair(t)
	b := openIn(t, p.A, kernelops.Options{})
	ctx := context.Background()
	must(t, "open", b.OpenHoles(ctx, kernelops.HoleSet{IKEPorts: []uint16{500, 4500}, IPv6ND: true}))
	count := func() int {
		holes := 0
		for e, meta := range policyMetas(t, b) {
			if e.Action == kernelops.ActionPass && e.Priority < kernelops.PriorityBandIPsec {
				holes++
				if !b.d.ownsIndex(meta.Index) {
					t.Errorf("hole %v has index %#x without this instance's tag", e.ID(), meta.Index)
				}
			}
		}
		return holes
	}
	if n := count(); n != 2*2*2+5*3 {
		t.Fatalf("%d hole policies, want 23", n)
	}
	// A real effect: with an ipsec policy that catches all UDP between
	// the pair (and no SA), only the IKE ports get through.
	catch := &kernelops.Policy{Selector: kernelops.Selector{Src: netip.PrefixFrom(p.A4, 32), Dst: netip.PrefixFrom(p.B4, 32), Proto: 17},
		Dir: kernelops.DirOut, Action: kernelops.ActionIPsec,
		Templates: []kernelops.Template{{Src: p.A4, Dst: p.B4, Proto: kernelops.ProtoESP, Mode: kernelops.ModeTunnel, ReqID: 42}}}
	must(t, "catch-all", b.AddPolicy(ctx, catch))
	if !udpPasses(t, p, 500, 9500) {
		t.Errorf("UDP from port 500 did not pass the hole")
	}
	if udpPasses(t, p, 501, 9501) {
		t.Errorf("UDP from port 501 passed although only 500 and 4500 have holes")
	}
	// Reopen with fewer ports removes the others; close removes all.
	must(t, "reopen", b.OpenHoles(ctx, kernelops.HoleSet{IKEPorts: []uint16{4500}}))
	if n := count(); n != 4 {
		t.Errorf("%d holes after reopening with one port, want 4", n)
	}
	if udpPasses(t, p, 500, 9502) {
		t.Errorf("port 500 still passes after its hole was closed")
	}
	must(t, "close", b.CloseHoles(ctx))
	if n := count(); n != 0 {
		t.Errorf("%d holes after close", n)
	}
}

// udpPasses sends one datagram from A:sport to B:dport and reports
// whether B received it.
func udpPasses(t *testing.T, p *lab.Pair, sport, dport uint16) bool {
	t.Helper()
	got := make(chan bool, 1)
	ready := make(chan struct{})
	go func() {
		err := p.B.Do(func() error {
			c, err := listenUDP(netip.AddrPortFrom(p.B4, dport))
			if err != nil {
				return err
			}
			defer c.Close()
			close(ready)
			c.SetReadDeadline(time.Now().Add(700 * time.Millisecond))
			buf := make([]byte, 64)
			_, _, err = c.ReadFromUDPAddrPort(buf)
			got <- err == nil
			return nil
		})
		if err != nil {
			t.Errorf("listen in B: %v", err)
			close(ready)
			got <- false
		}
	}()
	<-ready
	err := p.A.Do(func() error {
		c, err := listenUDP(netip.AddrPortFrom(p.A4, sport))
		if err != nil {
			return err
		}
		defer c.Close()
		_, _ = c.WriteToUDPAddrPort([]byte("x"), netip.AddrPortFrom(p.B4, dport))
		return nil
	})
	if err != nil {
		t.Fatalf("send from A: %v", err)
	}
	return <-got
}

func TestOverrunReported(t *testing.T) {
	b, _ := fresh(t, kernelops.Options{Params: map[string]string{ParamEventRcvbuf: "4096"}})
	ctx := context.Background()
	sub := subscribeAll(t, b, 0)
	resume := b.d.ev.pause()
	const n = 5000
	ops := make([]kernelops.Op, n)
	for i := range ops {
		ops[i] = kernelops.Op{Kind: kernelops.OpAddPolicy, Policy: &kernelops.Policy{
			Selector: kernelops.Selector{Src: netip.PrefixFrom(netip.AddrFrom4([4]byte{10, 100, byte(i >> 8), byte(i)}), 32), Dst: mp("10.2.0.1/32")},
			Dir:      kernelops.DirOut, Action: kernelops.ActionBlock}}
	}
	must(t, "install", b.Apply(ctx, ops))
	resume()
	ov := waitEvent(t, sub, 10*time.Second, func(e *kernelops.OverrunEvent) bool { return e.Source == sourceXFRM })
	if ov.Lost == 0 {
		t.Errorf("overrun says nothing was lost")
	}
	// The state is all there for the re-read the overrun asks for.
	got := 0
	for e, err := range b.Policies(ctx) {
		must(t, "re-dump", err)
		if e.Action == kernelops.ActionBlock {
			got++
		}
	}
	if got != n {
		t.Errorf("re-dump shows %d of %d policies", got, n)
	}
	// And the reader goes on after the overrun.
	p := &kernelops.Policy{Selector: kernelops.Selector{Src: mp("10.7.0.0/16")}, Dir: kernelops.DirIn, Action: kernelops.ActionBlock,
		Lifetime: kernelops.Lifetimes{Hard: kernelops.Limits{AddTime: time.Second}}}
	must(t, "add expiring policy", b.AddPolicy(ctx, p))
	waitEvent(t, sub, 10*time.Second, func(e *kernelops.PolicyExpireEvent) bool { return e.Policy == p.ID() && e.Hard })
}

func TestCloseLeavesNoGoroutines(t *testing.T) {
	lab.RequireRoot(t)
	ns := lab.NewNS(t)
	settle := func() int {
		time.Sleep(50 * time.Millisecond)
		return runtime.NumGoroutine()
	}
	before := settle()
	for range 3 {
		b, err := Open(context.Background(), kernelops.Options{Params: map[string]string{ParamNetns: ns.Name}})
		must(t, "open", err)
		sub, err := b.Subscribe(context.Background(), kernelops.SubscribeOptions{})
		must(t, "subscribe", err)
		for _, err := range b.Policies(context.Background()) {
			must(t, "dump", err)
		}
		_ = sub
		must(t, "close", b.Close())
		if _, ok := <-sub.Events(); ok {
			t.Fatalf("subscription still delivering after Close")
		}
	}
	var after int
	for range 40 {
		if after = settle(); after <= before {
			return
		}
	}
	buf := make([]byte, 1<<16)
	t.Fatalf("%d goroutines before, %d after three open/subscribe/close rounds\n%s", before, after, buf[:runtime.Stack(buf, true)])
}

func TestBatchChunksAndErrors(t *testing.T) {
	b, _ := fresh(t, kernelops.Options{})
	ctx := context.Background()
	mk := func(i int) *kernelops.Policy {
		return &kernelops.Policy{Selector: kernelops.Selector{Src: netip.PrefixFrom(netip.AddrFrom4([4]byte{10, 50, byte(i >> 8), byte(i)}), 32)},
			Dir: kernelops.DirOut, Action: kernelops.ActionBlock}
	}
	const n = 3000 // three chunks
	ops := make([]kernelops.Op, 0, n+3)
	for i := range n {
		ops = append(ops, kernelops.Op{Kind: kernelops.OpAddPolicy, Policy: mk(i)})
	}
	dup := 1500 // in the second chunk
	ops = append(ops,
		kernelops.Op{Kind: kernelops.OpAddPolicy, Policy: mk(dup)},
		kernelops.Op{Kind: kernelops.OpAddPolicy, Policy: &kernelops.Policy{Dir: kernelops.DirOut, Action: kernelops.ActionIPsec}}, // no template
		kernelops.Op{Kind: kernelops.OpDeletePolicy, PolicyID: mk(n + 1).ID()})
	err := b.Apply(ctx, ops)
	var be *kernelops.BatchError
	if !errors.As(err, &be) || be.Failed != 3 || be.Total != n+3 {
		t.Fatalf("batch error %v, want 3 of %d failed", err, n+3)
	}
	for i := range n {
		if ops[i].Err != nil {
			t.Fatalf("op %d failed: %v", i, ops[i].Err)
		}
	}
	wantIs(t, "duplicate", ops[n].Err, kernelops.ErrExists)
	wantIs(t, "invalid", ops[n+1].Err, kernelops.ErrInvalid)
	wantIs(t, "delete missing", ops[n+2].Err, kernelops.ErrNotFound)
	for _, i := range []int{n, n + 2} { // named only when they fail
		var ke *kernelops.Error
		if errors.As(ops[i].Err, &ke); ke.Object != opObjectOf(&ops[i]) {
			t.Errorf("op %d: error %q names %q, want %q", i, ops[i].Err, ke.Object, opObjectOf(&ops[i]))
		}
	}
	got := 0
	for _, err := range b.Policies(ctx) {
		must(t, "dump", err)
		got++
	}
	if got != n {
		t.Errorf("%d policies installed, want %d", got, n)
	}
	// Delete them all in one batch.
	del := make([]kernelops.Op, n)
	for i := range del {
		del[i] = kernelops.Op{Kind: kernelops.OpDeletePolicy, PolicyID: mk(i).ID()}
	}
	must(t, "batch delete", b.Apply(ctx, del))
	for e, err := range b.Policies(ctx) {
		must(t, "dump", err)
		t.Fatalf("policy %v left after batch delete", e.ID())
	}
}

func listenUDP(ap netip.AddrPort) (*net.UDPConn, error) {
	return net.ListenUDP("udp", net.UDPAddrFromAddrPort(ap))
}

// policyMetas dumps the SPD with the kernel's own fields (index, dir).
func policyMetas(t testing.TB, b *Backend) map[*kernelops.PolicyEntry]polMeta {
	t.Helper()
	out := map[*kernelops.PolicyEntry]polMeta{}
	err := b.d.dumpXFRM(context.Background(), nl.XFRM_MSG_GETPOLICY, func(m nlMsg) (bool, error) {
		if m.Type != nl.XFRM_MSG_NEWPOLICY {
			return true, nil
		}
		e := &kernelops.PolicyEntry{}
		var meta polMeta
		if err := decodePolicy(m.Data, e, &meta); err != nil {
			return false, err
		}
		if meta.Dir <= xfrmPolicyFwd {
			b.d.resolveAction(e)
			out[e] = meta
		}
		return true, nil
	})
	must(t, "dump", err)
	return out
}

// TestCapabilitiesExplained: every capability this kernel lacks says why,
// and the table is logged (go test -v) for the record.
func TestCapabilitiesExplained(t *testing.T) {
	b, _ := fresh(t, kernelops.Options{})
	c := b.Capabilities()
	t.Logf("%s", b.Kernel())
	for _, x := range kernelops.AllCaps() {
		if !c.Has(x) && c.Notes[x] == "" {
			t.Errorf("capability %s absent without a note", x)
		}
		t.Logf("%-22s %-5v %s", x, c.Has(x), c.Notes[x])
	}
	t.Logf("encryption %v", c.Algorithms.Encryption)
	t.Logf("integrity  %v", c.Algorithms.Integrity)
	if c.Has(kernelops.CapSAD) != b.d.k.ESP {
		t.Errorf("SAD claimed %v with ESP %v", c.Has(kernelops.CapSAD), b.d.k.ESP)
	}
	if lab.InVM() && !b.d.k.ESP {
		t.Errorf("the VM kernel must have ESP: %s", b.d.k.ESPErr)
	}
}

// TestDumpStreams: a dump reuses one entry and one receive buffer (a few
// allocations per datagram, none per policy), can be left early, and the
// abandoned socket does not poison the next call.
func TestDumpStreams(t *testing.T) {
	b, _ := fresh(t, kernelops.Options{})
	ctx := context.Background()
	const n = 3000
	ops := make([]kernelops.Op, n)
	for i := range ops {
		ops[i] = kernelops.Op{Kind: kernelops.OpAddPolicy, Policy: &kernelops.Policy{
			Selector: kernelops.Selector{Src: netip.PrefixFrom(netip.AddrFrom4([4]byte{10, 60, byte(i >> 8), byte(i)}), 32)},
			Dir:      kernelops.DirIn, Action: kernelops.ActionBlock}}
	}
	must(t, "install", b.Apply(ctx, ops))
	count := func() int {
		c := 0
		for _, err := range b.Policies(ctx) {
			must(t, "dump", err)
			c++
		}
		return c
	}
	allocs := testing.AllocsPerRun(3, func() { count() })
	if allocs > n/10 {
		t.Errorf("%v allocations for a dump of %d policies: the dump allocates per policy", allocs, n)
	}
	for range 5 {
		seen := 0
		for _, err := range b.Policies(ctx) {
			must(t, "dump", err)
			if seen++; seen == 10 {
				break
			}
		}
	}
	if _, err := b.GetPolicy(ctx, ops[7].Policy.ID()); err != nil {
		t.Errorf("get after abandoned dumps: %v", err)
	}
	if c := count(); c != n {
		t.Errorf("full dump after abandoned ones: %d of %d", c, n)
	}
}

// opObjectOf is what an op's error must name.
func opObjectOf(op *kernelops.Op) string {
	if op.Kind == kernelops.OpDeletePolicy {
		return op.PolicyID.String()
	}
	return op.Policy.ID().String()
}
