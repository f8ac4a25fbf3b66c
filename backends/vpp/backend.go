//go:build vpp

package vpp

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"os"
	"sync"
	"time"

	"github.com/keyplane/keyplane/kernelops"
	"github.com/keyplane/keyplane/kernelops/clock"
	"go.fd.io/govpp/api"
	"go.fd.io/govpp/binapi/ipsec_types"
)

// driver translates kernelops calls into VPP binary API requests; Open
// puts the kernelops front end in front of it.
type driver struct {
	env   *kernelops.Env
	opts  kernelops.Options
	p     params
	log   *slog.Logger
	clock clock.Clock
	caps  kernelops.Capabilities

	closeOnce sync.Once
	closeCh   chan struct{}
	wg        sync.WaitGroup // reconnect goroutines

	// mu serialises every operation that changes VPP or the owned tables,
	// including its VPP round trips, and the reconciliation after a
	// reconnect; sess is nil while VPP is away.
	mu     sync.Mutex
	sess   *session
	ready  chan struct{} // closed when sess is set
	closed bool

	sas        map[kernelops.SAID]*saRec
	bySadID    map[uint32]*saRec
	issued     map[uint32]bool // sad_ids this process added, for cleanup after a lost reply
	nextSadID  uint32
	seq        uint64
	pols       map[kernelops.PolicyID]*polRec
	holes      []ipsec_types.IpsecSpdEntryV2
	holeSet    kernelops.HoleSet
	ifNames    map[uint32]string
	addrSeen   map[addrKey]bool // baseline of the address poll
	pendingObs []observation    // counters for the front end's lifetimes (flushObs)
	usageAt    time.Time        // time of the last stats read
}

// saRec is an SA keyplane installed: what was asked (with keys, for
// re-installing after a VPP restart) and what VPP gave back.
type saRec struct {
	sa        *kernelops.SA
	sadID     uint32
	statIndex uint32
	inbound   bool
	addTime   time.Time
	seq       uint64 // install order: the newest outbound SA carries a policy
	state     kernelops.SAState

	// Usage, cumulative across re-installs after VPP restarts: base is
	// what earlier installs counted, last the current install's counter.
	base, last         Counter
	firstUse, lastUsed time.Time
}

func (r *saRec) total() Counter {
	return Counter{Packets: r.base.Packets + r.last.Packets, Bytes: r.base.Bytes + r.last.Bytes}
}

// polRec is a policy keyplane installed and the VPP SPD entries it is
// made of right now (a policy maps to zero or more entries: one per
// address family, and inbound one per SA it protects).
type polRec struct {
	p       *kernelops.Policy
	entries []ipsec_types.IpsecSpdEntryV2
	addTime time.Time
}

// MaxReplayWindow is the largest anti-replay window accepted. VPP rounds
// windows up to a power of two, and to at least 64.
const MaxReplayWindow = 1 << 16

// Open connects to VPP and returns the backend. It fails when VPP is not
// reachable or not API-compatible; later losses of the connection are
// repaired in the background.
func Open(ctx context.Context, opts kernelops.Options) (kernelops.Backend, error) {
	return kernelops.NewHandle(ctx, Name, opts, func(ctx context.Context, env *kernelops.Env) (kernelops.Driver, error) {
		return open(ctx, env)
	})
}

func open(ctx context.Context, env *kernelops.Env) (*driver, error) {
	opts := env.Options
	p, err := parseParams(opts)
	if err != nil {
		return nil, err
	}
	b := &driver{
		env:       env,
		opts:      opts,
		p:         p,
		log:       env.Log,
		clock:     opts.Clock,
		closeCh:   make(chan struct{}),
		ready:     make(chan struct{}),
		sas:       map[kernelops.SAID]*saRec{},
		bySadID:   map[uint32]*saRec{},
		issued:    map[uint32]bool{},
		nextSadID: p.saIDMin,
		pols:      map[kernelops.PolicyID]*polRec{},
		ifNames:   map[uint32]string{},
	}
	b.caps = b.capabilities()
	s, err := dialSession(p)
	if err != nil {
		var me *MismatchError
		if errors.As(err, &me) {
			// errors.As finds the *MismatchError with the message list.
			return nil, &kernelops.Error{Backend: Name, Op: "open", Object: p.socket, Err: fmt.Errorf("%w: %w", kernelops.ErrNotSupported, me)}
		}
		return nil, &kernelops.Error{Backend: Name, Op: "open", Object: p.socket, Err: kernelops.ErrNotFound, Detail: err.Error()}
	}
	if err := b.prepare(ctx, s); err != nil {
		s.close()
		return nil, wrap(p.socket, err, nil)
	}
	b.mu.Lock()
	b.sess = s
	close(b.ready)
	b.mu.Unlock()
	b.startSession(s)
	b.pollAddresses() // the baseline isLocal and address events start from
	// Stats and address polls run on real time: they pace I/O, while
	// lifetimes and idle thresholds run on the backend's clock.
	b.loop(p.scanInterval, b.scanUsage)
	if p.addrPoll > 0 {
		b.loop(p.addrPoll, b.pollAddresses)
	}
	if len(p.interfaces) == 0 {
		b.log.Warn("SPD is bound to no interface: policies take effect only once bound (set the interfaces parameter)", "spd", p.spdID)
	}
	return b, nil
}

func (b *driver) Capabilities() kernelops.Capabilities {
	c := b.caps
	c.Notes = make(map[kernelops.Cap]string, len(b.caps.Notes))
	for k, v := range b.caps.Notes {
		c.Notes[k] = v
	}
	c.Algorithms.Encryption = append([]kernelops.EncrID(nil), b.caps.Algorithms.Encryption...)
	c.Algorithms.Integrity = append([]kernelops.IntegID(nil), b.caps.Algorithms.Integrity...)
	return c
}

