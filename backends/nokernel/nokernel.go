// Package nokernel is keyplane's in-memory dataplane: a model that behaves
// like the Linux XFRM kernel without needing one. It keeps an SAD and an
// SPD with XFRM's semantics (the same lookup keys, errors and errnos,
// larval SAs from AllocSPI, policy priorities, acquires from policies
// without SAs), has the kernelops front end keep and enforce its SAs'
// lifetimes and detect idle SAs, simulates interfaces, addresses, links
// and routes with their change events, and moves counters from simulated
// traffic (Backend.Inject). IKE sockets are real UDP sockets, so two daemons on
// one host talk IKE over loopback through it.
//
// It registers as "nokernel" and is the embedded default dataplane of
// `make run` and the model the IKE engine's tests run on. Time comes from
// Options.Clock, so tests drive lifetimes and timeouts with a fake clock.
//
// XFRM behaviour it copies on purpose: SAs are keyed by destination, SPI,
// protocol and mark (the source address is not part of the key); errors
// carry XFRM's errnos (EEXIST, ESRCH for SAs, ENOENT for policies); an
// AllocSPI reservation left unfilled expires after acquire-expires with
// a hard ExpireEvent; an outbound packet with no SA for a template raises
// one acquire per template endpoints/reqid until the SA is added or the
// acquire expires; the older of two equal-priority policies wins.
//
// Where it differs: lifetimes fire on the packet that reaches a limit
// (XFRM: on the next one, which it drops) and a soft expire always comes
// before the hard one; UpdateSA rejects changes XFRM would silently
// ignore (keys, algorithms, mode, reqid) and never re-raises a soft
// expire (XFRM clears "dying" on update); a policy's soft expire is raised
// once (XFRM repeats it). It does no cryptography, carries no real
// packets, has no forwarding path (fwd policies are stored, never
// consulted), and looks policies up linearly — fine for tests, not for
// benchmarks of the lookup itself. The times it reads back (an SA's add,
// first and last use, a policy's add and last use) are wall-clock
// readings without Go's monotonic one, as times read from a kernel are:
// it keeps them in 8 octets each.
//
// Params (Options.Params):
//
//	acquire-expires  how long a pending acquire (and an unfilled AllocSPI
//	                 reservation) lives, like net.core.xfrm_acq_expires;
//	                 default 30s
//	interfaces       simulated interfaces besides lo, up:
//	                 "eth0=192.0.2.1/24+2001:db8::1/64;eth1=198.51.100.7/24"
//	routes           "0.0.0.0/0 via 192.0.2.254 dev eth0; ::/0 dev eth0"
//	offload          what devices can offload: "eth0=crypto+packet;eth1=crypto"
package nokernel

import (
	"context"
	"log/slog"
	"net/netip"
	"sync"
	"syscall"
	"time"

	"github.com/keyplane/keyplane/iana"
	"github.com/keyplane/keyplane/kernelops"
	"github.com/keyplane/keyplane/kernelops/clock"
	"github.com/keyplane/keyplane/kernelops/ikesock"
)

// Name is the backend's registry name.
const Name = "nokernel"

// DefaultAcquireExpires is how long a pending acquire or an unfilled SPI
// reservation lives: XFRM's default net.core.xfrm_acq_expires.
const DefaultAcquireExpires = 30 * time.Second

// MaxReplayWindow is the largest anti-replay window accepted: XFRM's limit
// with the ESN replay attribute (128 words of bitmap).
const MaxReplayWindow = 4096

func init() {
	kernelops.Register(Name, func(ctx context.Context, opts kernelops.Options) (kernelops.Backend, error) {
		return Open(ctx, opts)
	})
}

// Backend is an open model behind the kernelops front end, which checks
// every call; Inject, Net and Clock reach the model itself. It is safe for
// concurrent use.
type Backend struct {
	*kernelops.Handle
	m *model
}

// model is the driver: the SAD, SPD, acquires and simulated network.
type model struct {
	env        *kernelops.Env
	opts       kernelops.Options
	clk        clock.Clock
	log        *slog.Logger
	caps       kernelops.Capabilities
	acqExpires time.Duration
	epoch      time.Time // what stamps count from (epochOf)

	net *Net

	mu       sync.Mutex
	closed   bool
	sad      sad
	spd      spd
	acquires map[acqKey]*acquire
	acqSeq   uint32
	holes    []kernelops.PolicyID

	sockets ikesock.Group // the IKE sockets, closed by Close
}

// Open opens a fresh model with opts (zero fields take their defaults).
func Open(ctx context.Context, opts kernelops.Options) (*Backend, error) {
	var m *model
	h, err := kernelops.NewHandle(ctx, Name, opts, func(ctx context.Context, env *kernelops.Env) (kernelops.Driver, error) {
		var err error
		m, err = open(env)
		return m, err
	})
	if err != nil {
		return nil, err
	}
	return &Backend{Handle: h, m: m}, nil
}

func open(env *kernelops.Env) (*model, error) {
	opts := env.Options
	if err := opts.CheckParams(Name, "acquire-expires", "interfaces", "routes", "offload"); err != nil {
		return nil, err
	}
	b := &model{
		env:        env,
		opts:       opts,
		clk:        opts.Clock,
		log:        env.Log,
		acqExpires: DefaultAcquireExpires,
		epoch:      epochOf(opts.Clock.Now()),
		acquires:   map[acqKey]*acquire{},
	}
	b.sad.init()
	b.caps = capabilities(opts)
	b.net = newNet(b)
	if err := b.applyParams(opts.Params); err != nil {
		return nil, err
	}
	return b, nil
}

// Inject pushes one simulated packet through the model (see Packet).
func (b *Backend) Inject(ctx context.Context, p Packet) (Result, error) { return b.m.Inject(ctx, p) }

