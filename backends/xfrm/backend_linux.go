package xfrm

import (
	"context"
	"fmt"
	"hash/fnv"
	"log/slog"
	"math/rand/v2"
	"net/netip"
	"strconv"
	"sync"
	"sync/atomic"

	"github.com/keyplane/keyplane/kernelops"
	"github.com/vishvananda/netlink"
	"golang.org/x/sys/unix"
)

// Name is the registry name of this backend.
const Name = "xfrm"

func init() {
	kernelops.Register(Name, func(ctx context.Context, opts kernelops.Options) (kernelops.Backend, error) {
		return Open(ctx, opts)
	})
}

// Parameter names (Options.Params).
const (
	ParamNetns       = "netns"
	ParamEventRcvbuf = "event-rcvbuf"
	ParamCleanup     = "cleanup"
)

// defaultEventRcvbuf is the receive buffer of the event sockets: room for
// tens of thousands of notifications, so a burst (a flush, a link flap)
// does not overrun the socket before the reader drains it.
const defaultEventRcvbuf = 8 << 20

// Backend is an open XFRM dataplane behind the kernelops front end, which
// checks every call; Capabilities says which facets the running kernel
// supports.
type Backend struct {
	*kernelops.Handle
	d *driver
}

// driver translates kernelops calls into XFRM netlink.
type driver struct {
	env    *kernelops.Env
	opts   kernelops.Options
	log    *slog.Logger
	ns     *nsRef
	pool   *sockPool
	rt     *netlink.Handle
	k      kernelInfo
	caps   kernelops.Capabilities
	rcvbuf int

	mu     sync.Mutex
	larval map[larvalKey]struct{}          // AllocSPI reservations not yet filled
	traps  map[kernelops.PolicyID]struct{} // trap policies installed by this process
	holes  map[kernelops.PolicyID]struct{} // hole policies currently open
	ifname map[int]string                  // ifindex -> name, for events

	polTag    uint32
	polSerial atomic.Uint32

	evMu sync.Mutex
	ev   *eventReaders

	closed atomic.Bool
}

type larvalKey struct {
	dst   netip.Addr
	spi   uint32
	proto kernelops.Proto
}

var (
	_ kernelops.Driver         = (*driver)(nil)
	_ kernelops.SAD            = (*driver)(nil)
	_ kernelops.SPD            = (*driver)(nil)
	_ kernelops.UsageReader    = (*driver)(nil)
	_ kernelops.Batcher        = (*driver)(nil)
	_ kernelops.EventStarter   = (*driver)(nil)
	_ kernelops.Sockets        = (*driver)(nil)
	_ kernelops.AddrSelector   = (*driver)(nil)
	_ kernelops.InterfaceAddrs = (*driver)(nil)
	_ kernelops.XfrmInterfaces = (*driver)(nil)
	_ kernelops.Holes          = (*driver)(nil)
	_ kernelops.Offloader      = (*driver)(nil)
	_ kernelops.Syncer         = (*driver)(nil)
	_ kernelops.Migrator       = (*driver)(nil)
)

// Open opens the XFRM dataplane of the namespace named by
// opts.Params["netns"] (the caller's by default).
func Open(ctx context.Context, opts kernelops.Options) (*Backend, error) {
	var d *driver
	h, err := kernelops.NewHandle(ctx, Name, opts, func(ctx context.Context, env *kernelops.Env) (kernelops.Driver, error) {
		var err error
		d, err = open(ctx, env)
		return d, err
	})
	if err != nil {
		return nil, err
	}
	return &Backend{Handle: h, d: d}, nil
}

