package ike

import (
	"fmt"
	"net"
	"strings"
	"testing"
	"time"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"

	"github.com/keyplane/keyplane/ike/config"
	"github.com/keyplane/keyplane/ike/message"
	"github.com/keyplane/keyplane/kernelops/clock"
)

// secondChild adds child a-two (10.1.9.0/24 <-> 10.2.9.0/24, esp) to a's
// connection; b's child covers it by narrowing.
func secondChild(s *side, esp string) {
	s.extraChild = "}\n a-two {\n local_ts = 10.1.9.0/24\n remote_ts = 10.2.9.0/24\n esp_proposals = " + esp
}

// stripKE is a misbehaving responder's answer to CREATE_CHILD_SA: the
// key exchange left out of the chosen proposal (transform too, unless
// keepTransform) and the KE payload dropped.
func stripKE(keepTransform bool) func(*message.Message, []message.Payload) []message.Payload {
	return func(req *message.Message, ps []message.Payload) []message.Payload {
		if req.Exchange != message.CREATE_CHILD_SA {
			return ps
		}
		var out []message.Payload
		for _, p := range ps {
			switch x := p.(type) {
			case *message.KE:
				continue
			case *message.SA:
				if !keepTransform && len(x.Proposals) == 1 && x.Proposals[0].Protocol == message.ProtocolESP {
					var ts []message.Transform
					for _, t := range x.Proposals[0].Transforms {
						if t.Type != message.TransformKE {
							ts = append(ts, t)
						}
					}
					x.Proposals[0].Transforms = ts
				}
			}
			out = append(out, p)
		}
		return out
	}
}

// TestPFSDowngradeRefusedByInitiator: a responder that answers a PFS
// CREATE_CHILD_SA without the key exchange (the transform dropped from
// its chosen proposal, or only the KE payload missing) is refused, for a
// new child and for a rekey: no keys are derived without g^ir, the
// peer's half is deleted, a rekeyed child stays as it was.
func TestPFSDowngradeRefusedByInitiator(t *testing.T) {
	noLeaks(t)
	for _, keep := range []bool{false, true} {
		t.Run(fmt.Sprintf("transform-kept=%v", keep), func(t *testing.T) {
			sa, sb := pairSides(t)
			sa.esp, sb.esp = "aes128gcm16-x25519", "aes128gcm16-x25519"
			secondChild(&sa, "aes128gcm16-x25519")
			a := newPeer(t, "a", sa.config(t, "a"))
			b := newPeer(t, "b", sb.config(t, "b"))
			establish(t, a, b, "a-net")
			before, _, _ := steady(t, a, b)
			require.NoError(t, b.e.call(t.Context(), func() { b.e.rewriteResponse = stripKE(keep) }))

			err := a.e.Initiate(ctxT(t, 5*time.Second), "a-two")
			ne := wantNotify(t, err, message.NO_PROPOSAL_CHOSEN, false)
			if keep {
				assert.Contains(t, ne.Reason, "sent no KE payload")
			} else {
				assert.Contains(t, ne.Reason, "drops the key exchange (PFS)")
			}
			onLoop(t, a, func(sa *ikeSA) { sa.rekeyChild(firstChild(sa)) })
			// b's halves of both are deleted; the first child is untouched.
			for _, p := range []*peer{a, b} {
				waitFor(t, p.name+": the first child's 2 SAs only", 3*time.Second, func() bool {
					s, pol := p.counts(t)
					return s == 2 && pol == 3
				})
			}
			waitFor(t, "a's rekey refused", 3*time.Second, func() bool { return strings.Contains(a.logText(), "child rekey failed") })
			after, _, ok := steady(t, a, b)
			require.True(t, ok, "not steady: %+v / %+v", a.sas(t), b.sas(t))
			assert.Equal(t, before.Children[0].SPIIn, after.Children[0].SPIIn)
		})
	}
}

