package kernelops

import (
	"context"
	"iter"
	"net/netip"
	"time"
)

// Backend is an open dataplane: a *Handle, or a backend type embedding
// one. Find its facets with As, which consults the facet table: a facet
// is usable only when its capability is claimed.
type Backend interface {
	Name() string
	Capabilities() Capabilities
	Close() error
}

// SAD is the security association database.
//
// AllocSPI reserves an inbound SPI (on XFRM a larval SA); AddSA with that
// SPI fills the reservation. AddSA fails with ErrExists for a taken ID,
// UpdateSA and DeleteSA with ErrNotFound for a missing one. FlushSAs
// removes only SAs this keyplane owns (Options.ReqIDMin..ReqIDMax), never
// anyone else's.
//
// SAs streams every SA the dataplane holds, owned or not. The yielded
// *SAEntry is valid only until the loop body returns: backends reuse it
// so a dump of 100k SAs does not allocate 100k entries. Copy what you keep.
type SAD interface {
	AllocSPI(ctx context.Context, req SPIRequest) (uint32, error)
	AddSA(ctx context.Context, sa *SA) error
	UpdateSA(ctx context.Context, sa *SA) error
	DeleteSA(ctx context.Context, id SAID) error
	GetSA(ctx context.Context, id SAID) (*SAEntry, error)
	SAs(ctx context.Context) iter.Seq2[*SAEntry, error]
	FlushSAs(ctx context.Context) error
}

// SPD is the security policy database. AddPolicy fails with ErrExists for
// a taken PolicyID; ReplacePolicy adds or replaces. FlushPolicies removes
// only owned policies. Policies streams with the same reuse rule as SAs.
type SPD interface {
	AddPolicy(ctx context.Context, p *Policy) error
	ReplacePolicy(ctx context.Context, p *Policy) error
	DeletePolicy(ctx context.Context, id PolicyID) error
	GetPolicy(ctx context.Context, id PolicyID) (*PolicyEntry, error)
	Policies(ctx context.Context) iter.Seq2[*PolicyEntry, error]
	FlushPolicies(ctx context.Context) error
}

// UsageReader reads the usage counters of every SA in one bulk pass — the
// cheap read idle detection scans with. Backends without a cheaper path
// than SAD.SAs need not implement it; ReadUsage falls back to the dump.
type UsageReader interface {
	Usage(ctx context.Context) iter.Seq2[Usage, error]
}

// Usage is one SA's counters as seen by a bulk scan.
type Usage struct {
	ID       SAID
	ReqID    uint32
	Bytes    uint64
	Packets  uint64
	AddTime  time.Time
	LastUsed time.Time // zero: never used, or the dataplane does not say (see CapLastUsed)
}

// Batcher applies many SAD/SPD operations with several in flight at once.
// Each op's Err is set; Apply returns a *BatchError when any failed.
type Batcher interface {
	Apply(ctx context.Context, ops []Op) error
}

// IKEConn is a UDP socket for IKE that is exempt from IPsec policies. It
// reports the local address each datagram arrived on, so a daemon bound to
// a wildcard answers from the right address.
type IKEConn interface {
	ReadFrom(b []byte) (n int, local, remote netip.AddrPort, err error)
	WriteTo(b []byte, local, remote netip.AddrPort) (int, error)
	LocalAddr() netip.AddrPort
	Close() error
}

// IKEListen describes an IKE socket to open.
type IKEListen struct {
	Addr netip.AddrPort // IP may be unspecified (0.0.0.0 or ::) to listen on all
	// Encap marks the NAT-T socket (port 4500): the dataplane decapsulates
	// ESP-in-UDP arriving on it and drops NAT-T keepalives. The non-ESP
	// marker is the dataplane's framing, not IKE's: ReadFrom returns IKE
	// messages without it and WriteTo prepends it, so the engine handles
	// the same bytes on both sockets whatever the dataplane. The one
	// exception is a NAT-keepalive (RFC 3948 §4): WriteTo of the single
	// octet 0xff sends it as it is, without the marker.
	Encap bool
	// RecvBuffer, when positive, is the receive buffer to ask the kernel
	// for, in bytes, so that a burst of handshakes waits in the socket
	// instead of being dropped. Where the OS allows (Linux with
	// CAP_NET_ADMIN) it is set past the system's maximum; elsewhere the
	// maximum caps it. Zero keeps the OS default. IKEQueue.Stats tells
	// what the kernel granted.
	RecvBuffer int
}

