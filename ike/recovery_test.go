package ike

import (
	"errors"
	"fmt"
	"net/netip"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"

	"github.com/keyplane/keyplane/backends/nokernel"
	"github.com/keyplane/keyplane/kernelops"
	"github.com/keyplane/keyplane/kernelops/clock"
)

func TestEndOf(t *testing.T) {
	dead := errPeerGone("peer not responding")
	down := fmt.Errorf("%w: held too long", ErrLinkDown)
	other := errors.New("AUTHENTICATION_FAILED")
	for _, tc := range []struct {
		name                    string
		connecting, established bool
		marked                  endKind
		why                     error
		want                    endKind
	}{
		{"initiation unanswered", true, false, endQuiet, dead, endRetry},
		{"initiation on a dead link", true, false, endQuiet, down, endLinkTry},
		{"initiation refused", true, false, endQuiet, other, endQuiet},
		{"established, peer gone", false, true, endQuiet, dead, endDead},
		{"established, link down for good", false, true, endQuiet, down, endDead},
		{"established, deleted by us", false, true, endQuiet, other, endQuiet},
		{"deleted by peer", false, true, endByPeer, errors.New("deleted by peer"), endByPeer},
		{"over_time", false, true, endDead, errors.New("hard lifetime reached"), endDead},
		{"half-open responder gone", false, false, endQuiet, dead, endQuiet},
	} {
		t.Run(tc.name, func(t *testing.T) {
			assert.Equal(t, tc.want, endOf(tc.connecting, tc.established, tc.marked, tc.why))
		})
	}
}

func TestKeyingRetry(t *testing.T) {
	for _, tc := range []struct {
		keyingtries, tries int
		want               bool
	}{
		{1, 1, false}, // swanctl's default: one try
		{3, 1, true}, {3, 2, true}, {3, 3, false},
		{0, 1, true}, {0, 1000, true}, // 0: forever
	} {
		assert.Equal(t, tc.want, keyingRetry(tc.keyingtries, tc.tries), "keyingtries %d after %d", tc.keyingtries, tc.tries)
	}
}

func TestKeyingBackoff(t *testing.T) {
	want := []time.Duration{time.Second, 2 * time.Second, 4 * time.Second, 8 * time.Second, 16 * time.Second,
		32 * time.Second, 64 * time.Second, 2 * time.Minute, 2 * time.Minute}
	for i, w := range want {
		assert.Equal(t, w, keyingBackoff(i+1), "after attempt %d", i+1)
	}
	assert.Equal(t, 2*time.Minute, keyingBackoff(1000))
}

func TestHardEnd(t *testing.T) {
	h := time.Hour
	for _, tc := range []struct {
		rekey, reauth, over, want time.Duration
	}{
		{4 * h, 0, 24 * time.Minute, 4*h + 24*time.Minute},
		{0, 2 * h, 12 * time.Minute, 2*h + 12*time.Minute},
		{4 * h, 2 * h, 10 * time.Minute, 2*h + 10*time.Minute}, // the first of them
		{2 * h, 4 * h, 10 * time.Minute, 2*h + 10*time.Minute},
		{0, 0, 10 * time.Minute, 0}, // neither scheduled: no hard end
		{4 * h, 0, 0, 0},            // over_time 0: none
	} {
		assert.Equal(t, tc.want, hardEnd(tc.rekey, tc.reauth, tc.over), "%+v", tc)
	}
}

func TestKeepaliveWait(t *testing.T) {
	iv := 20 * time.Second
	for _, tc := range []struct {
		sinceSent time.Duration // -1: never sent
		send      bool
		next      time.Duration
	}{
		{-1, true, iv},
		{0, false, iv},
		{5 * time.Second, false, 15 * time.Second},
		{20 * time.Second, true, iv},
		{50 * time.Second, true, iv},
	} {
		var last time.Time
		if tc.sinceSent >= 0 {
			last = epoch.Add(-tc.sinceSent)
		}
		send, next := keepaliveWait(last, epoch, iv)
		assert.Equal(t, tc.send, send, "%+v", tc)
		assert.Equal(t, tc.next, next, "%+v", tc)
	}
}

func TestFollowsPeer(t *testing.T) {
	assert.True(t, followsPeer(true, true), "half-open: the float to the NAT-T port")
	assert.True(t, followsPeer(false, false), "not behind a NAT: follow")
	assert.False(t, followsPeer(false, true), "behind a NAT: do not follow (RFC 7296 §2.23)")
}

