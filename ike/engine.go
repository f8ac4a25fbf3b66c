package ike

import (
	"context"
	"crypto/rand"
	"errors"
	"fmt"
	"log/slog"
	"net/netip"
	"sync"
	"sync/atomic"
	"time"

	"github.com/keyplane/keyplane/ike/config"
	"github.com/keyplane/keyplane/ike/message"
	"github.com/keyplane/keyplane/kernelops"
	"github.com/keyplane/keyplane/kernelops/clock"
)

// ErrClosed is returned by calls on a closed engine.
var ErrClosed = errors.New("ike: engine closed")

// Options configure an engine.
type Options struct {
	// Backend is the open dataplane. It needs the SAD, SPD and Sockets
	// facets; EventSource is used when present. The engine does not
	// close it.
	Backend kernelops.Backend
	Config  *config.Config
	Logger  *slog.Logger // nil: slog.Default()
	Clock   clock.Clock  // nil: the real clock
	// Credentials, if not nil, is asked for the pre-shared keys the
	// configuration does not hold (credentials.go); if it implements
	// CertCredentials as well, for certificates and trust anchors too
	// (certcreds.go).
	Credentials Credentials
	// Hooks, if not nil, is told of CHILD SAs coming up and going down
	// (hooks.go).
	Hooks Hooks
	// OnEvent, if not nil, is called with each event the engine
	// publishes (what Subscribe delivers), on the engine's loop, before
	// subscribers get it. It must be quick and must not block or call
	// the engine: it is for counting. A subscriber is a goroutine woken
	// per event; a counter fed here costs no wake-up and loses nothing.
	OnEvent func(Event)
}

// Engine is a running IKEv2 daemon core.
type Engine struct {
	b     kernelops.Backend
	sad   kernelops.SAD
	usage kernelops.UsageReader // nil: listings read the SAD dump
	spd   kernelops.SPD
	socks kernelops.Sockets
	caps  kernelops.Capabilities
	// holes is the hole set open in the dataplane (holes.go).
	holes kernelops.HoleSet
	// idleW drives liveness from idle reports (nil: timed checks);
	// addrSel with change events makes the engine link-aware (nil: not).
	idleW   kernelops.IdleWatcher
	addrSel kernelops.AddrSelector
	clk     clock.Clock
	epoch   time.Time // the clock at New: what stamps count from (stamp.go)
	log     *slog.Logger
	onEvent func(Event) // Options.OnEvent

	ctx    context.Context // cancelled by Close; kernel calls use it
	cancel context.CancelFunc
	wg     sync.WaitGroup

	qmu     sync.Mutex
	loopMu  sync.Mutex // held by the goroutine running the loop's work (loop.go)
	queue   []func()
	spare   []func() // the last drained queue, emptied, for the next (runQueued)
	stopped bool
	// helps: the goroutine running the loop's work runs the crypto jobs
	// queued meanwhile once it lets go (loop.go). Loop-owned.
	helps    bool
	wake     chan struct{}
	stop     chan struct{}
	loopDone chan struct{}
	timers   timers // loop-owned (timers.go)
	// kePre is the KE answer a worker computed for the request being
	// handled (ke_offload.go); loop-owned, set only during that call.
	kePre *kePre
	// keHeld is what came for an IKE SA while its request was on a
	// worker (ke_offload.go); loop-owned, bounded per SA.
	keHeld   map[*ikeSA][]heldMsg
	cfgNames cfgNames // loop-owned (cfgnames.go)
	closeMu  sync.Mutex
	closed   bool

	bus *bus
	// sink receives HA state (hastate.go); nil: none.
	sink StateSink

	// The datagrams read but not yet handled by the loop (intake.go):
	// queued counts those of exchanges under way, queuedInits the new IKE
	// SA requests.
	queued, queuedInits atomic.Int64
	lanes               lanes
	// crypto runs key exchanges and derivations off the loop (workers.go).
	crypto cryptoPool
	// sockList is the open sockets as the loop last left them, for
	// SocketStats to read without waiting for the loop.
	sockList atomic.Pointer[[]*sock]

	// Loop-owned state.
	cfg        *config.Config
	sockets    map[netip.AddrPort]*sock
	sas        map[uint64]*ikeSA    // by our SPI
	byConn     map[string]pairedSAs // sas by connection name (sasindex.go)
	byPeer     map[uint64]pairedSAs // sas by a hash of the peer's identity and ours (sasindex.go)
	reserved   map[uint64]bool      // our SPIs of IKE SAs being rekeyed in
	initIndex  map[initKey]*ikeSA
	reqids     reqidTable      // reqids in use, by key and by number (reqidindex.go)
	ids        saIDs           // the last IKE and CHILD SA IDs given (ids.go)
	creds      Credentials     // nil: keys only from the configuration (credentials.go)
	certCreds  CertCredentials // nil: certificates and CAs only from the configuration (certcreds.go)
	hooks      *hookRunner     // nil: no Hooks (hooks.go)
	policies   policyRefs
	traps      map[string][]kernelops.PolicyID // child name -> trap policies
	trapXfrmis map[string]string               // child name -> xfrm interface its traps hold
	xfrmis     map[string]*xfrmiRef            // xfrm interfaces held (xfrmi.go)
	pools      map[string]*addrPool            // virtual IP pools by name (pools.go)
	adm        admission                       // half-open limits, COOKIEs, pre-authentication log, datagram intake
	reloaded   *ReloadResult                   // what the apply in progress closed (reload.go)
	kernelSub  kernelops.Subscription
	handshakes []time.Duration // IKE_SA_INIT sent -> first child installed, initiator side

	byIn map[saKey]*childSA // watched children by inbound SA (idleKey)
	bySA saIndex            // installed children by each of their SAs (idleKey)
	// chg records changes for listings of what changed (changes.go).
	chg changeLog
	// Test seams, nil in production: nonceHook makes the nonces of
	// CREATE_CHILD_SA exchanges (forRequest: our Ni, else our Nr), so a
	// test decides who wins a rekey collision; rewriteResponse edits our
	// answers before they are encrypted, so a test plays a peer that
	// misbehaves.
	nonceHook       func(forRequest bool) []byte
	rewriteResponse func(req *message.Message, ps []message.Payload) []message.Payload
	// invalidSPI limits INVALID_IKE_SPI answers (invalidspi.go).
	invalidSPI                        tokenBucket
	invalidSPISent, invalidSPIDropped int
	holdUnknown                       bool // HoldUnknownSPIs
	unknownHeld                       int  // requests not answered while holding
	// Link awareness (links.go): the interfaces (nil: off), the IKE SAs
	// waiting to be revived and the token bucket that paces them.
	ifs         map[int]*ifState
	reviveQ     []*ikeSA
	reviveTimer *timer
	reviveStart time.Time
	revived     int
	revive      tokenBucket
	// moveWait: suspended MOBIKE movers that a route change may give a
	// new source address (links.go); routePending coalesces route events.
	moveWait     map[*ikeSA]struct{}
	routePending atomic.Bool
	// recoveryTraps: children trapped by dpd_action or close_action
	// (recovery.go); a reload keeps their traps.
	recoveryTraps map[string]bool
	// keepalivesSent counts NAT keepalives (keepalive.go).
	keepalivesSent int
	// shuttingDown: Shutdown started; nothing is recovered.
	shuttingDown bool
}