// TestPFSDowngradeRefusedByResponder: a responder configured for PFS
// refuses a CREATE_CHILD_SA without a key exchange, a new child or a
// rekey (NO_PROPOSAL_CHOSEN); the rekeyed child stays.
func TestPFSDowngradeRefusedByResponder(t *testing.T) {
	noLeaks(t)
	sa, sb := pairSides(t)
	sa.esp, sb.esp = "aes128gcm16", "aes128gcm16-x25519"
	secondChild(&sa, "aes128gcm16")
	a := newPeer(t, "a", sa.config(t, "a"))
	b := newPeer(t, "b", sb.config(t, "b"))
	// IKE_AUTH has no key exchange for the child: it comes up.
	establish(t, a, b, "a-net")
	before, _, _ := steady(t, a, b)
	err := a.e.Initiate(ctxT(t, 5*time.Second), "a-two")
	ne := wantNotify(t, err, message.NO_PROPOSAL_CHOSEN, true)
	assert.Contains(t, ne.Reason, "aes128gcm16")
	assert.Contains(t, b.logText(), "refusing the peer's child")
	onLoop(t, a, func(sa *ikeSA) { sa.rekeyChild(firstChild(sa)) })
	waitFor(t, "a's rekey refused", 3*time.Second, func() bool { return strings.Contains(a.logText(), "child rekey failed") })
	after, _, ok := steady(t, a, b)
	require.True(t, ok)
	assert.Equal(t, before.Children[0].SPIIn, after.Children[0].SPIIn)
	for _, p := range []*peer{a, b} {
		s, pol := p.counts(t)
		assert.Equal(t, 2, s, "%s SAs", p.name)
		assert.Equal(t, 3, pol, "%s policies", p.name)
	}
}

// TestInvalidKEOnCreateChild: the responder wants another PFS group than
// the one the initiator sent first (INVALID_KE_PAYLOAD); the initiator
// tries once more with it, for a new child and for a rekey, and the next
// rekey starts with the group the child has.
func TestInvalidKEOnCreateChild(t *testing.T) {
	noLeaks(t)
	sa, sb := pairSides(t)
	sa.esp, sb.esp = "aes128gcm16-x25519-ecp256", "aes128gcm16-ecp256"
	secondChild(&sa, "aes128gcm16-x25519-ecp256")
	tb, tapOpt := tap(nil, 0)
	a := newPeer(t, "a", sa.config(t, "a"), tapOpt)
	b := newPeer(t, "b", sb.config(t, "b"))
	establish(t, a, b, "a-net")
	creates := func(mark int) int { return tb.requests(mark, message.CREATE_CHILD_SA, nil) }

	mark := tb.mark()
	require.NoError(t, a.e.Initiate(ctxT(t, 5*time.Second), "a-two"))
	assert.Equal(t, 2, creates(mark), "the create and its retry with the group b asked for")
	assert.Contains(t, a.logText(), "peer asks for another key exchange method for the child (INVALID_KE_PAYLOAD)")
	assert.Equal(t, 2, installed(a.sas(t)))

	// The first child came from IKE_AUTH (no group yet): its first rekey
	// takes a round too, the second none.
	for i, want := range []int{2, 1} {
		mark = tb.mark()
		var spi uint32
		onLoop(t, a, func(sa *ikeSA) {
			ch := sa.children[0]
			spi = ch.inSPI
			sa.rekeyChild(ch)
		})
		waitFor(t, "the rekey through", 5*time.Second, func() bool {
			cs := a.sas(t)[0].Children
			return len(cs) == 2 && cs[0].State == "installed" && cs[1].State == "installed" &&
				cs[0].SPIIn != fmt.Sprintf("%08x", spi) && cs[1].SPIIn != fmt.Sprintf("%08x", spi)
		})
		assert.Equal(t, want, creates(mark), "rekey %d", i+1)
	}
	for _, p := range []*peer{a, b} {
		waitFor(t, p.name+": 4 SAs", 3*time.Second, func() bool { s, _ := p.counts(t); return s == 4 })
	}
}