// recorder keeps all of a peer's engine events (their times are the fake
// clock's).
type recorder struct {
	mu  sync.Mutex
	evs []Event
}

func record(t *testing.T, p *peer) *recorder {
	r := &recorder{}
	sub := p.e.Subscribe()
	done := make(chan struct{})
	go func() {
		defer close(done)
		for ev := range sub.C {
			r.mu.Lock()
			r.evs = append(r.evs, ev)
			r.mu.Unlock()
		}
	}()
	t.Cleanup(func() { sub.Close(); <-done })
	return r
}

// count counts events of kind and state (any state if "").
func (r *recorder) match(kind, state string) []Event {
	r.mu.Lock()
	defer r.mu.Unlock()
	var out []Event
	for _, ev := range r.evs {
		if string(ev.Kind) == kind && (state == "" || ev.State == state) {
			out = append(out, ev)
		}
	}
	return out
}

// stepUntil advances the fake clock by every until cond holds, at most
// limit in all.
func stepUntil(t *testing.T, clk *clock.Fake, every, limit time.Duration, what string, cond func() bool, ps ...*peer) {
	t.Helper()
	for d := time.Duration(0); d <= limit; d += every {
		if cond() {
			return
		}
		step(t, clk, every, every, ps...)
	}
	if !cond() {
		t.Fatalf("%s: not within %s of fake time", what, limit)
	}
}

// policies counts p's dataplane policies by action.
func policies(t *testing.T, p *peer) map[kernelops.Action]int {
	out := map[kernelops.Action]int{}
	for e, err := range p.b.Policies(t.Context()) {
		require.NoError(t, err)
		out[e.Action]++
	}
	return out
}

// outbound pushes one packet a-side host -> b-side host through p's
// model.
func outbound(t *testing.T, p *peer) nokernel.Result {
	res, err := p.b.Inject(t.Context(), nokernel.Packet{Src: netip.MustParseAddr("10.1.0.5"), Dst: netip.MustParseAddr("10.2.0.9"), Proto: 6, Len: 100})
	require.NoError(t, err)
	return res
}

// deadPeerPair: a behind a black hole that eats everything once b is
// established with it; a checks liveness every 10s.
func deadPeerPair(t *testing.T, clk *clock.Fake, childExtra, connExtra string) (a, b *peer, nat *natSide) {
	sa, sb := pairSides(t)
	sa.extraConn = "dpd_delay = 10s\n" + connExtra
	sa.extraChild = childExtra
	nat, natOpt := newNATSide()
	a = newPeer(t, "a", sa.config(t, "a"), withClock(clk), natOpt)
	b = newPeer(t, "b", sb.config(t, "b"), withClock(clk))
	establish(t, a, b, "a-net")
	return a, b, nat
}

// TestDPDAction: the peer stops answering (a black hole), a's liveness
// check goes unanswered and the IKE SA ends; then each child's
// dpd_action: clear leaves nothing, trap installs trap policies whose
// traffic brings the child back, restart initiates it again at once
// (retried under keyingtries = 0 until the path returns). b, which kept
// its SA all along, drops it when a's new IKE_AUTH carries
// INITIAL_CONTACT.
func TestDPDAction(t *testing.T) {
	noLeaks(t)
	dies := func(t *testing.T, clk *clock.Fake, a *peer, r *recorder) {
		t.Helper()
		stepUntil(t, clk, time.Second, time.Minute, "a declares b dead", func() bool {
			return len(r.match("ike", "dead")) > 0
		}, a)
		require.Contains(t, r.match("ike", "dead")[0].Reason, "peer not responding")
	}
	recovered := func(t *testing.T, a, b *peer) {
		t.Helper()
		waitFor(t, "one IKE SA with one child each side", 5*time.Second, func() bool {
			_, _, ok := steady(t, a, b)
			return ok
		})
		assert.Contains(t, b.logText(), "INITIAL_CONTACT: removed the peer's other IKE SAs")
		s, _ := b.counts(t)
		assert.Equal(t, 2, s, "b holds only the new child's SAs")
	}
	t.Run("clear", func(t *testing.T) {
		clk := clock.NewFake(epoch)
		a, b, nat := deadPeerPair(t, clk, "dpd_action = clear", "")
		r := record(t, a)
		nat.blackhole(true)
		dies(t, clk, a, r)
		step(t, clk, time.Minute, time.Second, a, b)
		assert.Empty(t, a.sas(t))
		assert.Empty(t, r.match("ike", "init-sent"), "nothing initiated again")
		a.expectEmpty(t)
	})
	t.Run("trap", func(t *testing.T) {
		clk := clock.NewFake(epoch)
		a, b, nat := deadPeerPair(t, clk, "dpd_action = trap", "")
		r := record(t, a)
		nat.blackhole(true)
		dies(t, clk, a, r)
		step(t, clk, 5*time.Second, time.Second, a, b)
		assert.Empty(t, a.sas(t))
		assert.Equal(t, map[kernelops.Action]int{kernelops.ActionTrap: 1}, policies(t, a), "a trap policy")
		nat.blackhole(false)
		res := outbound(t, a)
		require.True(t, res.Acquire, "traffic hits the trap: %+v", res)
		recovered(t, a, b)
	})
	t.Run("restart", func(t *testing.T) {
		clk := clock.NewFake(epoch)
		a, b, nat := deadPeerPair(t, clk, "dpd_action = restart", "keyingtries = 0")
		r := record(t, a)
		nat.blackhole(true)
		dies(t, clk, a, r)
		// Initiated again at once, and again while the path stays dead.
		stepUntil(t, clk, time.Second, 2*time.Minute, "three attempts", func() bool {
			return len(r.match("ike", "init-sent")) >= 3
		}, a, b)
		nat.blackhole(false)
		stepUntil(t, clk, time.Second, 3*time.Minute, "re-established", func() bool {
			_, _, ok := steady(t, a, b)
			return ok
		}, a, b)
		recovered(t, a, b)
		assert.Contains(t, a.logText(), "dpd_action = restart")
	})
}

