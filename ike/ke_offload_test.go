package ike

import (
	"net/netip"
	"testing"
	"time"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"

	"github.com/keyplane/keyplane/ike/message"
)

type keCounts struct{ again, onLoop, used, redone, held int }

func keCountsOf(t *testing.T, e *Engine) (c keCounts) {
	t.Helper()
	require.NoError(t, e.call(t.Context(), func() {
		p := &e.crypto
		c = keCounts{p.keAgain, p.keOnLoop, p.keUsed, p.keRedone, 0}
		for _, q := range e.keHeld {
			c.held += len(q)
		}
	}))
	return c
}

// An IKE SA rekey's KE (CREATE_CHILD_SA) is answered on the responder's
// worker and its answer taken on the initiator's, and both handlers use
// what the workers computed.
func TestKEOnWorker(t *testing.T) {
	noLeaks(t)
	sa, sb := pairSides(t)
	a := newPeer(t, "a", sa.config(t, "a"))
	b := newPeer(t, "b", sb.config(t, "b"))
	rekB := countRekeyed(t, b)
	establish(t, a, b, "a-net")
	before, _, _ := steady(t, a, b)
	onLoop(t, a, func(sa *ikeSA) { sa.rekeyIKE() })
	waitFor(t, "the IKE SA rekeyed", 5*time.Second, func() bool {
		ia, _, ok := steady(t, a, b)
		return ok && ia.SPIi != before.SPIi && rekB() == 1
	})
	assert.Equal(t, keCounts{used: 1}, keCountsOf(t, b.e), "b: the rekey's KE answered on a worker and used")
	assert.Equal(t, keCounts{used: 1}, keCountsOf(t, a.e), "a: the answer's KE taken on a worker and used")
}

// What comes for an IKE SA while its request is on a worker waits and is
// handled after it, in order: here the initiator's copies of the request
// (it retransmits every 200 ms), answered again once the request is.
func TestKEHeldWhileComputed(t *testing.T) {
	noLeaks(t)
	sa, sb := pairSides(t)
	a := newPeer(t, "a", sa.config(t, "a"))
	b := newPeer(t, "b", sb.config(t, "b"))
	establish(t, a, b, "a-net")
	before, _, _ := steady(t, a, b)
	entered, release := holdWorkersFrom(t, b.e, 1)
	onLoop(t, a, func(sa *ikeSA) { sa.rekeyIKE() })
	waitFor(t, "b's CREATE_CHILD_SA request on a worker", 5*time.Second, func() bool { return entered.Load() == 1 })
	waitFor(t, "a copy of it waiting", 5*time.Second, func() bool { return keCountsOf(t, b.e).held >= 1 })
	if ia, ib, ok := steady(t, a, b); !ok || ia.SPIi != before.SPIi || ib.SPIi != before.SPIi {
		t.Fatalf("rekeyed while b's request was held: %+v / %+v", ia, ib)
	}
	release()
	waitFor(t, "the IKE SA rekeyed", 5*time.Second, func() bool {
		ia, _, ok := steady(t, a, b)
		return ok && ia.SPIi != before.SPIi
	})
	c := keCountsOf(t, b.e)
	assert.Equal(t, 0, c.held, "nothing left waiting")
	assert.Equal(t, 0, c.again, "nothing dropped")
	assert.Equal(t, 1, c.used, "the worker's answer used")
	assert.Contains(t, b.logText(), "answering retransmitted request", "the copy answered again, after the request")
}

// At most maxHeldWhileComputing messages wait per IKE SA; more are
// dropped and counted (keAgain).
func TestKEHeldBounded(t *testing.T) {
	noLeaks(t)
	sa, sb := pairSides(t)
	a := newPeer(t, "a", sa.config(t, "a"))
	b := newPeer(t, "b", sb.config(t, "b"))
	establish(t, a, b, "a-net")
	onLoop(t, b, func(sa *ikeSA) {
		for range maxHeldWhileComputing + 3 {
			sa.holdWhileComputing(nil, &message.Message{}, netip.AddrPort{}, netip.AddrPort{})
		}
	})
	c := keCountsOf(t, b.e)
	assert.Equal(t, maxHeldWhileComputing, c.held, "waiting")
	assert.Equal(t, 3, c.again, "dropped and counted")
	require.NoError(t, b.e.call(t.Context(), func() { clear(b.e.keHeld) }))
}
