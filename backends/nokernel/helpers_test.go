package nokernel_test

import (
	"context"
	"errors"
	"net/netip"
	"sync/atomic"
	"syscall"
	"testing"
	"time"

	"github.com/keyplane/keyplane/backends/nokernel"
	"github.com/keyplane/keyplane/iana"
	"github.com/keyplane/keyplane/kernelops"
	"github.com/keyplane/keyplane/kernelops/clock"
)

var (
	epoch  = time.Date(2026, 1, 1, 0, 0, 0, 0, time.UTC)
	local  = netip.MustParseAddr("192.0.2.1")
	remote = netip.MustParseAddr("198.51.100.1")
	inner1 = netip.MustParseAddr("10.1.0.1")
	inner2 = netip.MustParseAddr("10.2.0.1")
)

// model opens a model on a fake clock, closed at the end of the test.
func model(t *testing.T, params map[string]string) (*nokernel.Backend, *clock.Fake) {
	t.Helper()
	clk := clock.NewFake(epoch)
	b, err := nokernel.Open(t.Context(), kernelops.Options{Clock: clk, Params: params, IdleScanInterval: time.Second})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { b.Close() })
	return b, clk
}

var spis atomic.Uint32

func gcmSA(src, dst netip.Addr, reqid uint32) *kernelops.SA {
	return &kernelops.SA{
		ID:           kernelops.SAID{Src: src, Dst: dst, SPI: 0x1000 + spis.Add(1), Proto: kernelops.ProtoESP},
		Mode:         kernelops.ModeTunnel,
		ReqID:        reqid,
		Encryption:   kernelops.Encryption{ID: iana.EncrAESGCM16, KeyBits: 128, Key: make(kernelops.Key, 20)},
		ReplayWindow: 32,
	}
}

func host(a netip.Addr) netip.Prefix { return netip.PrefixFrom(a, a.BitLen()) }

func tunnelPolicy(dir kernelops.Direction, action kernelops.Action, reqid uint32) *kernelops.Policy {
	p := &kernelops.Policy{Selector: kernelops.Selector{Src: host(inner1), Dst: host(inner2)}, Dir: dir, Action: action}
	t := kernelops.Template{Src: local, Dst: remote, Proto: kernelops.ProtoESP, Mode: kernelops.ModeTunnel, ReqID: reqid}
	if dir == kernelops.DirIn {
		p.Selector.Src, p.Selector.Dst = p.Selector.Dst, p.Selector.Src
		t.Src, t.Dst = remote, local
	}
	if action == kernelops.ActionIPsec || action == kernelops.ActionTrap {
		p.Templates = []kernelops.Template{t}
	}
	return p
}

func out(b *nokernel.Backend, t *testing.T, n, size int) nokernel.Result {
	t.Helper()
	var r nokernel.Result
	for range n {
		var err error
		r, err = b.Inject(t.Context(), nokernel.Packet{Src: inner1, Dst: inner2, Proto: 17, SrcPort: 40000, DstPort: 9, Len: size})
		if err != nil {
			t.Fatal(err)
		}
	}
	return r
}

// collector drains a subscription into a slice the test reads after
// letting the pump deliver.
type collector struct {
	sub kernelops.Subscription
}

func subscribe(t *testing.T, b *nokernel.Backend, kinds kernelops.EventKind) *collector {
	t.Helper()
	sub, err := b.Subscribe(t.Context(), kernelops.SubscribeOptions{Kinds: kinds})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { sub.Close() })
	return &collector{sub: sub}
}

// take returns the events that arrive within a short quiet period: the
// model publishes synchronously, so they are queued already.
func (c *collector) take() []kernelops.Event {
	var evs []kernelops.Event
	for {
		select {
		case ev := <-c.sub.Events():
			evs = append(evs, ev)
		case <-time.After(50 * time.Millisecond):
			return evs
		}
	}
}

func mustErr(t *testing.T, what string, err, sentinel error, errno syscall.Errno) {
	t.Helper()
	if !errors.Is(err, sentinel) {
		t.Fatalf("%s: %v, want %v", what, err, sentinel)
	}
	var ke *kernelops.Error
	if !errors.As(err, &ke) {
		t.Fatalf("%s: %v is not a *kernelops.Error", what, err)
	}
	if errno != 0 && !errors.Is(err, errno) {
		t.Errorf("%s: %v does not carry errno %v", what, err, errno)
	}
}

func noErr(t *testing.T, what string, err error) {
	t.Helper()
	if err != nil {
		t.Fatalf("%s: %v", what, err)
	}
}

func ctx(t *testing.T) context.Context { return t.Context() }