// TestTemporaryFailure: a CREATE_CHILD_SA that reaches an IKE SA being
// deleted is answered TEMPORARY_FAILURE (RFC 7296 §2.25), not dropped;
// the initiator tries again after a wait, succeeds once the state
// passed, and gives up with the notify after tempFailureTries.
func TestTemporaryFailure(t *testing.T) {
	noLeaks(t)
	defer func(d time.Duration) { tempFailureWait = d }(tempFailureWait)
	tempFailureWait = 50 * time.Millisecond
	sa, sb := pairSides(t)
	secondChild(&sa, "aes128gcm16")
	a := newPeer(t, "a", sa.config(t, "a"))
	b := newPeer(t, "b", sb.config(t, "b"))
	establish(t, a, b, "a-net")
	setState := func(from, to ikeState) {
		require.NoError(t, b.e.call(t.Context(), func() {
			for _, sa := range b.e.sas {
				if sa.state == from {
					sa.state = to // no delete is sent: only b's state says so
					// As setState marks a change (changes.go).
					b.e.changed(sa)
				}
			}
		}))
	}
	setState(ikeEstablished, ikeDeleting)
	done := make(chan error, 1)
	go func() { done <- a.e.Initiate(ctxT(t, 10*time.Second), "a-two") }()
	waitFor(t, "two TEMPORARY_FAILURE answers", 5*time.Second, func() bool {
		return strings.Count(b.logText(), "answering TEMPORARY_FAILURE") >= 2
	})
	setState(ikeDeleting, ikeEstablished)
	require.NoError(t, <-done)
	assert.Contains(t, a.logText(), "peer answered TEMPORARY_FAILURE; trying again later")
	assert.Equal(t, 2, installed(a.sas(t)))

	// Deleting for good: the retries end, with the peer's notify.
	require.NoError(t, a.e.Terminate(ctxT(t, 5*time.Second), "a-two"))
	setState(ikeEstablished, ikeRekeyed)
	n0 := strings.Count(b.logText(), "answering TEMPORARY_FAILURE")
	err := a.e.Initiate(ctxT(t, 10*time.Second), "a-two")
	wantNotify(t, err, message.TEMPORARY_FAILURE, true)
	assert.Equal(t, tempFailureTries, strings.Count(b.logText(), "answering TEMPORARY_FAILURE")-n0, "one answer per try")
	setState(ikeRekeyed, ikeEstablished)
}

// TestInvalidIKESPI: a request for an IKE SA the responder has lost is
// answered with an unprotected INVALID_IKE_SPI; the initiator notes it
// and changes nothing (an unauthenticated notify), and ends the SA only
// when its retransmissions are unanswered.
func TestInvalidIKESPI(t *testing.T) {
	noLeaks(t)
	sa, sb := pairSides(t)
	a := newPeer(t, "a", sa.config(t, "a"))
	tb, tapOpt := tap(nil, 0)
	b := newPeer(t, "b", sb.config(t, "b"), tapOpt)
	establish(t, a, b, "a-net")
	ev := collect(t, a)
	require.NoError(t, b.e.call(t.Context(), func() {
		for _, sa := range b.e.sas {
			sa.destroy("forgotten by the test")
		}
	}))
	mark := tb.mark()
	onLoop(t, a, func(sa *ikeSA) { sa.sendLiveness() })
	waitFor(t, "a's IKE SA dead", 5*time.Second, func() bool { return len(a.sas(t)) == 0 })
	var answers int
	for _, m := range tb.since(mark) {
		if m.response && m.exch == message.INFORMATIONAL {
			answers++
		}
	}
	// The check and retransmit_tries = 3 retransmissions, each answered.
	assert.Equal(t, 4, answers)
	// One line; the others of the window are counted (prelog.go).
	assert.Equal(t, 1, strings.Count(b.logText(), "answering INVALID_IKE_SPI"))
	assert.Equal(t, 1, strings.Count(a.logText(), "peer answered INVALID_IKE_SPI"), "logged once")
	// The collector reads the events on its own goroutine: the dead
	// event may still be on its way when the SA list is empty.
	waitFor(t, "a's dead event collected", 3*time.Second, func() bool { return len(ev.since(0, "ike", "dead")) > 0 })
	dead := ev.since(0, "ike", "dead")
	require.Len(t, dead, 1)
	assert.Contains(t, dead[0].Reason, ErrPeerNotResponding.Error())
	a.expectEmpty(t)
}