// Close disconnects from VPP. Like a kernel's, VPP's SAs and policies
// stay installed after keyplane closes.
func (b *driver) Close() error {
	b.closeOnce.Do(func() {
		close(b.closeCh)
		b.mu.Lock()
		b.closed = true
		s := b.sess
		b.sess = nil
		b.mu.Unlock()
		b.wg.Wait()
		if s != nil {
			s.close()
		}
	})
	return nil
}

// loop runs f every d (real time) until Close.
func (b *driver) loop(d time.Duration, f func()) {
	b.wg.Add(1)
	go func() {
		defer b.wg.Done()
		t := time.NewTicker(d)
		defer t.Stop()
		for {
			select {
			case <-b.closeCh:
				return
			case <-t.C:
				f()
			}
		}
	}()
}

// lockSession waits (at most the request timeout, and ctx) for a live
// session and returns it with b.mu held.
func (b *driver) lockSession(ctx context.Context) (*session, error) {
	deadline := time.NewTimer(b.p.timeout)
	defer deadline.Stop()
	for {
		b.mu.Lock()
		if b.closed {
			b.mu.Unlock()
			return nil, kernelops.ErrClosed
		}
		if b.sess != nil && !b.sess.isDead() {
			return b.sess, nil
		}
		ready := b.ready
		b.mu.Unlock()
		select {
		case <-ready:
		case <-ctx.Done():
			return nil, ctx.Err()
		case <-b.closeCh:
			return nil, kernelops.ErrClosed
		case <-deadline.C:
			return nil, errConnLost
		}
	}
}

// lost is called when a request or the keepalive finds the session dead.
func (b *driver) lost(s *session, why error) {
	if !s.markDead() {
		return
	}
	b.mu.Lock()
	if b.sess == s {
		b.sess = nil
		b.ready = make(chan struct{})
	}
	closed := b.closed
	if !closed {
		b.wg.Add(1)
	}
	b.mu.Unlock()
	if closed {
		return
	}
	b.log.Warn("VPP API connection lost; reconnecting", "socket", b.p.socket, "err", why)
	go b.reconnect(s)
}

// reconnect dials VPP with backoff until it answers, puts back what
// keyplane owns, and tells subscribers to re-read state.
func (b *driver) reconnect(old *session) {
	defer b.wg.Done()
	old.close()
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	go func() {
		select {
		case <-b.closeCh:
			cancel()
		case <-ctx.Done():
		}
	}()
	backoff := 50 * time.Millisecond
	for attempt := 1; ; attempt++ {
		select {
		case <-b.closeCh:
			return
		case <-time.After(backoff):
		}
		backoff = min(2*backoff, b.p.reconnectMax)
		s, err := dialSession(b.p)
		if err != nil {
			b.log.Debug("VPP reconnect failed", "attempt", attempt, "err", err)
			continue
		}
		if err := b.prepare(ctx, s); err != nil {
			b.log.Warn("VPP reconnect: preparing the SPD failed", "err", err)
			s.close()
			continue
		}
		b.mu.Lock()
		if b.closed {
			b.mu.Unlock()
			s.close()
			return
		}
		restored, err := b.reconcileLocked(ctx, s)
		if err != nil {
			b.mu.Unlock()
			b.log.Warn("VPP reconnect: re-installing owned state failed; retrying", "err", err)
			s.close()
			continue
		}
		b.sess = s
		close(b.ready)
		b.mu.Unlock()
		b.startSession(s)
		b.log.Info("VPP API connection restored", "attempt", attempt, "reinstalled", restored)
		b.env.Overrun(-1, "vpp reconnect")
		return
	}
}

// startSession runs the session's keepalive and interface-event watcher.
func (b *driver) startSession(s *session) {
	s.wg.Add(1)
	go func() {
		defer s.wg.Done()
		t := time.NewTicker(b.p.keepalive)
		defer t.Stop()
		for {
			select {
			case <-s.dead:
				return
			case <-t.C:
				err := s.ping(s.life)
				if err == nil || s.isDead() || (!isTransport(err) && s.busy()) {
					continue
				}
				b.lost(s, err)
				return
			}
		}
	}()
	b.watchInterfaces(s)
}

// check passes err through; a transport failure (not a VPP retval, not
// a context error) marks the session dead so the reconnect starts at once.
// Callers hold b.mu, which lost takes: it runs in its own goroutine.
func (b *driver) check(s *session, err error) error {
	if isTransport(err) && !s.isDead() {
		go b.lost(s, err)
	}
	return err
}

func isTransport(err error) bool {
	if err == nil {
		return false
	}
	var rv api.VPPApiError
	if errors.As(err, &rv) {
		return false
	}
	if errors.Is(err, context.Canceled) || errors.Is(err, context.DeadlineExceeded) {
		return false // the keepalive decides whether VPP hangs
	}
	return true
}

var pid = uint32(os.Getpid())

var (
	_ kernelops.Driver         = (*driver)(nil)
	_ kernelops.SADriver       = (*driver)(nil)
	_ kernelops.SPD            = (*driver)(nil)
	_ kernelops.UsageReader    = (*driver)(nil)
	_ kernelops.AddrSelector   = (*driver)(nil)
	_ kernelops.InterfaceAddrs = (*driver)(nil)
	_ kernelops.Holes          = (*driver)(nil)
	_ kernelops.Migrator       = (*driver)(nil)
	_ kernelops.Expirer        = (*driver)(nil)
)