// deleteOnLoop deletes p's installed child (or, child "", its IKE SA),
// telling the peer, without waiting as Terminate does (the peer may
// bring it back at once).
func deleteOnLoop(t *testing.T, p *peer, child string) {
	onLoop(t, p, func(sa *ikeSA) {
		if child == "" {
			sa.startDelete("terminated by command")
			return
		}
		for _, ch := range sa.children {
			if ch.cfg.Name == child && ch.state == childInstalled {
				sa.deleteChild(ch, "terminated by command")
			}
		}
	})
}

// TestCloseAction: the peer deletes the child (or the IKE SA): none
// leaves it gone, trap installs trap policies, start brings it back at
// once. A rekey (the old child deleted by the peer) is no close.
func TestCloseAction(t *testing.T) {
	noLeaks(t)
	pair := func(t *testing.T, action string) (*peer, *peer) {
		sa, sb := pairSides(t)
		sa.extraChild = "close_action = " + action
		a := newPeer(t, "a", sa.config(t, "a"))
		b := newPeer(t, "b", sb.config(t, "b"))
		establish(t, a, b, "a-net")
		return a, b
	}
	t.Run("none", func(t *testing.T) {
		a, b := pair(t, "none")
		require.NoError(t, b.e.Terminate(ctxT(t, 5*time.Second), "b-net"))
		time.Sleep(200 * time.Millisecond)
		assert.Equal(t, 0, installed(a.sas(t)))
		assert.Len(t, a.sas(t), 1, "the IKE SA stays")
	})
	t.Run("trap", func(t *testing.T) {
		a, b := pair(t, "trap")
		require.NoError(t, b.e.Terminate(ctxT(t, 5*time.Second), "b-net"))
		waitFor(t, "a trap policy", 3*time.Second, func() bool { return policies(t, a)[kernelops.ActionTrap] == 1 })
		assert.Equal(t, 0, installed(a.sas(t)))
		require.True(t, outbound(t, a).Acquire)
		waitFor(t, "the child back on the IKE SA", 5*time.Second, func() bool {
			_, _, ok := steady(t, a, b)
			return ok
		})
	})
	t.Run("start", func(t *testing.T) {
		a, b := pair(t, "start")
		before := a.sas(t)[0]
		deleteOnLoop(t, b, "b-net")
		waitFor(t, "the child back on the same IKE SA", 5*time.Second, func() bool {
			x, _, ok := steady(t, a, b)
			return ok && x.SPIi == before.SPIi && x.Children[0].SPIIn != before.Children[0].SPIIn
		})
		// The IKE SA deleted by the peer: a new one with the child.
		deleteOnLoop(t, b, "")
		waitFor(t, "a new IKE SA with the child", 5*time.Second, func() bool {
			x, _, ok := steady(t, a, b)
			return ok && x.SPIi != before.SPIi
		})
		// A rekey deletes the old child: not a close.
		x, _, _ := steady(t, a, b)
		require.NoError(t, b.e.Rekey(ctxT(t, 5*time.Second), "b-net"))
		waitFor(t, "rekeyed", 5*time.Second, func() bool {
			y, _, ok := steady(t, a, b)
			return ok && y.Children[0].SPIIn != x.Children[0].SPIIn
		})
		time.Sleep(200 * time.Millisecond)
		_, _, ok := steady(t, a, b)
		assert.True(t, ok, "still one child each side after the rekey")
		assert.Equal(t, 2, strings.Count(a.logText(), "close_action = start"), "restarted twice, not for the rekey")
	})
}

