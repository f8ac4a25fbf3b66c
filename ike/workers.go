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

// maxCryptoJobs bounds the queue: as many as new IKE SA requests the
// intake holds (maxQueuedInits), so the loop moving requests to the
// workers never drops more than the intake would have kept.
const maxCryptoJobs = maxQueuedInits

// cryptoPool is the workers and what the loop keeps of their jobs.
type cryptoPool struct {
	jobs chan func() // closed by stopWorkers, after the loop ended
	wg   sync.WaitGroup
	// closing: Close began; workers skip what is queued and results
	// are dropped.
	closing atomic.Bool
	busy    atomic.Int64 // responders' IKE_SA_INIT requests dropped: the queue was full
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
	p.jobs = make(chan func(), depth)
	p.inits = map[initKey]*pendingInit{}
	for range n {
		p.wg.Add(1)
		go e.worker()
	}
}

func (e *Engine) worker() {
	p := &e.crypto
	defer p.wg.Done()
	for job := range p.jobs {
		if h := p.hold.Load(); h != nil {
			(*h)()
		}
		if !p.closing.Load() {
			job()
		}
	}
}

// stopWorkers ends the workers and waits for them. Called by Close once
// the loop has ended (so nothing submits any more); what they post
// after that is dropped by post.
func (e *Engine) stopWorkers() {
	p := &e.crypto
	p.closing.Store(true)
	close(p.jobs)
	p.wg.Wait()
}

// offload runs work on a worker and then done with its result on the
// loop, unless the engine closes first. It reports false when the queue
// is full: then neither runs. Runs on the loop.
func offload[T any](e *Engine, work func() T, done func(T)) bool {
	p := &e.crypto
	job := func() {
		r := work()
		e.post(func() {
			defer p.inflight.Add(-1)
			if !p.closing.Load() {
				done(r)
			}
		})
	}
	p.inflight.Add(1)
	select {
	case p.jobs <- job:
		return true
	default:
		p.inflight.Add(-1)
		return false
	}
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
