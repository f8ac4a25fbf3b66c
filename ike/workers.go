package ike

import (
	"maps"
	"net/netip"
	"runtime"
	"sync"
	"sync/atomic"
)

// The crypto workers: the costly, pure parts of IKE_SA_INIT (the key
// exchange and the key derivation that follows it, both roles) run on GOMAXPROCS
// goroutines instead of the engine's loop, so the loop keeps serving
// other exchanges while they compute. The loop hands a job a snapshot of
// what it needs and gets the result back as a function posted to it;
// that function checks that what it handed off is still current (the SA
// is the same and in the same state, the configuration was not
// reloaded, the engine is not closing) and drops the result otherwise.
// Jobs wait in one bounded queue: when it is full a responder's request
// is dropped and counted (Busy in AdmissionStats), as a full socket
// buffer drops it, and the peer retransmits; an initiator computes its
// keys on the loop instead (the response will not come again).
//
// Who runs a job: a socket reader or a worker that ran the loop's work
// (runHere) runs the job queued meanwhile once it has let go of the loop
// (help), and a worker is woken only when more than that one job waits
// or that goroutine will not help (the loop's own goroutine, or a reader
// whose socket has more to read). Waking a worker for every job made the
// runtime wake an idle thread for many of them (see loop.go), while at a
// handshake rate one goroutine keeps up with, the goroutine at hand is
// free to compute. Under load the jobs queue up and the workers take
// them in parallel, as many as GOMAXPROCS.

// maxCryptoJobs bounds the queue: as many as new IKE SA requests the
// intake holds (maxQueuedInits), so the loop moving requests to the
// workers never drops more than the intake would have kept.
const maxCryptoJobs = maxQueuedInits

// cryptoPool is the workers and what the loop keeps of their jobs.
type cryptoPool struct {
	qmu sync.Mutex
	// jobs, FIFO, at most depth; a job's argument says whether the
	// goroutine running it goes on with the queue after it (runHere's
	// helps).
	jobs  []func(goesOn bool) // jobs[head:] are queued
	head  int
	depth int
	// sig wakes a worker (buffered, one per worker); closed by
	// stopWorkers, after the loop ended.
	sig chan struct{}
	wg  sync.WaitGroup
	// closing: Close began; workers skip what is queued and results
	// are dropped.
	closing atomic.Bool
	busy    atomic.Int64 // responders' IKE_SA_INIT requests dropped: the queue was full
	// ranByWorker and ranByHelper count the jobs run by the workers and
	// by the goroutines that queued them (help), for tests.
	ranByWorker, ranByHelper atomic.Int64
	// inflight counts jobs queued or running whose result has not yet
	// been applied on the loop: an engine with none and an idle loop has
	// nothing under way (the tests' settle waits for both).
	inflight atomic.Int64
	// hold, a test seam (nil in production), runs on the worker before
	// each job: a test holds the workers to see what the loop does
	// meanwhile.
	hold atomic.Pointer[func()]
	// Loop-owned: responder IKE_SA_INIT requests being computed, by
	// (SPIi, source), so a retransmission does not start another.
	inits map[initKey]*pendingInit
	// pending counts them as halfOpens counts half-open SAs: the
	// half-open limits apply to both (admitInit).
	pending halfOpens
	// inflightAgain counts requests dropped as copies of one in inits.
	inflightAgain int
	// authAgain counts requests dropped while their IKE SA's IKE_AUTH
	// request is computed; authOnLoop, IKE_AUTH requests computed on the
	// loop as the queue was full (auth_offload.go).
	authAgain, authOnLoop int
	// keAgain counts requests dropped while another request of their IKE
	// SA is on a worker (ke_offload.go); keOnLoop, requests decrypted and
	// answered on the loop for want of a worker; keUsed and keRedone, the
	// KE answers a handler took from a worker or computed itself.
	keAgain, keOnLoop, keUsed, keRedone int
	// authUsed and authRedone count the values a worker computed for
	// IKE_AUTH (peer's AUTH verdict, ours, the child's keys) that the
	// loop took, and those it computed again itself.
	authUsed, authRedone int
}

// startWorkers starts n workers (n < 1: GOMAXPROCS) with a queue of
// depth jobs. Called once by New before anything posts jobs.
func (e *Engine) startWorkers(n, depth int) {
	if n < 1 {
		n = runtime.GOMAXPROCS(0)
	}
	p := &e.crypto
	p.qmu.Lock()
	p.jobs, p.head, p.depth = nil, 0, depth
	p.qmu.Unlock()
	p.sig = make(chan struct{}, n)
	p.inits = map[initKey]*pendingInit{}
	for range n {
		p.wg.Add(1)
		go e.worker()
	}
}

