package kernelops

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"reflect"
	"sync"
	"sync/atomic"
	"syscall"
)

// Handle is the checked front end over a Driver, as database/sql's DB is
// over database/sql/driver: every backend Open returns one (or a type that
// embeds one). It implements every facet; a facet whose capability the
// driver does not claim fails with ErrNotSupported and the driver's note.
// Before the driver is called, a Handle
//
//   - fails with ErrClosed after Close, and with the context's error when
//     ctx is done;
//   - refuses an unclaimed capability: the facet's (the facet table), and
//     each feature an SA or policy asks for (ESN, UDP encapsulation, a
//     mode, marks, if_id, direction, lifetimes, offload, trap, priority);
//   - validates the input with ValidateSA, ValidatePolicy,
//     ValidateSPIRequest, ValidateMigration and the checks of the simpler
//     calls, so every backend rejects the same bad input with the same
//     ErrInvalid naming the field, and nothing reaches the dataplane.
//
// After the call it wraps whatever the driver returned into an *Error
// naming the backend, the operation and the object (errnos map onto the
// shared sentinels), and keeps its own helpers in step: the event bus
// (EventSource), idle detection from bulk usage reads (IdleWatcher) and
// address reference counts (AddrManager) are the Handle's, built from what
// the driver claims, and so are SPI allocation (for a driver without an
// SPIAllocator) and software lifetimes (for one that claims
// CapSoftwareLifetimes, whose SAs read back with the lifetimes tracked
// here): no driver carries a copy.
type Handle struct {
	name string
	d    Driver
	caps Capabilities
	opts Options
	log  *slog.Logger

	bus      *bus
	idle     *idleDetector
	stopIdle func()
	addrs    *addrTable
	spis     *spiTable // nil when the driver allocates SPIs
	life     *lifeManager
	swLife   bool // the driver claims software lifetimes: life is in use
	expirer  Expirer
	lifeMu   sync.Mutex // held across an SA change and the life call matching it

	// The driver's facets, nil where the driver lacks one or does not
	// claim its capability.
	sad     SADriver
	alloc   SPIAllocator
	usage   UsageReader
	spd     SPD
	batch   Batcher
	socks   Sockets
	sel     AddrSelector
	ifaddrs InterfaceAddrs
	xfrmi   XfrmInterfaces
	holes   Holes
	off     Offloader
	sync    Syncer
	mig     Migrator

	evMu      sync.Mutex
	evStarted bool

	closed atomic.Bool
}

// OpenFunc builds a driver from what the front end hands it.
type OpenFunc func(ctx context.Context, env *Env) (Driver, error)

// NewHandle opens a driver under the front end: it fills opts' defaults,
// calls open with an Env, checks the driver's claims against the facet
// table (a claimed facet the driver does not implement is a programming
// error, reported here rather than at the first call) and starts the
// helpers the claims call for. Backends call it from their Open.
func NewHandle(ctx context.Context, name string, opts Options, open OpenFunc) (*Handle, error) {
	opts = opts.WithDefaults()
	h := &Handle{name: name, opts: opts, log: opts.Logger.With("backend", name), bus: newBus()}
	h.life = newLifeManager(opts.Clock, h.expire)
	env := &Env{Name: name, Options: opts, Log: h.log, h: h}
	d, err := open(ctx, env)
	if err != nil {
		h.life.Close()
		h.bus.Close()
		return nil, h.wrap("open", "", err)
	}
	h.d = d
	h.caps = d.Capabilities()
	if err := h.bind(); err != nil {
		h.Close()
		return nil, err
	}
	return h, nil
}

