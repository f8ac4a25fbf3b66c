package ike

import (
	"net/netip"
	"strings"
	"testing"
	"time"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"

	"github.com/keyplane/keyplane/backends/nokernel"
	"github.com/keyplane/keyplane/kernelops"
	"github.com/keyplane/keyplane/kernelops/clock"
)

// peerEncapPorts lists, for every SA in p's dataplane, the peer's UDP
// encapsulation port (the one that is not p's own NAT-T port).
func peerEncapPorts(t *testing.T, p *peer, own uint16) []uint16 {
	t.Helper()
	var out []uint16
	for _, e := range dumpSAs(t, p.b) {
		if e.Encap == nil {
			t.Fatalf("%s: SA %s has no UDP encapsulation", p.name, e.ID)
		}
		port := e.Encap.SrcPort
		if port == own {
			port = e.Encap.DstPort
		}
		out = append(out, port)
	}
	return out
}

// natPair sets up a behind a NAT (natSide) and b in front of it, on the
// fake clock, b tapped, and establishes a-net.
func natPair(t *testing.T, clk *clock.Fake, aExtra, bExtra string) (a, b *peer, nat *natSide, tb *tapBackend, sa, sb side) {
	sa, sb = pairSides(t)
	sa.extraConn, sb.extraConn = aExtra, bExtra
	nat, natOpt := newNATSide()
	tb, tapB := tap(clk, kernelops.CapIdle) // b's liveness checks, if any, on a timer
	a = newPeer(t, "a", sa.config(t, "a"), withClock(clk), natOpt)
	b = newPeer(t, "b", sb.config(t, "b"), withClock(clk), tapB)
	establish(t, a, b, "a-net")
	ia, ib := a.sas(t)[0], b.sas(t)[0]
	require.True(t, ia.NATLocal, "a finds itself behind the NAT")
	require.False(t, ib.NATLocal, "b finds itself not behind a NAT")
	require.True(t, ib.NATRemote, "b finds a behind a NAT")
	require.True(t, ia.Children[0].Encap && ib.Children[0].Encap, "ESP is UDP-encapsulated")
	return a, b, nat, tb, sa, sb
}

// TestNATKeepalives: the side behind the NAT sends a keepalive (one 0xff
// octet to the peer's NAT-T port) after keep_alive without sending
// anything else; the side in front sends none; IKE traffic the NATed side
// sends (here its answers to the peer's liveness checks) makes them
// unnecessary.
func TestNATKeepalives(t *testing.T) {
	noLeaks(t)
	t.Run("idle", func(t *testing.T) {
		clk := clock.NewFake(epoch)
		a, b, nat, tb, _, sb := natPair(t, clk, "", "")
		mark := tb.mark()
		step(t, clk, 2*time.Minute, 5*time.Second, a, b)
		// Established at 0: keepalives at 20s, 40s, ... 120s.
		waitFor(t, "six keepalives", 3*time.Second, func() bool { return nat.keepalivesSent() == 6 })
		assert.Equal(t, 0, tb.keepalives(mark), "b, not behind a NAT, sends no keepalive")
		nat.mu.Lock()
		for _, to := range nat.sentTo {
			assert.Equal(t, sb.natPort, to.Port(), "keepalives go to the peer's NAT-T port")
		}
		nat.mu.Unlock()
		assert.Equal(t, 1, installed(a.sas(t)))
	})
	t.Run("traffic", func(t *testing.T) {
		clk := clock.NewFake(epoch)
		a, b, nat, tb, _, _ := natPair(t, clk, "", "dpd_delay = 10s")
		mark := tb.mark()
		step(t, clk, 2*time.Minute, 5*time.Second, a, b)
		require.GreaterOrEqual(t, tb.requests(mark, 37 /* INFORMATIONAL */, nil), 10, "b checked a's liveness every 10s")
		assert.Equal(t, 0, nat.keepalivesSent(), "a answered every 10s: no keepalive needed")
		step(t, clk, 0, time.Second, a, b)
	})
	t.Run("off", func(t *testing.T) {
		clk := clock.NewFake(epoch)
		sa, sb := pairSides(t)
		sa.daemonExtra = "keep_alive = 0"
		nat, natOpt := newNATSide()
		a := newPeer(t, "a", sa.config(t, "a"), withClock(clk), natOpt)
		b := newPeer(t, "b", sb.config(t, "b"), withClock(clk))
		establish(t, a, b, "a-net")
		step(t, clk, time.Minute, 5*time.Second, a, b)
		assert.Equal(t, 0, nat.keepalivesSent(), "keep_alive = 0")
	})
}

