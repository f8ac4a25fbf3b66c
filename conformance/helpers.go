package conformance

import (
	"crypto/rand"
	"errors"
	"fmt"
	"net/netip"
	"sync/atomic"
	"time"

	"github.com/keyplane/keyplane/iana"
	"github.com/keyplane/keyplane/kernelops"
)

// caps returns the backend's capabilities.
func (h *Harness) caps() kernelops.Capabilities { return h.Backend.Capabilities() }

// need skips unless the backend claims every capability, quoting the
// backend's own reason for the first one missing.
func need(t TB, h *Harness, cs ...kernelops.Cap) {
	t.Helper()
	c := h.caps()
	for _, x := range cs {
		if !c.Has(x) {
			t.Skipf("capability %s absent: %s", x, c.Why(x))
		}
	}
}

// facet returns facet F (kernelops.As), skipping with the backend's own
// reason when it does not claim c, and failing the case when it claims c
// but As refuses the facet.
func facet[F any](t TB, h *Harness, c kernelops.Cap) F {
	t.Helper()
	need(t, h, c)
	f, err := kernelops.As[F](h.Backend)
	if err != nil {
		t.Fatalf("backend claims %s but the facet is not usable: %v", c, err)
	}
	return f
}

func needTraffic(t TB, h *Harness) {
	t.Helper()
	if h.Traffic == nil {
		t.Skipf("harness has no traffic source")
	}
}

// sleep waits d of the backend's time: it advances a fake clock, or
// sleeps for real.
func (h *Harness) sleep(d time.Duration) {
	if h.Clock != nil {
		h.Clock.Advance(d)
		return
	}
	time.Sleep(d)
}

// timeScale is the unit for time lifetimes: kernels count whole seconds.
func (h *Harness) timeUnit() time.Duration { return time.Second }

// send pushes packets on the test flow LocalInner -> RemoteInner (UDP 9).
func (h *Harness) send(t TB, packets, size int) {
	t.Helper()
	if err := h.Traffic.Send(t.Context(), h.flow(), packets, size); err != nil {
		t.Fatalf("traffic source: %v", err)
	}
}

func (h *Harness) flow() Flow {
	return Flow{Src: h.LocalInner, Dst: h.RemoteInner, Proto: 17, SrcPort: 40000, DstPort: 9}
}

func (h *Harness) bulkN(full int) int {
	if h.Scale > 0 && h.Scale < full {
		return h.Scale
	}
	return full
}

// spiSeq hands out SPIs outside the default AllocSPI range so explicit
// adds never collide with reservations.
var spiSeq atomic.Uint32

func nextSPI() uint32 { return 0x7e000000 + spiSeq.Add(1) }

func key(n int) kernelops.Key {
	k := make(kernelops.Key, n)
	rand.Read(k)
	return k
}

// outSA is an outbound tunnel-mode AES-GCM-16/128 SA Local -> Remote.
func (h *Harness) outSA(reqid uint32) *kernelops.SA {
	sa := &kernelops.SA{
		ID:           kernelops.SAID{Src: h.Local, Dst: h.Remote, SPI: nextSPI(), Proto: kernelops.ProtoESP},
		Mode:         kernelops.ModeTunnel,
		ReqID:        reqid,
		Encryption:   kernelops.Encryption{ID: iana.EncrAESGCM16, KeyBits: 128, Key: key(20)},
		ReplayWindow: 32,
	}
	if !h.caps().Algorithms.HasEncr(iana.EncrAESGCM16) {
		sa.Encryption = kernelops.Encryption{ID: iana.EncrAESCBC, KeyBits: 128, Key: key(16)}
		sa.Integrity = h.integrity()
	}
	return sa
}

// integrity is the strongest integrity algorithm the dataplane claims,
// from the common ones; a dataplane claiming none gets SHA2-256-128 and
// the case shows the refusal.
func (h *Harness) integrity() kernelops.Integrity {
	for _, id := range []kernelops.IntegID{iana.IntegHMACSHA256_128, iana.IntegHMACSHA512_256,
		iana.IntegHMACSHA384_192, iana.IntegHMACSHA1_96} {
		if h.caps().Algorithms.HasInteg(id) {
			info, _ := id.Info()
			return kernelops.Integrity{ID: id, Key: key(info.KeyLen)}
		}
	}
	return kernelops.Integrity{ID: iana.IntegHMACSHA256_128, Key: key(32)}
}

// inSA is the matching inbound SA Remote -> Local.
func (h *Harness) inSA(reqid uint32) *kernelops.SA {
	sa := h.outSA(reqid)
	sa.ID.Src, sa.ID.Dst = h.Remote, h.Local
	return sa
}

func host(a netip.Addr) netip.Prefix { return netip.PrefixFrom(a, a.BitLen()) }

// outPolicy protects LocalInner -> RemoteInner with a tunnel to Remote.
func (h *Harness) outPolicy(action kernelops.Action, reqid uint32) *kernelops.Policy {
	p := &kernelops.Policy{
		Selector: kernelops.Selector{Src: host(h.LocalInner), Dst: host(h.RemoteInner)},
		Dir:      kernelops.DirOut,
		Action:   action,
	}
	if action == kernelops.ActionIPsec || action == kernelops.ActionTrap {
		p.Templates = []kernelops.Template{{Src: h.Local, Dst: h.Remote, Proto: kernelops.ProtoESP,
			Mode: kernelops.ModeTunnel, ReqID: reqid}}
	}
	return p
}

var reqidSeq atomic.Uint32

// nextReqID returns a reqid in the default owned range.
func nextReqID() uint32 { return kernelops.DefaultReqIDMin + 0x100 + reqidSeq.Add(1)%0xfe00 }

// wantErr fails unless err wraps target.
func wantErr(t TB, what string, err, target error) {
	t.Helper()
	if !errors.Is(err, target) {
		t.Fatalf("%s: got error %v, want %v", what, err, target)
	}
	var ke *kernelops.Error
	if !errors.As(err, &ke) {
		t.Errorf("%s: error %v is not a *kernelops.Error", what, err)
	}
}

func noErr(t TB, what string, err error) {
	t.Helper()
	if err != nil {
		t.Fatalf("%s: %v", what, err)
	}
}

func describe(ev kernelops.Event) string { return fmt.Sprintf("%T%+v", ev, ev) }