// bind checks the driver's claims and picks up its facets.
func (h *Handle) bind() error {
	dt := reflect.TypeOf(h.d)
	for _, f := range facets {
		if f.Driver != nil && h.caps.Has(f.Cap) && !dt.Implements(f.Driver) {
			return &Error{Backend: h.name, Op: "open", Err: ErrInvalid,
				Detail: fmt.Sprintf("driver %s claims %s but does not implement %s", dt, f.Cap, f.Driver)}
		}
	}
	pick := func(c Cap) bool { return h.caps.Has(c) }
	if pick(CapSAD) {
		h.sad = h.d.(SADriver)
		h.usage, _ = h.d.(UsageReader)
		h.alloc, _ = h.d.(SPIAllocator)
		if h.alloc == nil {
			h.spis = newSPITable(h.opts.Clock)
		}
	}
	if pick(CapSoftwareLifetimes) {
		x, ok := h.d.(Expirer)
		if !ok {
			return &Error{Backend: h.name, Op: "open", Err: ErrInvalid,
				Detail: fmt.Sprintf("driver %s claims %s but does not implement kernelops.Expirer", dt, CapSoftwareLifetimes)}
		}
		h.expirer, h.swLife = x, true
	}
	if pick(CapSPD) {
		h.spd = h.d.(SPD)
	}
	if pick(CapBatch) {
		h.batch = h.d.(Batcher)
	}
	if pick(CapSockets) {
		h.socks = h.d.(Sockets)
	}
	if pick(CapAddrSelect) {
		h.sel = h.d.(AddrSelector)
	}
	if pick(CapAddrManage) {
		h.ifaddrs = h.d.(InterfaceAddrs)
		h.addrs = newAddrTable(h.ifaddrs)
	}
	if pick(CapXfrmInterfaces) {
		h.xfrmi = h.d.(XfrmInterfaces)
	}
	if pick(CapHoles) {
		h.holes = h.d.(Holes)
	}
	if pick(CapOffload) {
		h.off = h.d.(Offloader)
	}
	if pick(CapSync) {
		h.sync = h.d.(Syncer)
	}
	if pick(CapMigrate) {
		h.mig = h.d.(Migrator)
	}
	if pick(CapIdle) {
		if h.sad == nil {
			return &Error{Backend: h.name, Op: "open", Err: ErrInvalid,
				Detail: "driver claims idle without a SAD to read usage from"}
		}
		h.idle = newIdleDetector(idleConfig{
			Clock: h.opts.Clock,
			Read:  h.readUsage,
			Emit:  func(ev *IdleEvent) { h.bus.Publish(ev) },
			OnError: func(err error) {
				if !h.closed.Load() {
					h.log.Warn("idle scan failed", "err", err)
				}
			},
		})
		h.stopIdle = h.idle.Start(h.opts.IdleScanInterval)
	}
	return nil
}

// Name returns the backend's name.
func (h *Handle) Name() string { return h.name }

// Capabilities returns what the driver claimed at open (a copy).
func (h *Handle) Capabilities() Capabilities {
	c := h.caps
	c.Notes = make(map[Cap]string, len(h.caps.Notes))
	for k, v := range h.caps.Notes {
		c.Notes[k] = v
	}
	c.Algorithms.Encryption = append(c.Algorithms.Encryption[:0:0], h.caps.Algorithms.Encryption...)
	c.Algorithms.Integrity = append(c.Algorithms.Integrity[:0:0], h.caps.Algorithms.Integrity...)
	return c
}

// Driver returns the driver under the Handle, for backend-specific
// extras (as database/sql's Conn.Raw does). Calls made on it directly
// bypass every check.
func (h *Handle) Driver() Driver { return h.d }

// Options returns the options the backend was opened with, defaults
// filled in.
func (h *Handle) Options() Options { return h.opts }

// Close stops the Handle's helpers, closes the driver and ends every
// subscription. Later calls fail with ErrClosed; a second Close is a
// no-op.
func (h *Handle) Close() error {
	if h.closed.Swap(true) {
		return nil
	}
	if h.stopIdle != nil {
		h.stopIdle()
	}
	h.life.Close()
	if h.spis != nil {
		h.spis.close()
	}
	err := h.d.Close()
	h.bus.Close()
	return h.wrap("close", "", err)
}