// New starts an engine: it opens the IKE sockets of every connection,
// subscribes to dataplane events, installs trap policies and initiates
// the children with start_action = start. o.Config must pass Validate
// (a Config built in Go gets the parser's checks); else New returns its
// errors (config.Errors).
func New(ctx context.Context, o Options) (*Engine, error) {
	if o.Backend == nil || o.Config == nil {
		return nil, errors.New("ike: Options.Backend and Options.Config are required")
	}
	// A Config built in Go gets the parser's checks (a zero
	// HalfOpenTimeout would kill every half-open SA at once).
	certCreds, _ := o.Credentials.(CertCredentials)
	if err := o.Config.ValidateWith(config.ValidateOptions{ExternalPSK: o.Credentials != nil, ExternalCerts: certCreds != nil}); err != nil {
		return nil, fmt.Errorf("ike: invalid configuration: %w", err)
	}
	e := &Engine{
		b: o.Backend, clk: o.Clock, log: o.Logger, creds: o.Credentials, certCreds: certCreds,
		wake: make(chan struct{}, 1), stop: make(chan struct{}), loopDone: make(chan struct{}),
		bus:        newBus(),
		sockets:    map[netip.AddrPort]*sock{},
		sas:        map[uint64]*ikeSA{},
		byConn:     map[string]pairedSAs{},
		byPeer:     map[uint64]pairedSAs{},
		reserved:   map[uint64]bool{},
		initIndex:  map[initKey]*ikeSA{},
		traps:      map[string][]kernelops.PolicyID{},
		trapXfrmis: map[string]string{},
		xfrmis:     map[string]*xfrmiRef{},
		byIn:       map[saKey]*childSA{},
		invalidSPI: tokenBucket{rate: invalidSPIRate, burst: invalidSPIBurst},
	}
	// Reqids come from the dataplane's owned range, so its cleanup finds them.
	var ro kernelops.Options
	if h, ok := o.Backend.(interface{ Options() kernelops.Options }); ok {
		ro = h.Options()
	}
	e.reqids = newReqIDTable(ro.ReqIDMin, ro.ReqIDMax)
	if e.clk == nil {
		e.clk = clock.Real()
	}
	e.epoch = e.clk.Now() // stamps count from it (stamp.go)
	if e.log == nil {
		e.log = slog.Default()
	}
	var err error
	if e.sad, err = kernelops.As[kernelops.SAD](o.Backend); err != nil {
		// A backend that implements the SAD but claims none (XFRM on a
		// kernel without ESP) still runs the engine: each child install
		// then fails with ErrNotSupported and the backend's reason.
		sad, ok := o.Backend.(kernelops.SAD)
		if !ok {
			return nil, err
		}
		e.sad = sad
	}
	if e.spd, err = kernelops.As[kernelops.SPD](o.Backend); err != nil {
		return nil, err
	}
	// Listings read the children's counters in one bulk pass; without
	// the facet, from the SAD dump (status.go).
	e.usage, _ = kernelops.As[kernelops.UsageReader](o.Backend)
	if e.socks, err = kernelops.As[kernelops.Sockets](o.Backend); err != nil {
		return nil, err
	}
	e.caps = o.Backend.Capabilities()
	e.ctx, e.cancel = context.WithCancel(context.Background())
	e.hooks = newHookRunner(o.Hooks, e.log) // Close stops it
	e.onEvent = o.OnEvent
	go e.loop()
	e.startWorkers(0, maxCryptoJobs)

	if src, err := kernelops.As[kernelops.EventSource](o.Backend); err == nil {
		kinds := kernelops.KindAcquire | kernelops.KindExpire | kernelops.KindOverrun
		if e.caps.Has(kernelops.CapMappingEvents) {
			kinds |= kernelops.KindMapping // natmove.go
		}
		if w, err := kernelops.As[kernelops.IdleWatcher](o.Backend); err == nil {
			e.idleW = w
			kinds |= kernelops.KindIdle
		}
		if as, err := kernelops.As[kernelops.AddrSelector](o.Backend); err == nil && e.caps.Has(kernelops.CapChangeEvents) {
			e.addrSel = as
			kinds |= kernelops.KindLink | kernelops.KindAddr | kernelops.KindRoute
		}
		sub, err := src.Subscribe(e.ctx, kernelops.SubscribeOptions{Kinds: kinds})
		if err != nil {
			e.Close()
			return nil, fmt.Errorf("ike: subscribe to dataplane events: %w", err)
		}
		e.kernelSub = sub
		e.wg.Add(1)
		go e.readEvents(sub)
	}
	var startErr error
	if err := e.call(ctx, func() {
		e.loadInterfaces()
		startErr = e.apply(ctx, o.Config)
	}); err != nil {
		e.Close()
		return nil, err
	}
	if startErr != nil {
		e.Close()
		return nil, startErr
	}
	return e, nil
}

