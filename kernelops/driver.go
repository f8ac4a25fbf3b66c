package kernelops

import (
	"context"
	"iter"
	"log/slog"
	"net/netip"
	"time"
)

// Driver is a backend's translation code, in the manner of
// database/sql/driver: what it implements and claims, the front end
// (Handle) offers, checked. A driver implements the driver side of each
// facet it claims (the facet table in facets.go says which interface that
// is) and never repeats the contract: the Handle validates input, refuses
// unclaimed capabilities, checks the context and closed state, wraps
// errors into *Error with backend, operation and object, fans events out,
// detects idle SAs, counts address references, and — where the driver
// says its dataplane has none — allocates SPIs and enforces lifetimes.
//
// What a driver still does: translate, and report the dataplane's own
// refusals (return a syscall.Errno, a sentinel, or an *Error carrying the
// errno and the kernel's words; the Handle fills in what is missing).
type Driver interface {
	// Capabilities states what the running dataplane can do. The Handle
	// reads it once, at open.
	Capabilities() Capabilities
	// Close releases the driver's resources. The Handle calls it once,
	// after no call of its own can reach the driver any more.
	Close() error
}

// Env is what the front end hands a driver as it opens.
type Env struct {
	Name    string       // the backend's name, for logs and errors
	Options Options      // with defaults filled in
	Log     *slog.Logger // Options.Logger with backend=Name
	h       *Handle
}

// Publish hands a dataplane event to every subscriber; it never blocks.
// A subscriber that falls behind gets an OverrunEvent in its place.
func (e *Env) Publish(ev Event) { e.h.publish(ev) }

// Overrun tells every subscriber that the dataplane itself lost events
// (lost is -1 when it cannot count them), so they re-read the state.
func (e *Env) Overrun(lost int, source string) { e.h.bus.Overrun(lost, source) }

// Observe reports an SA's cumulative byte and packet counters (and its
// first use, when known) to the front end's software lifetimes; a driver
// that claims CapSoftwareLifetimes calls it after each counter read, or
// on every packet of a model. It may deliver an expiry (Expirer.Expire)
// in the calling goroutine, so call it without holding a lock Expire
// takes. Without software lifetimes it does nothing.
func (e *Env) Observe(id SAID, bytes, packets uint64, firstUse time.Time) {
	if e.h.swLife {
		e.h.life.Observe(id, bytes, packets, firstUse)
	}
}

// Reserved reports whether id's SPI was handed out by the front end's
// AllocSPI and not yet filled: during AddSA it tells a driver whose
// dataplane does not record SA direction that the SA is inbound.
func (e *Env) Reserved(id SAID) bool { return e.h.spis != nil && e.h.spis.reserved(id) }

// SetTimes overrides an SA's add time and first use in the software
// lifetimes (zero leaves one unchanged): an HA standby taking over the
// SA's lifetime state. The same rule as Observe applies.
func (e *Env) SetTimes(id SAID, added, firstUse time.Time) {
	if e.h.swLife {
		e.h.life.SetTimes(id, added, firstUse)
	}
}

// SADriver is the driver side of the SAD: SAD without AllocSPI. A
// driver whose dataplane reserves SPIs itself (XFRM's larval SAs) also
// implements SPIAllocator; for any other the front end hands out random
// unique SPIs from the requested range and holds each reservation for
// LarvalTimeout unless an AddSA fills it.
type SADriver interface {
	AddSA(ctx context.Context, sa *SA) error
	UpdateSA(ctx context.Context, sa *SA) error
	DeleteSA(ctx context.Context, id SAID) error
	GetSA(ctx context.Context, id SAID) (*SAEntry, error)
	SAs(ctx context.Context) iter.Seq2[*SAEntry, error]
	FlushSAs(ctx context.Context) error
}

// SPIAllocator is implemented by drivers whose dataplane allocates SPIs.
// The request's range is resolved (ValidateSPIRequest).
type SPIAllocator interface {
	AllocSPI(ctx context.Context, req SPIRequest) (uint32, error)
}

// LarvalTimeout is how long the front end holds an SPI from AllocSPI that
// no AddSA filled, as Linux keeps a larval SA (net.core.xfrm_acq_expires).
const LarvalTimeout = 30 * time.Second

// Expirer is implemented by drivers that claim CapSoftwareLifetimes: the
// front end enforces every SA's lifetimes on Options.Clock (byte and
// packet limits from Env.Observe) and calls Expire when one trips. For a
// soft expiry the driver marks the SA dying, for a hard one it removes
// the SA; it reports whether it still held the SA, and only then is ev
// published. Expire runs in a clock timer's goroutine or in the one that
// called Env.Observe. The front end also fills SAEntry.Lifetime of the
// SAs it tracks in what GetSA and SAs return, so the driver need not keep
// an SA's lifetimes to read them back.
type Expirer interface {
	Expire(ctx context.Context, ev *ExpireEvent) bool
}

// EventStarter is implemented by drivers that open their event sources
// only when the first subscriber comes (a netlink or PF_KEY socket that
// would otherwise fill up unread). A driver that claims CapEvents without
// it publishes from open on.
type EventStarter interface {
	StartEvents(ctx context.Context) error
}

// InterfaceAddrs is the driver side of AddrManager: plain add and delete
// of an interface address. The Handle counts references on top, so an
// address two connections share stays until the last remove, and one
// found already configured is never removed.
type InterfaceAddrs interface {
	HasAddress(ctx context.Context, ifname string, p netip.Prefix) (bool, error)
	AssignAddress(ctx context.Context, ifname string, p netip.Prefix) error
	UnassignAddress(ctx context.Context, ifname string, p netip.Prefix) error
}
