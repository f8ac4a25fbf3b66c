package ike

import (
	"sync/atomic"
	"testing"
	"time"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"
)

// holdWorkersFrom makes e's workers wait before their n-th job and every
// later one until release; entered counts all jobs that reached the hold.
func holdWorkersFrom(t *testing.T, e *Engine, n int64) (entered *atomic.Int64, release func()) {
	gate := make(chan struct{})
	entered = &atomic.Int64{}
	h := func() {
		if entered.Add(1) >= n {
			<-gate
		}
	}
	e.crypto.hold.Store(&h)
	var done atomic.Bool
	release = func() {
		if done.CompareAndSwap(false, true) {
			close(gate)
		}
	}
	t.Cleanup(release)
	return entered, release
}

func authCounts(t *testing.T, e *Engine) (again, onLoop int) {
	require.NoError(t, e.call(t.Context(), func() { again, onLoop = e.crypto.authAgain, e.crypto.authOnLoop }))
	return again, onLoop
}

// authUse: the values a worker computed for IKE_AUTH that the loop
// took (used) and those it computed itself (redone).
func authUse(t *testing.T, e *Engine) (used, redone int) {
	require.NoError(t, e.call(t.Context(), func() { used, redone = e.crypto.authUsed, e.crypto.authRedone }))
	return used, redone
}

// authHeld starts a handshake a → b and holds b's IKE_AUTH request on
// b's worker (b's second job; the first is its IKE_SA_INIT). It returns
// the release of b's workers and the initiate's result.
func authHeld(t *testing.T, sa, sb side) (a, b *peer, entered *atomic.Int64, release func(), initiated chan error) {
	a = newPeer(t, "a", sa.config(t, "a"))
	b = newPeer(t, "b", sb.config(t, "b"))
	entered, release = holdWorkersFrom(t, b.e, 2)
	initiated = make(chan error, 1)
	go func() { initiated <- a.e.Initiate(ctxT(t, 10*time.Second), "a-net") }()
	waitFor(t, "b's IKE_AUTH on a worker", 5*time.Second, func() bool { return entered.Load() == 2 })
	return a, b, entered, release, initiated
}

func result(t *testing.T, c chan error) error {
	t.Helper()
	select {
	case err := <-c:
		return err
	case <-time.After(15 * time.Second):
		t.Fatal("Initiate did not return")
		return nil
	}
}

// TestAuthRetransmittedWhileComputed: copies of an IKE_AUTH request sent
// while it is on a worker start nothing (one job, the SA stays half-open
// with no child); once the worker is done the one answer brings the
// tunnel up.
func TestAuthRetransmittedWhileComputed(t *testing.T) {
	noLeaks(t)
	sa, sb := pairSides(t)
	a, b, entered, release, initiated := authHeld(t, sa, sb)
	// a retransmits after 200 ms (helpers_test.go's retransmit_timeout).
	waitFor(t, "a copy of the request dropped", 5*time.Second, func() bool { again, _ := authCounts(t, b.e); return again >= 1 })
	ss := b.sas(t)
	require.Len(t, ss, 1)
	assert.Equal(t, IKEHalfOpen, ss[0].State, "b's SA while its IKE_AUTH is computed")
	assert.Empty(t, ss[0].Children)
	s, _ := b.counts(t)
	assert.Zero(t, s, "b's dataplane SAs while its IKE_AUTH is computed")

	release()
	require.NoError(t, result(t, initiated))
	assert.EqualValues(t, 2, entered.Load(), "b's jobs: IKE_SA_INIT and one IKE_AUTH")
	for _, p := range []*peer{a, b} {
		ss := p.sas(t)
		require.Len(t, ss, 1, p.name)
		assert.Equal(t, IKEEstablished, ss[0].State, p.name)
		assert.Len(t, ss[0].Children, 1, p.name)
		s, _ := p.counts(t)
		assert.Equal(t, 2, s, "%s's dataplane SAs", p.name)
	}
	_, onLoop := authCounts(t, b.e)
	assert.Zero(t, onLoop, "computed on the loop")
	used, redone := authUse(t, b.e)
	assert.Equal(t, [2]int{3, 0}, [2]int{used, redone}, "the worker's AUTH verdict, our AUTH and the child's keys taken, none computed again")
	keysCrosswise(t, a, b)
}