// TestInvalidIKESPIRateLimit: INVALID_IKE_SPI answers follow one global
// token bucket — invalidSPIBurst at once, then invalidSPIRate per second
// — whatever the number of sources or SPIs.
func TestInvalidIKESPIRateLimit(t *testing.T) {
	noLeaks(t)
	clk := clock.NewFake(epoch)
	_, sb := pairSides(t)
	b := newPeer(t, "b", sb.config(t, "b"), withClock(clk))
	var conns []*net.UDPConn
	for range 4 { // several sources
		c, err := net.ListenUDP("udp4", &net.UDPAddr{IP: net.IPv4(127, 0, 0, 1)})
		require.NoError(t, err)
		t.Cleanup(func() { c.Close() })
		conns = append(conns, c)
	}
	to := &net.UDPAddr{IP: net.IPv4(127, 0, 0, 1), Port: int(sb.port)}
	send := func(n int) {
		for i := range n {
			m := &message.Message{Header: message.Header{SPIi: 0x1000 + uint64(i), SPIr: 0x2000 + uint64(i),
				Exchange: message.INFORMATIONAL, Initiator: true, MessageID: uint32(i)}}
			data, err := m.Encode()
			require.NoError(t, err)
			_, err = conns[i%len(conns)].WriteToUDP(data, to)
			require.NoError(t, err)
		}
		settle(t, b)
	}
	answers := func() int {
		n := 0
		buf := make([]byte, 2048)
		for _, c := range conns {
			for {
				c.SetReadDeadline(time.Now().Add(100 * time.Millisecond))
				k, _, err := c.ReadFromUDP(buf)
				if err != nil {
					break
				}
				m, err := message.Parse(buf[:k])
				require.NoError(t, err)
				require.NotNil(t, m.Notify(message.INVALID_IKE_SPI), "answer %v", m)
				assert.True(t, m.Response)
				assert.Equal(t, uint64(0x2000), m.SPIr&^0xfff)
				n++
			}
		}
		return n
	}
	send(100)
	assert.Equal(t, invalidSPIBurst, answers(), "the burst")
	send(100)
	assert.Equal(t, 0, answers(), "no token left while the clock stands")
	clk.Advance(time.Second)
	send(100)
	assert.Equal(t, int(invalidSPIRate), answers(), "one second's worth")
	// Responses and IKE_SA_INIT responses are never answered.
	m := &message.Message{Header: message.Header{SPIi: 7, SPIr: 8, Exchange: message.INFORMATIONAL, Response: true}}
	data, _ := m.Encode()
	clk.Advance(time.Hour)
	conns[0].WriteToUDP(data, to)
	settle(t, b)
	assert.Equal(t, 0, answers())
	// While an HA takeover holds unknown SPIs nothing is answered, tokens
	// or not; once it is over they are answered again.
	require.NoError(t, b.e.HoldUnknownSPIs(t.Context(), true))
	send(5)
	assert.Equal(t, 0, answers(), "held")
	var held int
	require.NoError(t, b.e.call(t.Context(), func() { held = b.e.unknownHeld }))
	assert.Equal(t, 5, held)
	require.NoError(t, b.e.HoldUnknownSPIs(t.Context(), false))
	send(5)
	assert.Equal(t, 5, answers(), "answered again")
}

