package kernelops

import (
	"context"
	"net/netip"
	"strings"
	"time"
)

// EventKind names a kind of event; kinds combine as a bit set to filter a
// subscription.
type EventKind uint32

const (
	KindAcquire      EventKind = 1 << iota // a trap/ipsec policy matched with no SA
	KindExpire                             // an SA hit a soft or hard limit
	KindPolicyExpire                       // a policy hit its lifetime
	KindMapping                            // a NAT mapping of an ESP-in-UDP SA changed
	KindMigrate                            // the kernel reports a migration (PF_KEY/XFRM MIGRATE)
	KindSync                               // replay/lifetime counters for HA (xfrm_sync aevents)
	KindAddr                               // an address was added or removed
	KindLink                               // a link went up, down, or away
	KindRoute                              // a route changed
	KindIdle                               // an SA has seen no traffic for its threshold
	KindOverrun                            // events were lost: re-read the state

	AllKinds EventKind = 1<<iota - 1
)

var kindNames = []string{"acquire", "expire", "policy-expire", "mapping", "migrate",
	"sync", "addr", "link", "route", "idle", "overrun"}

func (k EventKind) String() string {
	if k == 0 {
		return "none"
	}
	var parts []string
	for i, n := range kindNames {
		if k&(1<<i) != 0 {
			parts = append(parts, n)
		}
	}
	if rest := k &^ AllKinds; rest != 0 {
		parts = append(parts, "unknown")
	}
	return strings.Join(parts, "|")
}

// Event is one notification from a dataplane. The concrete types are the
// *Event structs below; switch on them.
type Event interface {
	Kind() EventKind
}

// AcquireEvent: outbound traffic matched an ipsec/trap policy that has no
// SA. The IKE engine answers by negotiating a child for Policy.
type AcquireEvent struct {
	Seq      uint32     // the dataplane's acquire sequence; echo it where the dataplane wants it
	Src, Dst netip.Addr // the template's outer addresses (the packet's if transport mode)
	Proto    Proto
	ReqID    uint32
	Policy   PolicyID // the policy that matched
	Packet   Selector // the triggering packet's addresses, protocol and ports, when known
}

// ExpireEvent: an SA reached a lifetime limit. After a hard expire the SA
// is gone from the dataplane.
type ExpireEvent struct {
	SA    SAID
	ReqID uint32
	Hard  bool
	Limit LimitKind
}

// PolicyExpireEvent: a policy reached its lifetime.
type PolicyExpireEvent struct {
	Policy PolicyID
	Hard   bool
}

// MappingEvent: the peer's NAT mapping of an ESP-in-UDP SA changed.
type MappingEvent struct {
	SA       SAID
	ReqID    uint32
	Old, New netip.AddrPort // the peer's outer address and port, before and after
}

// MigrateEvent: the dataplane reports a migration request or result.
type MigrateEvent struct {
	Policy  PolicyID
	Entries []MigrateEntry
}

// MigrateEntry is one SA template's move.
type MigrateEntry struct {
	Proto    Proto
	Mode     Mode
	ReqID    uint32
	Old, New Endpoints
}

// SyncEvent carries an SA's replay and lifetime state for an HA standby.
type SyncEvent struct {
	SA     SAID
	ReqID  uint32
	State  SyncState
	Reason SyncReason
}

// SyncReason says what made the dataplane send a SyncEvent.
type SyncReason uint8

// SyncReplay: sequence numbers advanced past the threshold; SyncTimer:
// the timer threshold elapsed; SyncQuery: the answer to an explicit read.
const (
	SyncOther  SyncReason = iota // other
	SyncReplay                   // replay
	SyncTimer                    // timer
	SyncQuery                    // query
)

// AddrEvent: an address appeared on or left an interface.
type AddrEvent struct {
	Added   bool
	IfIndex int
	IfName  string
	Prefix  netip.Prefix // address with its prefix length
}

// LinkEvent: a link changed state.
type LinkEvent struct {
	IfIndex int
	IfName  string
	Up      bool
	Deleted bool
}

// RouteEvent: a route was added or removed.
type RouteEvent struct {
	Added   bool
	Dst     netip.Prefix
	Gateway netip.Addr
	Src     netip.Addr
	IfIndex int
	Table   int
}

// IdleEvent: an SA has carried no traffic for at least its threshold.
type IdleEvent struct {
	SA        SAID
	ReqID     uint32
	LastUsed  time.Time // zero if never used
	IdleFor   time.Duration
	Threshold time.Duration
}

// OverrunEvent: events were lost, either in the dataplane (a netlink
// socket's ENOBUFS) or because this subscriber did not keep up. The
// consumer must re-read the SAD/SPD instead of trusting its view.
type OverrunEvent struct {
	Lost   int    // events known lost; -1 when the dataplane cannot count them
	Source string // where: "kernel socket", "subscriber queue", "reconnect", ...
}

func (*AcquireEvent) Kind() EventKind      { return KindAcquire }
func (*ExpireEvent) Kind() EventKind       { return KindExpire }
func (*PolicyExpireEvent) Kind() EventKind { return KindPolicyExpire }
func (*MappingEvent) Kind() EventKind      { return KindMapping }
func (*MigrateEvent) Kind() EventKind      { return KindMigrate }
func (*SyncEvent) Kind() EventKind         { return KindSync }
func (*AddrEvent) Kind() EventKind         { return KindAddr }
func (*LinkEvent) Kind() EventKind         { return KindLink }
func (*RouteEvent) Kind() EventKind        { return KindRoute }
func (*IdleEvent) Kind() EventKind         { return KindIdle }
func (*OverrunEvent) Kind() EventKind      { return KindOverrun }

// SubscribeOptions filter and size a subscription.
type SubscribeOptions struct {
	Kinds  EventKind // 0: every kind; KindOverrun is always delivered
	Buffer int       // queued events before the subscriber overruns; 0: DefaultEventBuffer
}

// DefaultEventBuffer is the queue length of a subscription by default.
const DefaultEventBuffer = 4096

// Subscription delivers events until closed. When the subscriber falls
// behind, events are dropped and an *OverrunEvent is queued before the next
// event delivered, so loss is never silent.
type Subscription interface {
	Events() <-chan Event
	// Close ends the subscription and closes the Events channel.
	Close() error
}

// EventSource is the kernel-events facet: one subscription carries every
// kind the dataplane reports. Cancelling ctx closes the subscription.
type EventSource interface {
	Subscribe(ctx context.Context, opts SubscribeOptions) (Subscription, error)
}