// apply makes cfg the running configuration: sockets for every listen
// address, traps for trap children, initiation of start children.
// Connections that disappeared lose their SAs and traps. Runs on the loop.
func (e *Engine) apply(ctx context.Context, cfg *config.Config) error {
	if err := e.checkFacets(cfg); err != nil {
		return err
	}
	old := e.cfg
	e.cfg = cfg
	if err := e.openSockets(ctx, cfg); err != nil {
		e.cfg = old
		return err
	}
	if err := e.setHoles(ctx, cfg); err != nil { // holes.go
		e.cfg = old
		return err
	}
	e.reconfigured(old, cfg)
	e.names() // cfgnames.go: built with the configuration, not by the first lookup
	e.applyPools(cfg)
	if old != nil {
		for _, oc := range old.Connections {
			nc := cfg.Connection(oc.Name)
			for _, och := range oc.Children {
				var nch *config.Child
				if nc != nil {
					_, nch = cfg.Child(och.Name)
				}
				if nch == nil || (nch.StartAction != config.StartTrap && !e.recoveryTraps[och.Name]) || !sameTrap(oc, och, nc, nch) {
					e.removeTrap(och.Name)
					delete(e.recoveryTraps, och.Name)
				}
			}
			if nc == nil {
				for _, sa := range e.sasOf(oc.Name) {
					sa.startDelete("connection removed from the configuration")
				}
				continue
			}
			for _, sa := range e.sasOf(oc.Name) {
				old := sa.conn
				e.setConn(sa, nc) // new settings apply from now on (our identity may change: sasindex.go)
				if old.DPDDelay != nc.DPDDelay {
					sa.livenessReconfigured()
				}
				if lifetimesChanged(old, nc) && sa.state == ikeEstablished {
					sa.rekeyTimer.Stop()
					sa.rekeyTimer = nil
					sa.rec.reauthAt = 0
					sa.armIKERekey()
				}
			}
		}
	}
	if old != nil && old.Daemon.KeepAlive != cfg.Daemon.KeepAlive {
		e.keepaliveReconfigured()
	}
	for _, c := range cfg.Connections {
		for _, ch := range c.Children {
			switch ch.StartAction {
			case config.StartTrap:
				if _, ok := e.traps[ch.Name]; !ok {
					if err := e.installTrap(c, ch); err != nil {
						e.log.Error("cannot install trap policies", "child", ch.Name, "err", err)
					}
				}
			case config.StartStart:
				if old == nil || old.Connection(c.Name) == nil {
					e.initiate(c, ch, nil, nil)
				}
			}
		}
	}
	return nil
}

