package ike

import (
	"log/slog"
	"sync/atomic"
	"testing"
	"time"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"

	"github.com/keyplane/keyplane/ike/message"
)

// holdWorkers makes e's workers wait before each job until the returned
// release is called; entered counts the jobs that reached the hold.
func holdWorkers(t *testing.T, e *Engine) (entered *atomic.Int64, release func()) {
	gate := make(chan struct{})
	entered = &atomic.Int64{}
	h := func() { entered.Add(1); <-gate }
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

// restartWorkers replaces e's pool by n workers with a queue of depth.
func restartWorkers(t *testing.T, e *Engine, n, depth int) {
	require.NoError(t, e.call(t.Context(), func() {
		e.stopWorkers()
		e.crypto.closing.Store(false)
		e.startWorkers(n, depth)
	}))
}

func pendingInits(t *testing.T, e *Engine) (n, again int) {
	require.NoError(t, e.call(t.Context(), func() { n, again = len(e.crypto.inits), e.crypto.inflightAgain }))
	return n, again
}

// TestInitRetransmittedWhileComputed: an IKE_SA_INIT request sent again
// while its key exchange is on a worker starts no second computation and
// makes no second SA; the request counts against the half-open limits
// meanwhile, and the one answer comes once the worker is done.
func TestInitRetransmittedWhileComputed(t *testing.T) {
	noLeaks(t)
	p, _, sb := responder(t, "cookie_threshold = 0\ncookie_threshold_ip = 0\nblock_threshold = 1\ninit_limit_half_open = 0")
	entered, release := holdWorkers(t, p.e)
	r := newRawInit(t, "127.0.0.1", sb.port)
	req := initRequest(randSPI(), randNonce(), nil)
	r.send(req)
	waitFor(t, "the request on a worker", 5*time.Second, func() bool { return entered.Load() == 1 })
	for i := 1; i <= 2; i++ { // one at a time: a copy of one still queued is dropped as read
		r.send(req)
		waitFor(t, "the copy dropped", 5*time.Second, func() bool { _, again := pendingInits(t, p.e); return again == i })
	}
	// block_threshold = 1: the pending request is counted, so a second
	// request from this source is dropped.
	other := newRawInit(t, "127.0.0.1", sb.port)
	other.send(initRequest(randSPI(), randNonce(), nil))
	waitFor(t, "a second request blocked", 5*time.Second, func() bool {
		s, err := p.e.Admission(t.Context())
		require.NoError(t, err)
		return s.Blocked == 1
	})
	n, _ := pendingInits(t, p.e)
	assert.Equal(t, 1, n, "pending requests")
	s, err := p.e.Admission(t.Context())
	require.NoError(t, err)
	assert.Zero(t, s.HalfOpen, "half-open SAs before the worker is done")
	assert.Nil(t, r.answer(200*time.Millisecond), "answered before the worker was done")

	release()
	a := r.answer(5 * time.Second)
	require.NotNil(t, a, "no answer")
	assert.NotNil(t, a.Find(message.PayloadKE), "answer: %s", a.String())
	assert.Nil(t, r.answer(300*time.Millisecond), "a second answer")
	assert.EqualValues(t, 1, entered.Load(), "jobs run")
	assert.Equal(t, 1, checkHalfOpenBooks(t, p))
	n, _ = pendingInits(t, p.e)
	assert.Zero(t, n, "pending requests after the answer")
	require.NoError(t, p.e.call(t.Context(), func() { assert.Empty(t, p.e.reserved, "SPIs still reserved") }))
}

// TestCryptoQueueFull: with the one worker busy and its queue full, a
// further IKE_SA_INIT request is dropped and counted, not queued; those
// queued are answered once the worker is free.
func TestCryptoQueueFull(t *testing.T) {
	noLeaks(t)
	p, _, sb := responder(t, "cookie_threshold = 0\ncookie_threshold_ip = 0\nblock_threshold = 0\ninit_limit_half_open = 0")
	restartWorkers(t, p.e, 1, 1)
	entered, release := holdWorkers(t, p.e)
	var rs []*rawInit
	for range 3 {
		rs = append(rs, newRawInit(t, "127.0.0.1", sb.port))
	}
	rs[0].send(initRequest(randSPI(), randNonce(), nil))
	waitFor(t, "the first request on the worker", 5*time.Second, func() bool { return entered.Load() == 1 })
	rs[1].send(initRequest(randSPI(), randNonce(), nil))
	waitFor(t, "the second request queued", 5*time.Second, func() bool { n, _ := pendingInits(t, p.e); return n == 2 })
	rs[2].send(initRequest(randSPI(), randNonce(), nil))
	waitFor(t, "the third request dropped", 5*time.Second, func() bool {
		s, err := p.e.Admission(t.Context())
		require.NoError(t, err)
		return s.Busy == 1
	})
	release()
	for i, r := range rs[:2] {
		a := r.answer(5 * time.Second)
		require.NotNil(t, a, "no answer to request %d", i)
		assert.NotNil(t, a.Find(message.PayloadKE), "answer %d: %s", i, a.String())
	}
	assert.Nil(t, rs[2].answer(300*time.Millisecond), "the dropped request was answered")
	assert.Equal(t, 2, checkHalfOpenBooks(t, p))
}

// TestCloseWithCryptoInFlight: Close while a key exchange is on a
// worker ends the workers; the result is dropped (no SA, no answer).
func TestCloseWithCryptoInFlight(t *testing.T) {
	noLeaks(t)
	p, _, sb := responder(t, "cookie_threshold = 0\ncookie_threshold_ip = 0\nblock_threshold = 0\ninit_limit_half_open = 0")
	entered, release := holdWorkers(t, p.e)
	r := newRawInit(t, "127.0.0.1", sb.port)
	r.send(initRequest(randSPI(), randNonce(), nil))
	waitFor(t, "the request on a worker", 5*time.Second, func() bool { return entered.Load() == 1 })
	closeWaitsForWorker(t, p.e, release)
	assert.Nil(t, r.answer(300*time.Millisecond), "answered after Close")
	assert.NotContains(t, p.logs.String(), "IKE_SA_INIT answered")
}

// TestInitiatorEndsWhileKeysComputed: an initiator's IKE SA terminated
// while its keys are on a worker is gone for good: the result is
// dropped (no IKE_AUTH is sent, nothing is installed).
func TestInitiatorEndsWhileKeysComputed(t *testing.T) {
	noLeaks(t)
	sa, sb := pairSides(t)
	a := newPeer(t, "a", sa.config(t, "a"))
	newPeer(t, "b", sb.config(t, "b")) // the responder
	entered, release := holdWorkers(t, a.e)
	initiated := make(chan error, 1)
	go func() { initiated <- a.e.Initiate(t.Context(), "a-net") }()
	waitFor(t, "the initiator's keys on a worker", 10*time.Second, func() bool { return entered.Load() == 1 })
	require.NoError(t, a.e.Terminate(t.Context(), "a"))
	require.Empty(t, a.sas(t), "initiator's SAs after Terminate")
	release()
	select {
	case err := <-initiated:
		assert.Error(t, err, "Initiate of a terminated IKE SA")
	case <-time.After(10 * time.Second):
		t.Fatal("Initiate did not return")
	}
	time.Sleep(200 * time.Millisecond) // the dropped result has run by now
	assert.Empty(t, a.sas(t), "initiator's SAs after the result came back")
	assert.NotContains(t, a.logs.String(), "IKE_SA_INIT done")
	s, pols := a.counts(t)
	assert.Zero(t, s+pols, "initiator's dataplane")
}

// closeWaitsForWorker checks that Close does not return while a worker
// is held inside a job, and does once release lets it go.
func closeWaitsForWorker(t *testing.T, e *Engine, release func()) {
	t.Helper()
	closed := make(chan struct{})
	go func() { e.Close(); close(closed) }()
	select {
	case <-closed:
		t.Fatal("Close returned while a worker was still inside a job")
	case <-time.After(100 * time.Millisecond):
	}
	release()
	select {
	case <-closed:
	case <-time.After(5 * time.Second):
		t.Fatal("Close did not return once the worker was free")
	}
}

// TestWhoRunsJobs: a lone handshake's crypto jobs run on the goroutine
// that read the request (no worker is woken for them); a burst of
// initiations, whose requests wait in the socket, reaches the workers.
func TestWhoRunsJobs(t *testing.T) {
	noLeaks(t)
	sa, sb := pairSides(t)
	a := newPeer(t, "a", sa.config(t, "a"))
	b := newPeer(t, "b", sb.config(t, "b"))
	establish(t, a, b, "a-net")
	helper, worker := b.e.crypto.ranByHelper.Load(), b.e.crypto.ranByWorker.Load()
	assert.EqualValues(t, 2, helper+worker, "the responder's jobs: IKE_SA_INIT's key exchange, IKE_AUTH")
	assert.Positive(t, helper, "jobs the reader ran itself (a read that waited for its datagram)")

	const n = 64
	ca, cb := tunnelConfigs(t, n)
	a2 := newPeer(t, "a2", ca, withLogLevel(slog.LevelWarn))
	b2 := newPeer(t, "b2", cb, withLogLevel(slog.LevelWarn))
	require.NoError(t, bringUp(ctxT(t, 30*time.Second), a2.e, n, n))
	helper, worker = b2.e.crypto.ranByHelper.Load(), b2.e.crypto.ranByWorker.Load()
	assert.EqualValues(t, 2*n, helper+worker)
	assert.Positive(t, worker, "jobs the workers ran in the burst")
	t.Logf("burst of %d: %d jobs run by the reader, %d by the workers", n, helper, worker)
}

// The crypto queue is FIFO through its reuse of one array (taking from
// the front, moving what waits down when the end is reached), refuses
// beyond depth, and allocates nothing once its array is big enough.
func TestCryptoQueue(t *testing.T) {
	p := &cryptoPool{depth: 4}
	var ran []int
	job := func(i int) func(bool) { return func(bool) { ran = append(ran, i) } }
	next := 0
	put := func(n int) {
		t.Helper()
		for range n {
			w, ok := p.put(job(next))
			require.True(t, ok, "job %d refused", next)
			require.Equal(t, p.queued(), w)
			next++
		}
	}
	pop := func(n int) {
		t.Helper()
		for range n {
			j := p.pop()
			require.NotNil(t, j)
			j(false)
		}
	}
	put(4)
	_, ok := p.put(job(-1))
	assert.False(t, ok, "a fifth job past depth 4")
	pop(3)
	put(3) // reaches the array's end with one waiting at the front: moved down
	pop(2)
	put(1)
	pop(3)
	assert.Nil(t, p.pop(), "empty")
	assert.Equal(t, []int{0, 1, 2, 3, 4, 5, 6, 7}, ran, "first in, first out")
	assert.Equal(t, int64(8), p.inflight.Load(), "each queued job is counted in flight (its done takes it off)")

	j := job(0)
	allocs := testing.AllocsPerRun(100, func() {
		p.put(j)
		p.put(j)
		p.pop()
		p.put(j)
		p.pop()
		p.pop()
	})
	assert.Zero(t, allocs, "queueing allocated")
}

// runQueued reuses the slice of the queue it drained.
func TestLoopQueueReuse(t *testing.T) {
	e := &Engine{}
	f := func() {}
	allocs := testing.AllocsPerRun(100, func() {
		e.push(f)
		e.push(f)
		e.runQueued()
	})
	assert.Zero(t, allocs, "a loop turn allocated")
}
