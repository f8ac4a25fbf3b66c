package ike

import (
	"net/netip"
	"strconv"
	"testing"
	"time"

	"github.com/keyplane/keyplane/backends/nokernel"
	"github.com/keyplane/keyplane/ike/message"
	"github.com/keyplane/keyplane/kernelops"
	"github.com/keyplane/keyplane/kernelops/clock"
)

var epoch = time.Date(2026, 1, 1, 0, 0, 0, 0, time.UTC)

// settle lets the peers' loops work through what the last clock step
// started (dataplane events, datagrams on loopback), including key
// exchanges handed to the crypto workers: an idle loop alone does not
// mean nothing is under way.
func settle(t testing.TB, ps ...*peer) {
	t.Helper()
	for range 3 {
		for _, p := range ps {
			deadline := time.Now().Add(10 * time.Second)
			for p.e.crypto.inflight.Load() > 0 && time.Now().Before(deadline) {
				time.Sleep(time.Millisecond)
			}
			if err := p.e.call(t.Context(), func() {}); err != nil {
				t.Fatal(err)
			}
		}
		time.Sleep(5 * time.Millisecond)
	}
}

// step advances the fake clock by d in steps of at most every, letting
// the peers settle after each. settle is a heuristic: under load an
// exchange can still be under way when it returns, so a step longer than
// the model's acquire-expires (30s) can expire an SPI reserved for a
// child being negotiated (the model removes the larval SA and reports a
// hard expire for it, which the child, installed a moment later under
// that SPI, takes as its own). Tests that step by more than that while
// children rekey open their models withLongLarval.
func step(t testing.TB, clk *clock.Fake, d, every time.Duration, ps ...*peer) {
	t.Helper()
	for d > 0 {
		s := min(d, every)
		clk.Advance(s)
		settle(t, ps...)
		d -= s
	}
}

// inboundSA is the peer's inbound SA of its first child.
func inboundSA(t testing.TB, p *peer) kernelops.SAID {
	t.Helper()
	sas := p.sas(t)
	if len(sas) == 0 || len(sas[0].Children) == 0 {
		t.Fatalf("%s has no child", p.name)
	}
	ch := sas[0].Children[0]
	spi, err := strconv.ParseUint(ch.SPIIn, 16, 32)
	if err != nil {
		t.Fatal(err)
	}
	return kernelops.SAID{Src: netip.MustParseAddr(ch.Remote), Dst: netip.MustParseAddr(ch.Local), SPI: uint32(spi), Proto: kernelops.ProtoESP}
}