// TestIKESuiteRecheckedAtAuth: the responder picks the IKE suite from
// the first connection the addresses allow; when IKE_AUTH then selects
// another connection by identity whose proposals do not hold that suite,
// the SA is refused (AUTHENTICATION_FAILED), not run outside the
// connection's proposals. With a suite the connection allows it is up.
func TestIKESuiteRecheckedAtAuth(t *testing.T) {
	noLeaks(t)
	for _, tc := range []struct {
		aProposals string
		ok         bool
	}{
		{"aes128gcm16-prfsha256-x25519", false},
		{"aes256-sha256-ecp256", true},
	} {
		t.Run(tc.aProposals, func(t *testing.T) {
			sa, sb := pairSides(t)
			sa.proposals = tc.aProposals
			a := newPeer(t, "a", sa.config(t, "a"))
			// b: connection "other" first (a peer elsewhere by identity,
			// the wide proposals), then "b" for a with the narrow ones.
			src := fmt.Sprintf(`
daemon {
	retransmit_timeout = 200ms
	retransmit_tries = 3
}
connections {
	other {
		local_addrs = 127.0.0.1
		remote_addrs = 127.0.0.1
		local_port = %d
		local_port_nat = %d
		proposals = aes128gcm16-prfsha256-x25519, aes256-sha256-ecp256
		psk_env = PSK
		local {
			id = b.example.org
		}
		remote {
			id = somebody-else.example.org
		}
		children {
			other-net {
				local_ts = 10.2.0.0/16
				remote_ts = 10.1.0.0/16
			}
		}
	}
	b {
		local_addrs = 127.0.0.1
		remote_addrs = 127.0.0.1
		local_port = %d
		local_port_nat = %d
		proposals = aes256-sha256-ecp256
		psk_env = PSK
		local {
			id = b.example.org
		}
		remote {
			id = a.example.org
		}
		children {
			b-net {
				local_ts = 10.2.0.0/16
				remote_ts = 10.1.0.0/16
				esp_proposals = aes128gcm16
			}
		}
	}
}
`, sb.port, sb.natPort, sb.port, sb.natPort)
			cfg, err := config.Parse("b.conf", []byte(src), config.Options{Getenv: func(string) (string, bool) { return sb.psk, true }})
			require.NoError(t, err)
			b := newPeer(t, "b", cfg)
			err = a.e.Initiate(ctxT(t, 5*time.Second), "a-net")
			if tc.ok {
				require.NoError(t, err)
				assert.Equal(t, "b", b.sas(t)[0].Name)
				return
			}
			wantNotify(t, err, message.AUTHENTICATION_FAILED, true)
			waitFor(t, "b says why", 2*time.Second, func() bool {
				return strings.Contains(b.logText(), "connection b accepts peer") &&
					strings.Contains(b.logText(), "not the IKE suite")
			})
			a.expectEmpty(t)
			b.expectEmpty(t)
		})
	}
}

// TestRekeyAPI: Engine.Rekey rekeys a child by its name and a
// connection's IKE SA by the connection's name, at once; an unknown name
// is ErrNotFound.
func TestRekeyAPI(t *testing.T) {
	noLeaks(t)
	sa, sb := pairSides(t)
	a := newPeer(t, "a", sa.config(t, "a"))
	b := newPeer(t, "b", sb.config(t, "b"))
	establish(t, a, b, "a-net")
	before, _, _ := steady(t, a, b)
	require.NoError(t, b.e.Rekey(ctxT(t, 5*time.Second), "b-net"))
	var mid IKESAInfo
	waitFor(t, "the child rekeyed", 5*time.Second, func() bool {
		var ok bool
		mid, _, ok = steady(t, a, b)
		return ok && mid.Children[0].SPIIn != before.Children[0].SPIIn
	})
	require.NoError(t, a.e.Rekey(ctxT(t, 5*time.Second), "a"))
	waitFor(t, "the IKE SA rekeyed", 5*time.Second, func() bool {
		x, _, ok := steady(t, a, b)
		return ok && x.SPIi != mid.SPIi && x.Children[0].SPIIn == mid.Children[0].SPIIn && x.Role == "initiator"
	})
	assert.ErrorIs(t, a.e.Rekey(t.Context(), "nope"), ErrNotFound)
	require.NoError(t, a.e.Terminate(ctxT(t, 5*time.Second), "a-net"))
	assert.Error(t, a.e.Rekey(t.Context(), "a-net"), "not up")
}

