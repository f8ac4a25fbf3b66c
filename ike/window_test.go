package ike

import (
	"errors"
	"fmt"
	"testing"
	"time"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"

	"github.com/keyplane/keyplane/ike/message"
	"github.com/keyplane/keyplane/kernelops/clock"
)

// fakeWindow is a window on a fake clock whose datagrams go to a log.
type fakeWindow struct {
	w      *window
	clk    *clock.Fake
	sent   []string // "exch#id@offset" per datagram
	start  time.Time
	gaveUp []*request
	policy retransmitPolicy
}

type clockStop struct{ t clock.Timer }

func (s clockStop) Stop() { s.t.Stop() }

func newFakeWindow() *fakeWindow {
	f := &fakeWindow{clk: clock.NewFake(epoch), start: epoch,
		policy: retransmitPolicy{Timeout: 4 * time.Second, Base: 1.8, Tries: 3}}
	f.w = &window{host: f}
	return f
}

// fakeWindow is its window's host.

func (f *fakeWindow) winPolicy() retransmitPolicy { return f.policy }

func (f *fakeWindow) winAfter(d time.Duration, fn func()) stopper {
	return clockStop{f.clk.AfterFunc(d, fn)}
}

func (f *fakeWindow) encodeRequest(r *request) ([]byte, error) {
	if r.exch == 0 {
		return nil, errors.New("no exchange")
	}
	return []byte(fmt.Sprintf("%v#%d", r.exch, r.msgID)), nil
}

func (f *fakeWindow) winXmit(r *request) {
	f.sent = append(f.sent, fmt.Sprintf("%s@%s", r.data, f.clk.Now().Sub(f.start)))
}

func (f *fakeWindow) winGiveUp(r *request) { f.gaveUp = append(f.gaveUp, r) }

func (f *fakeWindow) winChanged() {}

func req(x message.ExchangeType) *request { return &request{exch: x} }

// TestWindowRetransmitsWithBackoffAndGivesUp: a request unanswered is
// sent again after timeout*base^n, Tries times, then given up; the
// window is free again and the next request takes the next message ID.
func TestWindowRetransmitsWithBackoffAndGivesUp(t *testing.T) {
	f := newFakeWindow()
	r := req(message.INFORMATIONAL)
	require.NoError(t, f.w.start(r))
	f.clk.Advance(time.Minute)
	assert.Equal(t, []string{
		"INFORMATIONAL#0@0s",
		"INFORMATIONAL#0@4s",     // 4s
		"INFORMATIONAL#0@11.2s",  // +4*1.8
		"INFORMATIONAL#0@24.16s", // +4*1.8^2
	}, f.sent)
	require.Len(t, f.gaveUp, 1)
	assert.Same(t, r, f.gaveUp[0])
	assert.Equal(t, 3, r.tries)
	assert.Nil(t, f.w.inflight)
	// The give-up came 4*(1+1.8+1.8^2+1.8^3) after the first send.
	assert.Equal(t, 4*time.Second+7200*time.Millisecond+12960*time.Millisecond+23328*time.Millisecond, f.policy.giveUpAfter())
	// An unanswered request does not consume its message ID for good:
	// the ID advances only on an answer.
	require.NoError(t, f.w.start(req(message.INFORMATIONAL)))
	assert.Equal(t, uint32(0), f.w.inflight.msgID)
}

// TestWindowOneInFlight: window size 1 — a second request waits until
// the first is answered, then goes with the next message ID; a response
// is matched by message ID and exchange type.
func TestWindowOneInFlight(t *testing.T) {
	f := newFakeWindow()
	a, b := req(message.CREATE_CHILD_SA), req(message.INFORMATIONAL)
	require.NoError(t, f.w.start(a))
	require.NoError(t, f.w.start(b))
	assert.Equal(t, []string{"CREATE_CHILD_SA#0@0s"}, f.sent)
	assert.True(t, f.w.busy())
	assert.False(t, f.w.expects(1, message.CREATE_CHILD_SA), "wrong message ID")
	assert.False(t, f.w.expects(0, message.INFORMATIONAL), "wrong exchange")
	assert.True(t, f.w.expects(0, message.CREATE_CHILD_SA))
	assert.Nil(t, f.w.pop(), "nothing leaves the queue while a request is in flight")

	f.clk.Advance(2 * time.Second)
	assert.Same(t, a, f.w.complete())
	assert.Nil(t, f.w.complete(), "nothing in flight any more")
	next := f.w.pop()
	require.Same(t, b, next)
	require.NoError(t, f.w.start(next))
	assert.Equal(t, []string{"CREATE_CHILD_SA#0@0s", "INFORMATIONAL#1@2s"}, f.sent)
	// The answered request's timer is gone: nothing more is sent for it.
	f.clk.Advance(3 * time.Second)
	assert.Len(t, f.sent, 2)
	f.clk.Advance(2 * time.Second) // b's first retransmission, 4s after it went
	assert.Equal(t, "INFORMATIONAL#1@6s", f.sent[2])
	assert.Same(t, b, f.w.complete())
	assert.False(t, f.w.busy())
	f.clk.Advance(time.Hour)
	assert.Len(t, f.sent, 3)
	assert.Empty(t, f.gaveUp)
}