// TestKeyingTries: an initiation the peer does not answer is tried
// keyingtries times with a growing wait between, then given up with
// ErrPeerNotResponding; keyingtries = 0 goes on until the peer answers,
// and the caller of Initiate gets the final outcome.
func TestKeyingTries(t *testing.T) {
	noLeaks(t)
	t.Run("3", func(t *testing.T) {
		clk := clock.NewFake(epoch)
		sa, sb := pairSides(t)
		sa.extraConn = "keyingtries = 3"
		nat, natOpt := newNATSide()
		nat.blackhole(true)
		a := newPeer(t, "a", sa.config(t, "a"), withClock(clk), natOpt)
		b := newPeer(t, "b", sb.config(t, "b"), withClock(clk))
		r := record(t, a)
		done := make(chan error, 1)
		go func() { done <- a.e.Initiate(ctxT(t, 30*time.Second), "a-net") }()
		var err error
		stepUntil(t, clk, 200*time.Millisecond, time.Minute, "Initiate's outcome", func() bool {
			select {
			case err = <-done:
				return true
			default:
				return false
			}
		}, a, b)
		require.ErrorIs(t, err, ErrPeerNotResponding)
		inits, deaths := r.match("ike", "init-sent"), r.match("ike", "dead")
		require.Len(t, inits, 3)
		require.Len(t, deaths, 3)
		for i := 1; i < 3; i++ {
			gap := inits[i].Time.Sub(deaths[i-1].Time)
			d := keyingBackoff(i)
			assert.True(t, gap >= d/2-200*time.Millisecond && gap <= d+200*time.Millisecond, "wait before attempt %d: %s, want %s to %s", i+1, gap, d/2, d)
		}
		assert.Contains(t, a.logText(), "giving up the initiation")
	})
	t.Run("0", func(t *testing.T) {
		clk := clock.NewFake(epoch)
		sa, sb := pairSides(t)
		sa.extraConn = "keyingtries = 0"
		nat, natOpt := newNATSide()
		nat.blackhole(true)
		a := newPeer(t, "a", sa.config(t, "a"), withClock(clk), natOpt)
		b := newPeer(t, "b", sb.config(t, "b"), withClock(clk))
		r := record(t, a)
		done := make(chan error, 1)
		go func() { done <- a.e.Initiate(ctxT(t, 60*time.Second), "a-net") }()
		stepUntil(t, clk, time.Second, 10*time.Minute, "six attempts", func() bool {
			return len(r.match("ike", "init-sent")) >= 6
		}, a, b)
		nat.blackhole(false)
		var err error
		stepUntil(t, clk, time.Second, 5*time.Minute, "Initiate's outcome", func() bool {
			select {
			case err = <-done:
				return true
			default:
				return false
			}
		}, a, b)
		require.NoError(t, err)
		_, _, ok := steady(t, a, b)
		assert.True(t, ok)
	})
}

// TestStartActionRetried: start_action = start against a peer that does
// not answer yet is retried under keyingtries = 0 until it does.
func TestStartActionRetried(t *testing.T) {
	noLeaks(t)
	clk := clock.NewFake(epoch)
	sa, sb := pairSides(t)
	sa.start, sa.extraConn = "start", "keyingtries = 0"
	nat, natOpt := newNATSide()
	nat.blackhole(true)
	a := newPeer(t, "a", sa.config(t, "a"), withClock(clk), natOpt)
	b := newPeer(t, "b", sb.config(t, "b"), withClock(clk))
	r := record(t, a)
	stepUntil(t, clk, time.Second, 5*time.Minute, "attempts", func() bool {
		return len(r.match("ike", "dead")) >= 3
	}, a, b)
	assert.Empty(t, b.sas(t))
	nat.blackhole(false)
	stepUntil(t, clk, time.Second, 5*time.Minute, "established", func() bool {
		_, _, ok := steady(t, a, b)
		return ok
	}, a, b)
}