// TestChildSANotFound: a rekey of a child the peer does not have (it
// lost it without a word) is answered CHILD_SA_NOT_FOUND (RFC 7296
// §2.25); the initiator then removes the child and creates it anew.
func TestChildSANotFound(t *testing.T) {
	noLeaks(t)
	sa, sb := pairSides(t)
	a := newPeer(t, "a", sa.config(t, "a"))
	b := newPeer(t, "b", sb.config(t, "b"))
	establish(t, a, b, "a-net")
	before, _, _ := steady(t, a, b)
	require.NoError(t, b.e.call(t.Context(), func() {
		for _, sa := range b.e.sas {
			for _, ch := range append([]*childSA(nil), sa.children...) {
				ch.remove("forgotten by the test")
				sa.dropChild(ch)
			}
		}
	}))
	require.NoError(t, a.e.Rekey(ctxT(t, 5*time.Second), "a-net"))
	waitFor(t, "a new child on both sides", 5*time.Second, func() bool {
		x, _, ok := steady(t, a, b)
		return ok && x.Children[0].SPIIn != before.Children[0].SPIIn
	})
	assert.Contains(t, b.logText(), "peer rekeys a child we do not have")
	assert.Contains(t, a.logText(), "CHILD_SA_NOT_FOUND): replacing it by a new one")
	for _, p := range []*peer{a, b} {
		s, pol := p.counts(t)
		assert.Equal(t, 2, s, "%s SAs", p.name)
		assert.Equal(t, 3, pol, "%s policies", p.name)
	}
}

// TestOldSAGrace: after the peer rekeyed the IKE SA, its delete of the
// old SA never arrives (dropped on the way); after oldSAGrace keyplane
// deletes the old SA itself, and the new one carries on.
func TestOldSAGrace(t *testing.T) {
	noLeaks(t)
	defer func(d time.Duration) { oldSAGrace = d }(oldSAGrace)
	oldSAGrace = 300 * time.Millisecond
	sa, sb := pairSides(t)
	sa.extraConn, sb.extraConn = "rekey_time = 0", "rekey_time = 0"
	px := newProxy(t, sb.port, sb.natPort)
	sa.remotePort, sa.remoteNATPort = px.ports()
	a := newPeer(t, "a", sa.config(t, "a"))
	b := newPeer(t, "b", sb.config(t, "b"))
	establish(t, a, b, "a-net")
	before := a.sas(t)[0]
	var oldSPIi uint64
	fmt.Sscanf(before.SPIi, "%x", &oldSPIi)
	px.setDrop(func(m *message.Message, fromInitiator bool) bool {
		// b's requests on the old SA (its delete of it) never reach a.
		return !fromInitiator && !m.Response && m.SPIi == oldSPIi && m.Exchange == message.INFORMATIONAL
	})
	require.NoError(t, b.e.Rekey(ctxT(t, 5*time.Second), "b"))
	waitFor(t, "a deletes the old SA itself", 5*time.Second, func() bool {
		return strings.Contains(a.logText(), "the peer did not delete the old IKE SA")
	})
	waitFor(t, "one IKE SA each side", 5*time.Second, func() bool {
		x, _, ok := steady(t, a, b)
		return ok && x.SPIi != before.SPIi
	})
}