// TestWindowAbandonKeepsID: an IKE_SA_INIT answered with COOKIE or
// INVALID_KE_PAYLOAD goes again with message ID 0.
func TestWindowAbandonKeepsID(t *testing.T) {
	f := newFakeWindow()
	require.NoError(t, f.w.start(req(message.IKE_SA_INIT)))
	f.w.abandon()
	require.NoError(t, f.w.start(req(message.IKE_SA_INIT)))
	f.clk.Advance(time.Second)
	f.w.complete()
	require.NoError(t, f.w.start(req(message.IKE_AUTH)))
	assert.Equal(t, []string{"IKE_SA_INIT#0@0s", "IKE_SA_INIT#0@0s", "IKE_AUTH#1@1s"}, f.sent)
}

// TestWindowPauseResume: a paused window (its SA's link is down) sends
// no retransmission and gives nothing up, however long; resume sends the
// request in flight once, with all its retransmissions ahead of it.
func TestWindowPauseResume(t *testing.T) {
	f := newFakeWindow()
	require.NoError(t, f.w.start(req(message.INFORMATIONAL)))
	f.clk.Advance(5 * time.Second) // one retransmission
	f.w.pause()
	f.clk.Advance(24 * time.Hour)
	assert.Len(t, f.sent, 2)
	assert.Empty(t, f.gaveUp)
	// A request started while paused goes out once, without a timer.
	f2 := newFakeWindow()
	f2.w.pause()
	require.NoError(t, f2.w.start(req(message.INFORMATIONAL)))
	f2.clk.Advance(time.Hour)
	assert.Len(t, f2.sent, 1)

	require.True(t, f.w.resume())
	f.clk.Advance(time.Hour)
	assert.Equal(t, []string{"INFORMATIONAL#0@0s", "INFORMATIONAL#0@4s",
		"INFORMATIONAL#0@24h0m5s", "INFORMATIONAL#0@24h0m9s", "INFORMATIONAL#0@24h0m16.2s", "INFORMATIONAL#0@24h0m29.16s"}, f.sent)
	require.Len(t, f.gaveUp, 1)
	assert.False(t, f.w.resume(), "nothing in flight to resend")
}

// TestWindowPolicyFollowsReload: every wait reads the policy anew.
func TestWindowPolicyFollowsReload(t *testing.T) {
	f := newFakeWindow()
	require.NoError(t, f.w.start(req(message.INFORMATIONAL)))
	f.policy = retransmitPolicy{Timeout: time.Second, Base: 1, Tries: 1}
	f.clk.Advance(4 * time.Second) // the first wait was armed with 4s
	f.clk.Advance(time.Second)     // the second reads 1s, and is the last
	assert.Equal(t, []string{"INFORMATIONAL#0@0s", "INFORMATIONAL#0@4s"}, f.sent)
	assert.Len(t, f.gaveUp, 1)
}

// TestWindowEncodeFailure: a request that cannot be encoded is neither
// sent nor in flight, and the window stays free.
func TestWindowEncodeFailure(t *testing.T) {
	f := newFakeWindow()
	require.Error(t, f.w.start(req(0)))
	assert.Empty(t, f.sent)
	assert.False(t, f.w.busy())
}

// TestWindowClear: clear drops the request in flight (its timer too)
// and the queue.
func TestWindowClear(t *testing.T) {
	f := newFakeWindow()
	require.NoError(t, f.w.start(req(message.INFORMATIONAL)))
	require.NoError(t, f.w.start(req(message.INFORMATIONAL)))
	f.w.clear()
	f.clk.Advance(time.Hour)
	assert.Len(t, f.sent, 1)
	assert.Empty(t, f.gaveUp)
	assert.False(t, f.w.busy())
	assert.Equal(t, 0, f.clk.Pending())
}

// TestWindowPeerRequests: the responder side — the expected message ID
// is processed, the previous one is a retransmission answered from the
// cache, anything else is dropped.
func TestWindowPeerRequests(t *testing.T) {
	var w window
	for _, tc := range []struct {
		id   uint32
		want reqKind
	}{{0, reqNew}, {1, reqOutside}, {^uint32(0), reqOutside}} {
		assert.Equal(t, tc.want, w.classify(tc.id), "fresh window, request %d", tc.id)
	}
	w.answered(0, []byte("answer 0"))
	for _, tc := range []struct {
		id   uint32
		want reqKind
	}{{0, reqRetransmit}, {1, reqNew}, {2, reqOutside}, {5, reqOutside}} {
		assert.Equal(t, tc.want, w.classify(tc.id), "after answering 0, request %d", tc.id)
	}
	assert.Equal(t, "answer 0", string(w.lastResp))
	w.answered(1, []byte("answer 1"))
	assert.Equal(t, reqOutside, w.classify(0), "only the last answer is kept")
	assert.Equal(t, reqRetransmit, w.classify(1))
	assert.Equal(t, "answer 1", string(w.lastResp))
	// A responder SA after IKE_SA_INIT expects 1 and has no answer to
	// replay from the window (IKE_SA_INIT retransmissions are matched
	// by their bytes).
	w2 := window{peerNext: 1}
	assert.Equal(t, reqOutside, w2.classify(0))
	assert.Equal(t, reqNew, w2.classify(1))
}