// publish hands a driver's event to the subscribers, after the Handle's
// own state follows a hard expiry.
func (h *Handle) publish(ev Event) {
	if x, ok := ev.(*ExpireEvent); ok && x.Hard {
		h.gone(x.SA)
	}
	h.bus.Publish(ev)
}

// expire is the software lifetimes' callback: the driver applies the
// expiry, and it is published if the driver still held the SA.
func (h *Handle) expire(ev *ExpireEvent) {
	if !h.swLife || h.closed.Load() {
		return
	}
	if h.expirer.Expire(context.Background(), ev) {
		h.publish(ev)
	}
}

// gone forgets an SA that left the dataplane.
func (h *Handle) gone(id SAID) {
	if h.spis != nil {
		h.spis.gone(id)
	}
	if h.swLife {
		h.life.Remove(id)
	}
	if h.idle != nil {
		h.idle.Watch(id, 0)
	}
}

// enter is every call's first step: closed, context, capability, driver.
func (h *Handle) enter(ctx context.Context, op string, c Cap, have bool) error {
	if h.closed.Load() {
		return &Error{Backend: h.name, Op: op, Err: ErrClosed}
	}
	if err := ctx.Err(); err != nil {
		return &Error{Backend: h.name, Op: op, Err: err}
	}
	if err := h.caps.Require(h.name, op, c); err != nil {
		return err
	}
	if !have {
		return NotSupported(h.name, op, fmt.Sprintf("capability %s: the driver does not implement it", c))
	}
	return nil
}

// wrap makes err an *Error naming this backend, op and object, keeping
// what the driver already said: an *Error's fields, an errno (mapped
// onto its sentinel), a context error.
// wrapSAID is wrap naming id, named only for an error (the sync calls
// are made per SA).
func (h *Handle) wrapSAID(op string, id SAID, err error) error {
	if err == nil {
		return nil
	}
	return h.wrap(op, id.String(), err)
}

func (h *Handle) wrap(op, obj string, err error) error {
	if err == nil {
		return nil
	}
	var e *Error
	var errno syscall.Errno
	if ke, ok := err.(*Error); ok {
		c := *ke
		e = &c
	} else if errors.As(err, &errno) {
		e = FromErrno(h.name, op, obj, errno, "")
		if s := err.Error(); s != errno.Error() {
			e.Detail = s
		}
	} else {
		e = &Error{Err: err}
	}
	if e.Backend == "" {
		e.Backend = h.name
	}
	if e.Op == "" {
		e.Op = op
	}
	if e.Object == "" {
		e.Object = obj
	}
	return e
}

// installed keeps the Handle's state in step with an SA the driver
// added or updated.
func (h *Handle) installed(sa *SA, update bool) {
	if h.spis != nil {
		h.spis.installed(sa.ID)
	}
	if h.swLife && (!update || !h.life.Update(sa.ID, sa.Lifetime)) {
		added, st := h.opts.Clock.Now(), sa.Sync
		if st != nil && !update && !st.AddTime.IsZero() {
			added = st.AddTime // the add time it was synced with
		}
		h.life.Add(sa.ID, sa.ReqID, sa.Lifetime, added)
		if st != nil && !update {
			// The usage it was added with, as SetSyncState's (Env).
			h.life.Observe(sa.ID, st.Bytes, st.Packets, st.UseTime)
		}
	}
}

// lockLife serialises SA changes with their lifetime bookkeeping when the
// Handle enforces lifetimes (swLife, set once when the Handle is made);
// unlockLife ends it. No func value is returned: a method value escaping
// through defer was an allocation per SA change.
func (h *Handle) lockLife() {
	if h.swLife {
		h.lifeMu.Lock()
	}
}

func (h *Handle) unlockLife() {
	if h.swLife {
		h.lifeMu.Unlock()
	}
}