// TestNATRebinding: the NAT drops a's mapping and makes a new one (new
// source ports); a's next request comes to b from the new port, and b,
// not behind a NAT, moves the IKE SA and the child's SAs there (their
// UDP encapsulation ports), and reaches a again.
func TestNATRebinding(t *testing.T) {
	noLeaks(t)
	clk := clock.NewFake(epoch)
	a, b, nat, _, _, sb := natPair(t, clk, "", "")
	before := nat.outsidePort()
	for _, p := range peerEncapPorts(t, b, sb.natPort) {
		require.Equal(t, before, p, "b's SAs encapsulate to a's NAT mapping")
	}
	require.NoError(t, nat.rebind())
	after := nat.outsidePort()
	require.NotEqual(t, before, after)
	onLoop(t, a, func(sa *ikeSA) { sa.sendLiveness() })
	waitFor(t, "b follows a to its new mapping", 3*time.Second, func() bool {
		return b.sas(t)[0].Remote == netip.AddrPortFrom(netip.MustParseAddr("127.0.0.1"), after).String()
	})
	ports := peerEncapPorts(t, b, sb.natPort)
	require.Len(t, ports, 2)
	for _, p := range ports {
		assert.Equal(t, after, p, "b's child SAs moved to a's new mapping")
	}
	assert.Contains(t, b.logText(), "peer endpoint changed")
	// b reaches a at the new mapping: its child rekey completes.
	old := b.sas(t)[0].Children[0].SPIIn
	require.NoError(t, b.e.Rekey(ctxT(t, 5*time.Second), "b-net"))
	waitFor(t, "b's rekey through the new mapping", 5*time.Second, func() bool {
		x, _, ok := steady(t, a, b)
		return ok && x.Children[0].SPIOut != old
	})
	for _, p := range peerEncapPorts(t, b, sb.natPort) {
		assert.Equal(t, after, p)
	}
}

// TestNATMappingEvent: the dataplane reports ESP of a child from a new
// outer port (XFRM_MSG_MAPPING on Linux; here the model's MappingEvent):
// b, not behind a NAT, moves the IKE SA and the child there; a, behind
// it, does not move on such an event.
func TestNATMappingEvent(t *testing.T) {
	noLeaks(t)
	clk := clock.NewFake(epoch)
	a, b, _, _, sa, sb := natPair(t, clk, "", "")
	lo := netip.MustParseAddr("127.0.0.1")
	moved := netip.AddrPortFrom(lo, 40000+uint16(time.Now().UnixNano()%20000))
	res, err := b.b.Inject(t.Context(), nokernel.Packet{Dir: kernelops.DirIn, SA: inboundSA(t, b), From: moved, Len: 100})
	require.NoError(t, err)
	require.Equal(t, nokernel.Delivered, res.Verdict, res.Reason)
	waitFor(t, "b moves to the new mapping", 3*time.Second, func() bool { return b.sas(t)[0].Remote == moved.String() })
	for _, p := range peerEncapPorts(t, b, sb.natPort) {
		assert.Equal(t, moved.Port(), p, "b's child SAs moved")
	}
	assert.Contains(t, b.logText(), "NAT mapping changed")

	// a, behind the NAT, stays where it sends.
	remoteA := a.sas(t)[0].Remote
	other := netip.AddrPortFrom(lo, sb.natPort+1)
	_, err = a.b.Inject(t.Context(), nokernel.Packet{Dir: kernelops.DirIn, SA: inboundSA(t, a), From: other, Len: 100})
	require.NoError(t, err)
	waitFor(t, "a's log", 3*time.Second, func() bool {
		return strings.Contains(a.logText(), "we are behind a NAT: not following it")
	})
	assert.Equal(t, remoteA, a.sas(t)[0].Remote)
	for _, p := range peerEncapPorts(t, a, sa.natPort) {
		assert.Equal(t, sb.natPort, p, "a's child SAs stay")
	}
}

// TestNATedSideDoesNotFollow: b's request reaches a, behind the NAT,
// from a new port: a answers it but keeps sending its own requests to
// where it did (RFC 7296 §2.23).
func TestNATedSideDoesNotFollow(t *testing.T) {
	noLeaks(t)
	clk := clock.NewFake(epoch)
	a, b, nat, _, sa, sb := natPair(t, clk, "", "")
	remoteA := a.sas(t)[0].Remote
	nat.mu.Lock()
	nat.fakeFrom = sb.natPort + 1
	nat.mu.Unlock()
	onLoop(t, b, func(x *ikeSA) { x.sendLiveness() })
	waitFor(t, "a's log", 3*time.Second, func() bool {
		return strings.Contains(a.logText(), "we are behind a NAT: not following it")
	})
	nat.mu.Lock()
	nat.fakeFrom = 0
	nat.mu.Unlock()
	assert.Equal(t, remoteA, a.sas(t)[0].Remote, "a's IKE SA stays")
	for _, p := range peerEncapPorts(t, a, sa.natPort) {
		assert.Equal(t, sb.natPort, p, "a's child SAs stay")
	}
	// a's own requests still reach b.
	mark := len(b.logText())
	onLoop(t, a, func(x *ikeSA) { x.sendLiveness() })
	waitFor(t, "a's liveness check reaches b", 3*time.Second, func() bool {
		return strings.Contains(b.logText()[mark:], "received request")
	})
}