// TestAuthQueueFull: with b's one worker busy and its queue full when the
// IKE_AUTH request comes, b computes it on the loop (counted) and the
// tunnel comes up while the worker is still held.
func TestAuthQueueFull(t *testing.T) {
	noLeaks(t)
	sa, sb := pairSides(t)
	a := newPeer(t, "a", sa.config(t, "a"))
	b := newPeer(t, "b", sb.config(t, "b"))
	restartWorkers(t, b.e, 1, 1)
	aEntered, aRelease := holdWorkers(t, a.e) // a's keys after IKE_SA_INIT: IKE_AUTH waits
	initiated := make(chan error, 1)
	go func() { initiated <- a.e.Initiate(ctxT(t, 10*time.Second), "a-net") }()
	waitFor(t, "a's keys on a worker", 5*time.Second, func() bool { return aEntered.Load() == 1 })
	waitFor(t, "b's half-open SA", 5*time.Second, func() bool { return len(b.sas(t)) == 1 })

	gate := make(chan struct{})
	t.Cleanup(func() { close(gate) })
	var running atomic.Bool
	block := func() int { running.Store(true); <-gate; return 0 }
	submit := func() (ok bool) {
		require.NoError(t, b.e.call(t.Context(), func() { ok = offload(b.e, block, func(int) {}) }))
		return ok
	}
	require.True(t, submit(), "first blocker")
	waitFor(t, "the worker busy", 5*time.Second, running.Load)
	require.True(t, submit(), "second blocker (queued)")
	require.False(t, submit(), "the queue is not full")

	aRelease()
	require.NoError(t, result(t, initiated))
	_, onLoop := authCounts(t, b.e)
	assert.Equal(t, 1, onLoop, "IKE_AUTH requests computed on the loop")
	keysCrosswise(t, a, b)
	ss := b.sas(t)
	require.Len(t, ss, 1)
	assert.Equal(t, IKEEstablished, ss[0].State)
	assert.Len(t, ss[0].Children, 1)
}

// TestCloseWithAuthInFlight: Close while an IKE_AUTH request is on a
// worker waits for the worker; the result is dropped (nothing
// authenticated, no answer: the initiator gives up).
func TestCloseWithAuthInFlight(t *testing.T) {
	noLeaks(t)
	sa, sb := pairSides(t)
	_, b, _, release, initiated := authHeld(t, sa, sb)
	closeWaitsForWorker(t, b.e, release)
	assert.Error(t, result(t, initiated), "Initiate against a closed responder")
	assert.NotContains(t, b.logs.String(), "authenticated")
	s, pols := b.counts(t)
	assert.Zero(t, s+pols, "b's dataplane")
}

// TestTerminateWhileAuthComputed: the half-open SA terminated while its
// IKE_AUTH request is on a worker stays gone: the result is dropped,
// nothing is installed, the initiator gets no answer.
func TestTerminateWhileAuthComputed(t *testing.T) {
	noLeaks(t)
	sa, sb := pairSides(t)
	a, b, _, release, initiated := authHeld(t, sa, sb)
	require.NoError(t, b.e.Terminate(t.Context(), "b"))
	require.Empty(t, b.sas(t), "b's SAs after Terminate")
	release()
	assert.Error(t, result(t, initiated), "Initiate against a terminated half-open SA")
	settle(t, b)
	assert.Empty(t, b.sas(t), "b's SAs after the result came back")
	assert.NotContains(t, b.logs.String(), "authenticated")
	s, pols := b.counts(t)
	assert.Zero(t, s+pols, "b's dataplane")
	a.expectEmpty(t)
}