// Net returns the simulated network: interfaces, addresses, routes.
func (b *Backend) Net() *Net { return b.m.net }

// Clock returns the clock the model runs on.
func (b *Backend) Clock() clock.Clock { return b.m.clk }

// PendingAcquires reports how many acquires wait for an SA or a timeout.
func (b *Backend) PendingAcquires() int { return b.m.PendingAcquires() }

func (b *model) applyParams(p map[string]string) error {
	if v, ok := p["acquire-expires"]; ok {
		d, err := time.ParseDuration(v)
		if err != nil || d <= 0 {
			return kernelops.Invalid(Name, "open", "", "Params.acquire-expires", "%q: want a positive duration", v)
		}
		b.acqExpires = d
	}
	if v, ok := p["interfaces"]; ok {
		if err := b.net.parseInterfaces(v); err != nil {
			return err
		}
	}
	if v, ok := p["routes"]; ok {
		if err := b.net.parseRoutes(v); err != nil {
			return err
		}
	}
	if v, ok := p["offload"]; ok {
		if err := b.net.parseOffload(v); err != nil {
			return err
		}
	}
	return nil
}

func capabilities(opts kernelops.Options) kernelops.Capabilities {
	var all kernelops.Cap
	for _, c := range kernelops.AllCaps() {
		all |= c
	}
	return kernelops.Capabilities{
		Caps: all,
		Algorithms: kernelops.AlgorithmSet{
			Encryption: []kernelops.EncrID{iana.EncrDES3, iana.EncrNull, iana.EncrAESCBC,
				iana.EncrAESCTR, iana.EncrAESCCM8, iana.EncrAESCCM12, iana.EncrAESCCM16,
				iana.EncrAESGCM8, iana.EncrAESGCM12, iana.EncrAESGCM16,
				iana.EncrNullAuthAESGMAC, iana.EncrChaCha20Poly1305},
			Integrity: []kernelops.IntegID{iana.IntegHMACMD5_96, iana.IntegHMACSHA1_96,
				iana.IntegAESXCBC96, iana.IntegAESCMAC96, iana.IntegHMACSHA256_128,
				iana.IntegHMACSHA384_192, iana.IntegHMACSHA512_256},
		},
		MaxReplayWindow: MaxReplayWindow,
		SPIMin:          opts.SPIMin,
		SPIMax:          opts.SPIMax,
		Notes: map[kernelops.Cap]string{
			kernelops.CapSockets: "real UDP sockets; the model never applies IPsec to real traffic, so no bypass policy is needed; " +
				"on the NAT-T socket ESP and keepalives are consumed and IKE arrives without its non-ESP marker (kernelops/ikesock)",
			kernelops.CapOffload:            "simulated device table (Params offload, Net.SetOffload); nothing is really offloaded",
			kernelops.CapSoftwareLifetimes:  "lifetimes are enforced by the kernelops front end on the backend's clock",
			kernelops.CapCounters:           "counters move with simulated traffic (Backend.Inject), never with real packets",
			kernelops.CapLastUsedAllTraffic: "every simulated packet sets LastUsed",
			kernelops.CapBatch:              "operations apply one after another under the model's lock; nothing is in flight",
			kernelops.CapPolicyLifetime:     "a soft policy expire is raised once (XFRM repeats it every 30s until the hard one)",
			kernelops.CapChangeEvents:       "events for simulated interfaces, addresses and routes (Backend.Net)",
			kernelops.CapTrap:               "an outbound packet (Inject) matching an ipsec or trap policy without an SA raises one acquire per template endpoints until acquire-expires",
		},
	}
}

// Capabilities reports everything: the model implements every facet.
func (b *model) Capabilities() kernelops.Capabilities { return b.caps }

// Close stops every timer and closes the IKE sockets still open. Later
// calls fail with ErrClosed.
func (b *model) Close() error {
	b.mu.Lock()
	if b.closed {
		b.mu.Unlock()
		return nil
	}
	b.closed = true
	b.sad.stopTimers()
	b.spd.stopTimers()
	for k, a := range b.acquires {
		a.timer.Stop()
		delete(b.acquires, k)
	}
	b.mu.Unlock()
	b.sockets.Close()
	return nil
}

var errClosed = &kernelops.Error{Err: kernelops.ErrClosed}

// checkLocked returns ErrClosed after Close. Called with mu held or not;
// closed is only read.
func (b *model) checkLocked() error {
	if b.closed {
		return errClosed
	}
	return nil
}

// errno is the model's answer with XFRM's errno; the front end names
// the backend, operation and object.
func errno(e syscall.Errno, detail string) error {
	return &kernelops.Error{Err: kernelops.ErrnoSentinel(e), Errno: e, Detail: detail}
}

// addrOrAny prints an address, or "any" when unset.
func addrOrAny(a netip.Addr) string {
	if !a.IsValid() {
		return "any"
	}
	return a.String()
}

var (
	_ kernelops.Driver         = (*model)(nil)
	_ kernelops.SAD            = (*model)(nil)
	_ kernelops.SPD            = (*model)(nil)
	_ kernelops.UsageReader    = (*model)(nil)
	_ kernelops.Batcher        = (*model)(nil)
	_ kernelops.Sockets        = (*model)(nil)
	_ kernelops.AddrSelector   = (*model)(nil)
	_ kernelops.InterfaceAddrs = (*model)(nil)
	_ kernelops.XfrmInterfaces = (*model)(nil)
	_ kernelops.Holes          = (*model)(nil)
	_ kernelops.Offloader      = (*model)(nil)
	_ kernelops.Syncer         = (*model)(nil)
	_ kernelops.Migrator       = (*model)(nil)
	_ kernelops.Expirer        = (*model)(nil)
)