func sameTrap(oc *config.Connection, och *config.Child, nc *config.Connection, nch *config.Child) bool {
	return oc.LocalAddr == nc.LocalAddr && oc.RemoteAddr == nc.RemoteAddr && och.Mode == nch.Mode && och.ReqID == nch.ReqID &&
		och.IfIDOut == nch.IfIDOut && och.MarkOut == nch.MarkOut && och.XfrmInterface == nch.XfrmInterface &&
		fmt.Sprint(och.LocalTS, och.RemoteTS) == fmt.Sprint(nch.LocalTS, nch.RemoteTS)
}

// Reload replaces the configuration (see apply, and Reconfigure, which
// also tells which IKE SAs it closed).
func (e *Engine) Reload(ctx context.Context, cfg *config.Config) error {
	_, err := e.Reconfigure(ctx, cfg)
	return err
}

func (e *Engine) sasOf(conn string) []*ikeSA {
	m := e.byConn[conn]
	if m.len() == 0 {
		return nil
	}
	out := make([]*ikeSA, 0, m.len())
	for sa := range m.all {
		out = append(out, sa)
	}
	return out
}

// Shutdown deletes every IKE SA with the peer told (waiting for the
// answers until ctx ends), then closes the engine.
func (e *Engine) Shutdown(ctx context.Context) error {
	_ = e.call(ctx, func() {
		e.shuttingDown = true // no recovery from here on (recovery.go)
		for _, sa := range e.sas {
			sa.startDelete("shutdown")
		}
	})
	for {
		n := -1
		if err := e.call(ctx, func() { n = len(e.sas) }); err != nil || n == 0 {
			break
		}
		select {
		case <-ctx.Done():
		case <-time.After(20 * time.Millisecond):
			continue
		}
		break
	}
	return e.Close()
}

// Close removes everything the engine installed in the dataplane (without
// telling peers: use Shutdown for that), closes its sockets and stops its
// goroutines. The backend stays open.
func (e *Engine) Close() error {
	e.closeMu.Lock()
	if e.closed {
		e.closeMu.Unlock()
		return nil
	}
	e.closed = true
	e.closeMu.Unlock()
	_ = e.call(context.Background(), func() {
		e.crypto.closing.Store(true) // no result of a job makes an SA now
		for _, sa := range e.sas {
			sa.destroy("engine closed")
		}
		for name := range e.traps {
			e.removeTrap(name)
		}
		e.closeHoles()
		e.closeXfrmis()
		e.reviveTimer.Stop()
		e.reviveQ = nil
	})
	e.qmu.Lock()
	e.stopped = true
	e.qmu.Unlock()
	close(e.stop)
	<-e.loopDone
	e.stopWorkers()
	e.cancel()
	for _, s := range e.sockets {
		s.conn.Close()
	}
	if e.kernelSub != nil {
		e.kernelSub.Close()
	}
	e.wg.Wait()
	e.hooks.close()
	e.bus.close()
	return nil
}

// newNonce returns a fresh nonce for a CREATE_CHILD_SA exchange: 32
// random octets (RFC 7296 §2.10).
func (e *Engine) newNonce(forRequest bool) []byte {
	if e.nonceHook != nil {
		return e.nonceHook(forRequest)
	}
	n := make([]byte, 32)
	rand.Read(n)
	return n
}