// TestReloadWhileAuthComputed: a reload while the IKE_AUTH request is on
// a worker drops what it computed; the loop checks the request itself
// and the tunnel comes up without a retransmission.
func TestReloadWhileAuthComputed(t *testing.T) {
	noLeaks(t)
	sa, sb := pairSides(t)
	a, b, _, release, initiated := authHeld(t, sa, sb)
	require.NoError(t, b.e.Reload(t.Context(), sb.config(t, "b")))
	release()
	require.NoError(t, result(t, initiated))
	assert.Contains(t, b.logs.String(), "IKE_AUTH computed under a configuration since replaced")
	used, redone := authUse(t, b.e)
	assert.Equal(t, [2]int{0, 3}, [2]int{used, redone}, "computed values taken after the reload / computed again")
	keysCrosswise(t, a, b)
	for _, p := range []*peer{a, b} {
		ss := p.sas(t)
		require.Len(t, ss, 1, p.name)
		assert.Equal(t, IKEEstablished, ss[0].State, p.name)
		assert.Len(t, ss[0].Children, 1, p.name)
	}
}

// TestAuthResponseWhileComputed: the initiator's end. Copies of the
// IKE_AUTH response that come while it is on a worker (the initiator's
// request was retransmitted and answered again) start nothing; the
// responder's AUTH verdict and the child's keys come from the worker.
func TestAuthResponseWhileComputed(t *testing.T) {
	noLeaks(t)
	sa, sb := pairSides(t)
	a := newPeer(t, "a", sa.config(t, "a"))
	b := newPeer(t, "b", sb.config(t, "b"))
	entered, release := holdWorkersFrom(t, a.e, 2) // a's first job: its IKE_SA_INIT keys
	initiated := make(chan error, 1)
	go func() { initiated <- a.e.Initiate(ctxT(t, 10*time.Second), "a-net") }()
	waitFor(t, "a's IKE_AUTH response on a worker", 5*time.Second, func() bool { return entered.Load() == 2 })
	waitFor(t, "a copy of the response dropped", 5*time.Second, func() bool { again, _ := authCounts(t, a.e); return again >= 1 })
	ss := a.sas(t)
	require.Len(t, ss, 1)
	assert.Equal(t, IKEAuthSent, ss[0].State)
	release()
	require.NoError(t, result(t, initiated))
	assert.EqualValues(t, 2, entered.Load(), "a's jobs")
	used, redone := authUse(t, a.e)
	assert.Equal(t, [2]int{2, 0}, [2]int{used, redone}, "the responder's AUTH verdict and the child's keys from the worker")
	keysCrosswise(t, a, b)
}

// TestInitiatorEndsWhileAuthComputed: an initiator's IKE SA terminated
// while the IKE_AUTH response is on a worker stays gone: nothing is
// installed when the result comes back.
func TestInitiatorEndsWhileAuthComputed(t *testing.T) {
	noLeaks(t)
	sa, sb := pairSides(t)
	a := newPeer(t, "a", sa.config(t, "a"))
	newPeer(t, "b", sb.config(t, "b"))
	entered, release := holdWorkersFrom(t, a.e, 2)
	initiated := make(chan error, 1)
	go func() { initiated <- a.e.Initiate(ctxT(t, 10*time.Second), "a-net") }()
	waitFor(t, "a's IKE_AUTH response on a worker", 5*time.Second, func() bool { return entered.Load() == 2 })
	require.NoError(t, a.e.Terminate(t.Context(), "a"))
	require.Empty(t, a.sas(t))
	release()
	assert.Error(t, result(t, initiated), "Initiate of a terminated IKE SA")
	settle(t, a)
	assert.Empty(t, a.sas(t), "a's SAs after the result came back")
	assert.NotContains(t, a.logs.String(), "IKE SA established")
	s, pols := a.counts(t)
	assert.Zero(t, s+pols, "a's dataplane")
}