func open(ctx context.Context, env *kernelops.Env) (*driver, error) {
	opts := env.Options
	if err := opts.CheckParams(Name, ParamNetns, ParamEventRcvbuf, ParamCleanup); err != nil {
		return nil, err
	}
	rcvbuf := defaultEventRcvbuf
	if v, ok := opts.Params[ParamEventRcvbuf]; ok {
		n, err := strconv.Atoi(v)
		if err != nil || n <= 0 {
			return nil, kernelops.Invalid(Name, "open", "", "Params."+ParamEventRcvbuf, "want a positive byte count, got %q", v)
		}
		rcvbuf = n
	}
	cleanup := opts.Params[ParamCleanup]
	switch cleanup {
	case "", "none", "owned":
	default:
		return nil, kernelops.Invalid(Name, "open", "", "Params."+ParamCleanup, "want none or owned, got %q", cleanup)
	}
	if opts.SPIMin < 256 || opts.SPIMin > opts.SPIMax {
		return nil, kernelops.Invalid(Name, "open", "", "SPIMin", "SPI range %#x..%#x: want 256 <= min <= max", opts.SPIMin, opts.SPIMax)
	}
	if opts.ReqIDMin == 0 || opts.ReqIDMin > opts.ReqIDMax {
		return nil, kernelops.Invalid(Name, "open", "", "ReqIDMin", "reqid range %#x..%#x: want 0 < min <= max", opts.ReqIDMin, opts.ReqIDMax)
	}
	ns, err := openNS(opts.Params[ParamNetns])
	if err != nil {
		return nil, &kernelops.Error{Backend: Name, Op: "open", Field: "Params." + ParamNetns, Err: kernelops.ErrNotFound, Detail: err.Error()}
	}
	b := &driver{
		env: env, opts: opts, log: env.Log, ns: ns,
		pool:   &sockPool{ns: ns, proto: unix.NETLINK_XFRM},
		rcvbuf: rcvbuf,
		larval: map[larvalKey]struct{}{},
		traps:  map[kernelops.PolicyID]struct{}{},
		holes:  map[kernelops.PolicyID]struct{}{},
		ifname: map[int]string{},
		polTag: policyTag(opts.ReqIDMin, opts.ReqIDMax),
	}
	b.polSerial.Store(rand.Uint32())
	fail := func(err error) (*driver, error) {
		b.Close()
		return nil, err
	}
	// The XFRM socket proves the namespace has XFRM netlink at all.
	s, err := b.pool.get()
	if err != nil {
		return fail(b.kerr(ns.String(), err))
	}
	b.pool.put(s, true)
	h, release, err := ns.handle()
	if err != nil {
		return fail(b.kerr(ns.String(), err))
	}
	b.rt, err = netlink.NewHandleAt(h, unix.NETLINK_ROUTE)
	release()
	if err != nil {
		return fail(b.kerr("rtnetlink", err))
	}
	b.k = probeKernel()
	b.caps = capabilities(b.k, opts)
	if cleanup == "owned" {
		if err := b.FlushPolicies(ctx); err != nil {
			return fail(err)
		}
		if err := b.FlushSAs(ctx); err != nil {
			return fail(err)
		}
	}
	return b, nil
}

// policyTag derives this instance's 10-bit policy index tag from its
// reqid range, so two keyplanes with different ranges tell their pass and
// block policies apart.
func policyTag(min, max uint32) uint32 {
	h := fnv.New32a()
	fmt.Fprintf(h, "%d-%d", min, max)
	return h.Sum32() & 0x3ff
}

// Index layout: 1<<31 | tag<<21 | serial<<3 | dir. The kernel's own
// indexes count up from 8 in steps of 8 and stay far below 1<<31.
const (
	indexMark     = 1 << 31
	indexTagShift = 21
	indexTagMask  = 0x3ff << indexTagShift
	indexSerMask  = 0x3ffff
)

func (b *driver) newIndex(dir kernelops.Direction) uint32 {
	ser := b.polSerial.Add(1) & indexSerMask
	return indexMark | b.polTag<<indexTagShift | ser<<3 | uint32(dirToKernel(dir))
}

func (b *driver) ownsIndex(index uint32) bool {
	return index&indexMark != 0 && (index&indexTagMask)>>indexTagShift == b.polTag
}

// Capabilities implements kernelops.Driver.
func (b *driver) Capabilities() kernelops.Capabilities { return b.caps }

// Kernel describes the running kernel as probed, for reports and the CLI.
func (b *Backend) Kernel() string {
	k := b.d.k
	s := fmt.Sprintf("Linux %s: esp=%v ah=%v ipcomp=%v migrate=%v xfrm-interfaces=%v hz=%d (%s)",
		k.Release, k.ESP, k.AH, k.IPComp, k.Migrate, k.XfrmIfaces, k.HZ, k.HZSource)
	if !k.Probed {
		s += "; not probed: " + k.ProbeErr
	}
	return s
}

// Close releases the sockets and ends every subscription. It removes
// nothing from the kernel.
func (b *driver) Close() error {
	if b.closed.Swap(true) {
		return nil
	}
	b.evMu.Lock()
	ev := b.ev
	b.ev = nil
	b.evMu.Unlock()
	if ev != nil {
		ev.close()
	}
	b.pool.close()
	if b.rt != nil {
		b.rt.Close()
	}
	b.ns.close()
	return nil
}

func (b *driver) checkOpen() error {
	if b.closed.Load() {
		return &kernelops.Error{Err: kernelops.ErrClosed}
	}
	return nil
}

// CleanupOwned removes keyplane's own SAs and policies and leaves every
// other one alone: what a restarted daemon runs before it installs
// anything (Params cleanup=owned does it at Open).
func (b *Backend) CleanupOwned(ctx context.Context) error {
	if err := b.FlushPolicies(ctx); err != nil {
		return err
	}
	return b.FlushSAs(ctx)
}