func (e *Engine) worker() {
	p := &e.crypto
	defer p.wg.Done()
	for range p.sig {
		e.help(true)
	}
}

// help runs queued jobs: a worker until none is left, a socket reader
// one, the one offload left it (the rest woke workers), so that the
// reader gets back to its socket. (The loop's own goroutine never helps:
// a job would keep timers and control calls waiting.) A reader leaves
// the jobs to the workers while a test holds them (hold), so that it is
// not held too.
func (e *Engine) help(worker bool) {
	p := &e.crypto
	if !worker && p.hold.Load() != nil {
		return
	}
	for n := 0; worker || n < 1; n++ {
		job := p.pop()
		if job == nil {
			return
		}
		if h := p.hold.Load(); h != nil {
			(*h)()
		}
		if !p.closing.Load() {
			job(worker)
			if worker {
				p.ranByWorker.Add(1)
			} else {
				p.ranByHelper.Add(1)
			}
		}
	}
}

// pop takes the first queued job (nil: none).
func (p *cryptoPool) pop() func(bool) {
	p.qmu.Lock()
	defer p.qmu.Unlock()
	if p.head == len(p.jobs) {
		return nil
	}
	job := p.jobs[p.head]
	p.jobs[p.head] = nil
	p.head++
	if p.head == len(p.jobs) {
		// Empty: the next job goes at the start of the same array.
		// (Slicing the front off made append allocate a new one about
		// once per job.)
		p.jobs, p.head = p.jobs[:0], 0
	}
	return job
}

// put queues job, counted in flight, and returns how many jobs wait
// with it; false, and nothing queued, when depth are waiting.
func (p *cryptoPool) put(job func(goesOn bool)) (waiting int, ok bool) {
	p.qmu.Lock()
	defer p.qmu.Unlock()
	if p.queued() >= p.depth {
		return 0, false
	}
	p.inflight.Add(1)
	if p.head > 0 && len(p.jobs) == cap(p.jobs) {
		// Full at the end but not at the start: move the queued jobs
		// down rather than grow the array.
		n := copy(p.jobs, p.jobs[p.head:])
		clear(p.jobs[n:])
		p.jobs, p.head = p.jobs[:n], 0
	}
	p.jobs = append(p.jobs, job)
	return p.queued(), true
}

// queued is how many jobs wait. The caller holds qmu.
func (p *cryptoPool) queued() int { return len(p.jobs) - p.head }

// stopWorkers ends the workers and waits for them. Called by Close once
// the loop has ended (so nothing submits any more); what they post
// after that is dropped by post.
func (e *Engine) stopWorkers() {
	p := &e.crypto
	p.closing.Store(true)
	close(p.sig)
	p.wg.Wait()
	p.qmu.Lock()
	p.jobs, p.head = nil, 0 // what no one ran: the loop has ended, their results would be dropped
	p.qmu.Unlock()
}

// offload runs work off the loop (on a worker, or on the goroutine
// running the loop once it lets go) and then done with its result on the
// loop, unless the engine closes first. It reports false when the queue
// is full: then neither runs. Runs on the loop.
func offload[T any](e *Engine, work func() T, done func(T)) bool {
	p := &e.crypto
	job := func(goesOn bool) {
		r := work()
		e.runHere(func() {
			defer p.inflight.Add(-1)
			if !p.closing.Load() {
				done(r)
			}
		}, goesOn)
	}
	waiting, ok := p.put(job)
	if !ok {
		return false
	}
	if waiting > 1 || !e.helps || p.hold.Load() != nil {
		select {
		case p.sig <- struct{}{}:
		default: // every worker has a wake-up pending
		}
	}
	return true
}

// cryptoIndexErr reports where the books of pending requests disagree
// ("" when they agree), for tests (indexErr).
func (e *Engine) cryptoIndexErr() string {
	p := &e.crypto
	if s := e.authIndexErr(); s != "" {
		return s
	}
	if p.pending.total != len(p.inits) {
		return "the pending IKE_SA_INIT count differs from the pending requests"
	}
	from := map[netip.Addr]int{}
	for k, pi := range p.inits {
		if !e.reserved[pi.spir] {
			return "a pending IKE_SA_INIT request's SPI is not reserved"
		}
		if e.initIndex[k] != nil {
			return "a pending IKE_SA_INIT request also has a half-open SA"
		}
		from[pi.bucket]++
	}
	if !maps.Equal(from, p.pending.from) {
		return "the pending IKE_SA_INIT counts per source differ from the pending requests"
	}
	return ""
}
