package kernelops

import (
	"context"
	"log/slog"
	"net/netip"
)

// Driver is a backend's translation code, in the manner of
// database/sql/driver: what it implements and claims, the front end
// (Handle) offers, checked. A driver implements the driver side of each
// facet it claims (the facet table in facets.go says which interface that
// is) and never repeats the contract: the Handle validates input, refuses
// unclaimed capabilities, checks the context and closed state, wraps
// errors into *Error with backend, operation and object, fans events out,
// detects idle SAs and counts address references.
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
	bus     *bus
}

// Publish hands a dataplane event to every subscriber; it never blocks.
// A subscriber that falls behind gets an OverrunEvent in its place.
func (e *Env) Publish(ev Event) { e.bus.Publish(ev) }

// Overrun tells every subscriber that the dataplane itself lost events
// (lost is -1 when it cannot count them), so they re-read the state.
func (e *Env) Overrun(lost int, source string) { e.bus.Overrun(lost, source) }

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