// TestIdleLiveness: with CapIdle a liveness check goes out only when the
// child's inbound SA has been idle for dpd_delay — never while traffic
// arrives — and again every dpd_delay while the idleness lasts.
func TestIdleLiveness(t *testing.T) {
	noLeaks(t)
	clk := clock.NewFake(epoch)
	sa, sb := pairSides(t)
	sa.extraConn = "dpd_delay = 30s"
	ta, tapA := tap(clk, 0)
	scan := withOptions(kernelops.Options{IdleScanInterval: 5 * time.Second})
	a := newPeer(t, "a", sa.config(t, "a"), withClock(clk), tapA, scan)
	b := newPeer(t, "b", sb.config(t, "b"), withClock(clk))
	establish(t, a, b, "a-net")
	in := inboundSA(t, a)
	checks := func(mark int) int { return ta.requests(mark, message.INFORMATIONAL, nil) }

	// Traffic from b every 5s for two minutes: no check.
	mark := ta.mark()
	for range 24 {
		res, err := a.b.Inject(t.Context(), nokernel.Packet{Dir: kernelops.DirIn, SA: in,
			Src: netip.MustParseAddr("10.2.0.9"), Dst: netip.MustParseAddr("10.1.0.5"), Proto: 6, Len: 100})
		if err != nil || res.Verdict != nokernel.Delivered {
			t.Fatalf("inbound traffic: %+v %v", res, err)
		}
		step(t, clk, 5*time.Second, 5*time.Second, a, b)
	}
	if n := checks(mark); n != 0 {
		t.Fatalf("%d liveness checks sent while traffic arrived", n)
	}
	// Outbound traffic alone proves nothing about the peer (RFC 7296 §2.4).
	// The last inbound packet came 5s ago: 20s more is 25s of idleness.
	step(t, clk, 20*time.Second, 5*time.Second, a, b)
	if _, err := a.b.Inject(t.Context(), nokernel.Packet{Dir: kernelops.DirOut, Src: netip.MustParseAddr("10.1.0.5"),
		Dst: netip.MustParseAddr("10.2.0.9"), Proto: 6, Len: 100}); err != nil {
		t.Fatal(err)
	}
	if n := checks(mark); n != 0 {
		t.Fatalf("a check after %s of idleness, before dpd_delay", 25*time.Second)
	}
	// 30s idle: a scan reports it (the detector may see traffic up to one
	// scan late) and the check goes out.
	for k := 0; k < 3 && checks(mark) == 0; k++ {
		step(t, clk, 5*time.Second, 5*time.Second, a, b)
	}
	waitFor(t, "a liveness check after dpd_delay of idleness", 3*time.Second, func() bool { return checks(mark) == 1 })
	first := firstSends(ta.since(mark))[0].at
	waitFor(t, "the check answered", 3*time.Second, func() bool {
		var heard time.Time
		a.e.call(t.Context(), func() {
			for _, s := range a.e.sas {
				heard = a.e.timeOf(s.lastHeard)
			}
		})
		return !heard.Before(first)
	})
	// Still idle: the next check comes dpd_delay after the answer (plus at
	// most a scan), not before.
	step(t, clk, 25*time.Second, 5*time.Second, a, b)
	if n := checks(mark); n != 1 {
		t.Fatalf("%d checks %s after the first, want 1", n, 25*time.Second)
	}
	step(t, clk, 15*time.Second, 5*time.Second, a, b)
	waitFor(t, "a second check while the idleness lasts", 3*time.Second, func() bool { return checks(mark) == 2 })
	gap := firstSends(ta.since(mark))[1].at.Sub(first)
	if gap < 30*time.Second || gap > 40*time.Second {
		t.Errorf("second check %s after the first, want dpd_delay plus at most a scan", gap)
	}
	if len(a.sas(t)) != 1 || installed(a.sas(t)) != 1 {
		t.Errorf("a's SA after answered checks: %+v", a.sas(t))
	}
}

// TestIdleLivenessRekeyWatchesNewSA: the rekeyed child's new inbound SA is
// watched and the old one is not; checks keep following idleness.
func TestIdleLivenessRekeyWatchesNewSA(t *testing.T) {
	noLeaks(t)
	clk := clock.NewFake(epoch)
	sa, sb := pairSides(t)
	sa.extraConn = "dpd_delay = 30s"
	sa.extraChild = "rekey_time = 1m\n life_time = 1h"
	_, tapA := tap(clk, 0)
	a := newPeer(t, "a", sa.config(t, "a"), withClock(clk), tapA, withOptions(kernelops.Options{IdleScanInterval: 5 * time.Second}))
	b := newPeer(t, "b", sb.config(t, "b"), withClock(clk))
	establish(t, a, b, "a-net")
	old := inboundSA(t, a)
	watched := func() []kernelops.SAID {
		var ids []kernelops.SAID
		a.e.call(t.Context(), func() {
			for _, ch := range a.e.byIn {
				ids = append(ids, ch.inID())
			}
		})
		return ids
	}
	if w := watched(); len(w) != 1 || w[0] != old {
		t.Fatalf("watched %v, want the inbound SA %v", w, old)
	}
	step(t, clk, 65*time.Second, 5*time.Second, a, b)
	waitFor(t, "the rekeyed child", 5*time.Second, func() bool {
		sas := a.sas(t)
		return len(sas) == 1 && len(sas[0].Children) == 1 && sas[0].Children[0].State == "installed" && inboundSA(t, a) != old
	})
	settle(t, a, b)
	if w := watched(); len(w) != 1 || w[0] != inboundSA(t, a) {
		t.Errorf("watched %v after the rekey, want only the new inbound SA %v", w, inboundSA(t, a))
	}
}