// IKEQueue is implemented by IKE sockets that can tell how their receive
// queue fares; find it by type assertion on an IKEConn (the front end
// hands out the driver's socket as it is). Sockets without it have no
// such measure.
type IKEQueue interface {
	// QueueStats reads the kernel's figures for the socket now.
	QueueStats() (IKEQueueStats, error)
	// SetRecvBuffer asks for another receive buffer (see
	// IKEListen.RecvBuffer) on the open socket.
	SetRecvBuffer(bytes int) error
}

// IKEQueueStats are an IKE socket's receive figures.
type IKEQueueStats struct {
	// RecvBuffer is the receive buffer the kernel accounts to the socket,
	// in bytes (Linux counts each datagram's overhead too and doubles
	// what was asked for).
	RecvBuffer int
	// Drops counts the datagrams the kernel dropped for this socket since
	// it was opened: its receive buffer was full, or memory was short.
	// DropsCounted is false where the OS keeps no such count per socket
	// (the BSDs, macOS): Drops is then 0 and means nothing.
	Drops        uint64
	DropsCounted bool
}

// Sockets is the IKE-sockets facet.
type Sockets interface {
	ListenIKE(ctx context.Context, l IKEListen) (IKEConn, error)
}

// AddrSelector is the address-selection facet (%defaultroute, %eth1).
type AddrSelector interface {
	// RouteTo returns the source address and interface the dataplane would
	// use to reach dst.
	RouteTo(ctx context.Context, dst netip.Addr) (Route, error)
	Interfaces(ctx context.Context) ([]Interface, error)
}

// AddrManager adds addresses to interfaces with reference counts: two
// connections sharing an address each add it, and it leaves the interface
// only at the last remove. An address that was already there before
// keyplane's first add is never removed by keyplane.
type AddrManager interface {
	AddAddress(ctx context.Context, ifname string, p netip.Prefix) error
	RemoveAddress(ctx context.Context, ifname string, p netip.Prefix) error
}

// XfrmInterfaces manages route-based IPsec interfaces.
type XfrmInterfaces interface {
	AddXfrmInterface(ctx context.Context, x XfrmInterface) error
	DeleteXfrmInterface(ctx context.Context, name string) error
}

// Holes lets IKE and IPv6 neighbour discovery bypass IPsec policies that
// would otherwise catch them. OpenHoles replaces any earlier set.
type Holes interface {
	OpenHoles(ctx context.Context, h HoleSet) error
	CloseHoles(ctx context.Context) error
}

// Offloader reports what a device can offload. Offload itself is requested
// per SA (SA.Offload).
type Offloader interface {
	OffloadSupport(ctx context.Context, ifname string) (OffloadSupport, error)
}

// Syncer is the HA facet (xfrm_sync): thresholds that make the dataplane
// send SyncEvents, and reading/writing replay and lifetime state.
type Syncer interface {
	SetSyncThresholds(ctx context.Context, id SAID, th SyncThresholds) error
	GetSyncState(ctx context.Context, id SAID) (SyncState, error)
	SetSyncState(ctx context.Context, id SAID, st SyncState) error
}

// IdleWatcher raises IdleEvents for SAs without traffic for their
// threshold, from one bulk usage read per scan (never a read per SA).
// A threshold of 0 stops watching the SA.
type IdleWatcher interface {
	WatchIdle(ctx context.Context, id SAID, threshold time.Duration) error
}

// Migrator moves SAs and policy templates to new addresses (MOBIKE).
type Migrator interface {
	Migrate(ctx context.Context, m Migration) error
}