// TestDownTimeout: a's link goes down and stays down. Suspended, a sends
// nothing; after down_timeout its IKE SA ends and the child's
// dpd_action (restart) starts a new one, which waits for the link,
// still sending nothing. When the link returns it goes out, and b,
// which kept the old SA, drops it on the new one's INITIAL_CONTACT.
func TestDownTimeout(t *testing.T) {
	noLeaks(t)
	clk := clock.NewFake(epoch)
	sa, sb := pairSides(t)
	sa.daemonExtra = "down_timeout = 2m"
	sa.addr, sb.remoteAddr = "127.0.0.2", "127.0.0.2" // on eth1 only
	sa.extraConn = "dpd_delay = 30s\nkeyingtries = 0"
	sa.extraChild = "dpd_action = restart"
	ta, tapA := tap(clk, 0)
	a := newPeer(t, "a", sa.config(t, "a"), withClock(clk), tapA, linkOpts("127.0.0.2/32"))
	b := newPeer(t, "b", sb.config(t, "b"), withClock(clk))
	r := record(t, a)
	establish(t, a, b, "a-net")
	mark := ta.mark()
	require.NoError(t, a.b.Net().SetLinkUp("eth1", false))
	waitFor(t, "suspended", 3*time.Second, func() bool { return strings.Contains(a.logText(), "ike-sas-suspended=1") })
	step(t, clk, 119*time.Second, 5*time.Second, a, b)
	require.Empty(t, r.match("ike", "dead"), "not ended before down_timeout")
	step(t, clk, 5*time.Second, time.Second, a, b)
	dead := r.match("ike", "dead")
	require.Len(t, dead, 1)
	assert.Contains(t, dead[0].Reason, "down_timeout")
	waitFor(t, "a new IKE SA waiting for the link", 3*time.Second, func() bool {
		sas := a.sas(t)
		return len(sas) == 1 && sas[0].State == "init-sent"
	})
	step(t, clk, 3*time.Minute, 5*time.Second, a, b)
	assert.Empty(t, ta.since(mark), "nothing sent into the dead link")
	require.NoError(t, a.b.Net().SetLinkUp("eth1", true))
	stepUntil(t, clk, time.Second, time.Minute, "re-established", func() bool {
		_, _, ok := steady(t, a, b)
		return ok
	}, a, b)
	assert.Contains(t, b.logText(), "INITIAL_CONTACT: removed the peer's other IKE SAs")
}

// TestPeerRestartHint: b restarts and forgets its SAs. a's next liveness
// check is answered INVALID_IKE_SPI; with dpd_action = restart a makes a
// new IKE SA with the child at once (make before break), instead of
// waiting for its retransmissions to give up, and the old one ends with
// them later without a second restart.
func TestPeerRestartHint(t *testing.T) {
	noLeaks(t)
	clk := clock.NewFake(epoch)
	sa, sb := pairSides(t)
	sa.extraConn = "dpd_delay = 10s"
	sa.extraChild = "dpd_action = restart"
	a := newPeer(t, "a", sa.config(t, "a"), withClock(clk))
	b := newPeer(t, "b", sb.config(t, "b"), withClock(clk))
	r := record(t, a)
	establish(t, a, b, "a-net")
	first := a.sas(t)[0]
	require.NoError(t, b.e.Close())
	b2 := newPeer(t, "b2", sb.config(t, "b"), withClock(clk))
	stepUntil(t, clk, time.Second, 30*time.Second, "a's liveness check answered INVALID_IKE_SPI", func() bool {
		return len(r.match("ike", "invalid-spi")) > 0
	}, a, b2)
	waitFor(t, "a new IKE SA with the child, before any retransmission gave up", 3*time.Second, func() bool {
		for _, x := range a.sas(t) {
			if x.SPIi != first.SPIi && x.State == "established" && len(x.Children) == 1 && x.Children[0].State == "installed" {
				return true
			}
		}
		return false
	})
	assert.Empty(t, r.match("ike", "dead"), "the old SA has not given up yet")
	stepUntil(t, clk, time.Second, time.Minute, "the old IKE SA gone", func() bool {
		_, _, ok := steady(t, a, b2)
		return ok
	}, a, b2)
	time.Sleep(50 * time.Millisecond)
	_, _, ok := steady(t, a, b2)
	assert.True(t, ok, "one IKE SA and one child each side: no second restart")
}
