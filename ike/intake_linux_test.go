package ike

import (
	"fmt"
	"testing"
	"time"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"

	"github.com/keyplane/keyplane/ike/message"
)

// TestInitBurstWaitsItsTurn: a burst of IKE_SA_INIT requests from many
// initiators at once (all of them started together, so they also
// retransmit together) arrives while the loop is busy. The readers queue
// the whole burst instead of keeping 768 of it and dropping the rest: a
// responder that drops all but a fixed share of each round of
// retransmissions brings up at most that share per round, and with the
// rounds 4 s, 7.2 s, ... apart, 10,000 initiators ran out of
// retransmissions (main at 2785dc2). A request of an exchange under
// way, read after the burst, is handled before it; a retransmission of
// a request still queued is dropped as read. The counts are the
// engine's; the kernel buffer holds the burst until it is read, so they
// are exact.
func TestInitBurstWaitsItsTurn(t *testing.T) {
	const burst = 3000
	p, _, sb := responder(t, "cookie_threshold = 0\ncookie_threshold_ip = 0\nblock_threshold = 0\ninit_limit_half_open = 0")
	st, err := p.e.SocketStats(t.Context())
	require.NoError(t, err)
	for _, s := range st {
		if s.RecvBuffer < 4<<20 {
			t.Skipf("IKE socket %s has a %d-byte receive buffer (not root: rmem_max applies); the burst would be dropped by the kernel before the engine sees it", s.Addr, s.RecvBuffer)
		}
	}

	release := make(chan struct{})
	released := false
	defer func() {
		if !released {
			close(release)
		}
	}()
	blocked := make(chan struct{}) // the loop is inside before anything is sent
	p.e.post(func() { close(blocked); <-release })
	<-blocked

	r := newRawInit(t, "127.0.0.1", sb.port)
	var reqs [][]byte
	for range burst {
		reqs = append(reqs, initRequest(randSPI(), randNonce(), nil))
		r.send(reqs[len(reqs)-1])
	}
	// Retransmissions of requests still queued (the initiators' next
	// round): dropped as read, they take no room.
	const again = 500
	for _, b := range reqs[:again] {
		r.send(b)
	}
	// A request of an IKE SA the responder does not have: answered
	// INVALID_IKE_SPI (not an IKE_SA_INIT request: no new SA).
	other, err := (&message.Message{Header: message.Header{SPIi: randSPI(), SPIr: randSPI(),
		Exchange: message.INFORMATIONAL, Initiator: true, MessageID: 1}}).Encode()
	require.NoError(t, err)
	r.send(other)

	read := func() (inits, others, behind, repeated int64) {
		st, err := p.e.SocketStats(t.Context())
		require.NoError(t, err)
		for _, s := range st {
			behind += int64(s.Behind)
			repeated += int64(s.Repeated)
		}
		return p.e.queuedInits.Load(), p.e.queued.Load(), behind + p.e.adm.in.fullAll.Load(), repeated
	}
	waitFor(t, fmt.Sprintf("the readers to read all %d datagrams", burst+again+1), 60*time.Second, func() bool {
		i, o, b, r := read()
		return i+o+b+r == burst+again+1
	})
	inits, others, behind, repeated := read()
	assert.Zero(t, behind, "datagrams dropped while the loop was busy")
	assert.EqualValues(t, again, repeated, "retransmissions dropped as read")
	assert.EqualValues(t, burst, inits, "IKE_SA_INIT requests queued")
	assert.EqualValues(t, 1, others, "other requests queued")
	st, err = p.e.SocketStats(t.Context())
	require.NoError(t, err)
	for _, s := range st {
		assert.Zero(t, s.Drops, "%s: the kernel dropped datagrams", s.Addr)
	}

	released = true
	close(release)
	// The first answer is the other request's, though it came last.
	a := r.answer(30 * time.Second)
	require.NotNil(t, a, "no answer")
	assert.Equal(t, message.INFORMATIONAL, a.Header.Exchange, "first answer: %s", a.String())
	assert.NotNil(t, a.Notify(message.INVALID_IKE_SPI), "first answer: %s", a.String())

	// Every request of the burst got its half-open SA (and its answer).
	waitFor(t, fmt.Sprintf("%d half-open SAs", burst), 120*time.Second, func() bool {
		s, err := p.e.Admission(t.Context())
		require.NoError(t, err)
		return s.HalfOpen == burst
	})
	assert.Equal(t, burst, checkHalfOpenBooks(t, p))
	inits, others, _, _ = read()
	assert.Zero(t, inits+others, "queued after the loop caught up")
	p.e.lanes.mu.Lock()
	assert.Empty(t, p.e.lanes.initsFrom, "queued requests remembered after the loop caught up")
	p.e.lanes.mu.Unlock()

	// Once answered, a retransmission is queued again and answered as
	// before (initSentAgain), from the half-open SA.
	r.send(reqs[0])
	a = r.answer(30 * time.Second)
	require.NotNil(t, a, "no answer to a retransmission")
	assert.Equal(t, message.IKE_SA_INIT, a.Header.Exchange, "answer: %s", a.String())
	s, err := p.e.Admission(t.Context())
	require.NoError(t, err)
	assert.Equal(t, burst, s.HalfOpen)
}

// TestExchangesUnderWayFirst: a datagram of an exchange under way read
// while the loop is busy is handled before what was posted to the loop
// ahead of it (here a stand-in for thousands of Initiate calls posted at
// once: an initiator whose loop had them queued dropped the responses to
// the INITs it had sent, past the bound, and each dropped one cost its
// exchange a 4 s retransmission).
func TestExchangesUnderWayFirst(t *testing.T) {
	p, _, sb := responder(t, "")
	release := make(chan struct{})
	released := false
	defer func() {
		if !released {
			close(release)
		}
	}()
	// The loop must be inside the blocking function before the datagram
	// arrives: a loop still busy before it (a loaded machine) would serve
	// the datagram between posted functions and the lane would never
	// hold it.
	blocked := make(chan struct{})
	p.e.post(func() { close(blocked); <-release })
	<-blocked
	const posted = 100
	var seen []int // INVALID_IKE_SPI answers sent, as each posted function saw them
	for range posted {
		p.e.post(func() { seen = append(seen, p.e.invalidSPISent) })
	}

	r := newRawInit(t, "127.0.0.1", sb.port)
	other, err := (&message.Message{Header: message.Header{SPIi: randSPI(), SPIr: randSPI(),
		Exchange: message.INFORMATIONAL, Initiator: true, MessageID: 1}}).Encode()
	require.NoError(t, err)
	r.send(other)
	waitFor(t, "the datagram queued", 30*time.Second, func() bool {
		p.e.lanes.mu.Lock()
		defer p.e.lanes.mu.Unlock()
		return len(p.e.lanes.work) == 1
	})
	released = true
	close(release)
	a := r.answer(30 * time.Second)
	require.NotNil(t, a, "no answer")
	assert.NotNil(t, a.Notify(message.INVALID_IKE_SPI), "answer: %s", a.String())
	require.NoError(t, p.e.call(t.Context(), func() {
		require.Len(t, seen, posted)
		assert.Equal(t, 1, seen[0], "the datagram was handled after the functions posted before it")
	}))
}
