package kernelops

import (
	"fmt"
	"log/slog"
	"net/netip"
	"strings"
	"time"
)

// Proto is the IPsec protocol of an SA, by IP protocol number.
type Proto uint8

const (
	ProtoESP    Proto = 50  // esp
	ProtoAH     Proto = 51  // ah
	ProtoIPComp Proto = 108 // comp
)

// Mode is the IPsec encapsulation mode.
type Mode uint8

const (
	ModeTransport Mode = iota + 1 // transport
	ModeTunnel                    // tunnel
)

// Direction of a policy, or of an SA where the dataplane records it.
// DirAny is for SAs only: direction not recorded.
type Direction uint8

const (
	DirAny Direction = iota // any
	DirIn                   // in
	DirOut                  // out
	DirFwd                  // fwd
)

// Mark is a firewall mark match (XFRM marks); the zero value matches all.
type Mark struct {
	Value, Mask uint32
}

func (m Mark) IsZero() bool { return m.Value == 0 && m.Mask == 0 }

func (m Mark) String() string { return fmt.Sprintf("%#x/%#x", m.Value, m.Mask) }

// SAID identifies an SA in a dataplane: the kernel's lookup key.
type SAID struct {
	Src, Dst netip.Addr
	SPI      uint32
	Proto    Proto
	Mark     Mark
}

func (id SAID) String() string {
	s := fmt.Sprintf("%s 0x%08x %s->%s", id.Proto, id.SPI, id.Src, id.Dst)
	if !id.Mark.IsZero() {
		s += " mark " + id.Mark.String()
	}
	return s
}

// Selector matches traffic. A zero (invalid) prefix means "any address of
// the other side's family"; a zero protocol or port means any. For ICMP the
// ports carry type (SrcPort) and code (DstPort), as XFRM and PF_KEY do.
type Selector struct {
	Src, Dst         netip.Prefix
	Proto            uint8
	SrcPort, DstPort uint16
}

// IsZero reports whether the selector matches everything.
func (s Selector) IsZero() bool { return s == Selector{} }

func (s Selector) String() string {
	var b strings.Builder
	pfx := func(p netip.Prefix) string {
		if !p.IsValid() {
			return "any"
		}
		return p.String()
	}
	b.WriteString(pfx(s.Src))
	if s.SrcPort != 0 {
		fmt.Fprintf(&b, "[%d]", s.SrcPort)
	}
	b.WriteString(" -> ")
	b.WriteString(pfx(s.Dst))
	if s.DstPort != 0 {
		fmt.Fprintf(&b, "[%d]", s.DstPort)
	}
	if s.Proto != 0 {
		fmt.Fprintf(&b, " proto %d", s.Proto)
	}
	return b.String()
}

// Matches reports whether a packet's addresses, protocol and ports fall in
// the selector.
func (s Selector) Matches(src, dst netip.Addr, proto uint8, sport, dport uint16) bool {
	if s.Src.IsValid() && !s.Src.Contains(src) {
		return false
	}
	if s.Dst.IsValid() && !s.Dst.Contains(dst) {
		return false
	}
	if s.Proto != 0 && s.Proto != proto {
		return false
	}
	if s.SrcPort != 0 && s.SrcPort != sport {
		return false
	}
	if s.DstPort != 0 && s.DstPort != dport {
		return false
	}
	return true
}

// Limits are lifetime limits; a zero field means no limit.
type Limits struct {
	Bytes, Packets uint64
	AddTime        time.Duration // since the SA was added
	UseTime        time.Duration // since the SA was first used
}

func (l Limits) IsZero() bool { return l == Limits{} }

// Lifetimes pairs the soft limit (raise a soft expire: rekey) with the hard
// limit (raise a hard expire and remove the SA).
type Lifetimes struct {
	Soft, Hard Limits
}

// LimitKind says which limit tripped an expire; LimitUnknown: the
// dataplane does not say.
type LimitKind uint8

const (
	LimitUnknown LimitKind = iota // unknown
	LimitBytes                    // bytes
	LimitPackets                  // packets
	LimitAddTime                  // add-time
	LimitUseTime                  // use-time
)

// Encap is UDP encapsulation of ESP (RFC 3948, NAT traversal).
type Encap struct {
	SrcPort, DstPort uint16
	// OrigAddr is the peer's original address for transport-mode checksum
	// fix-up (NAT-OA); usually unset.
	OrigAddr netip.Addr
}

// OffloadMode is a child's hardware offload request or result:
// OffloadNone is software only; OffloadCrypto lets the NIC do the cipher
// and the kernel the rest; OffloadPacket lets the NIC do the whole ESP
// processing; OffloadAuto (a request only) means packet, else crypto,
// else software.
type OffloadMode uint8

const (
	OffloadNone   OffloadMode = iota // no
	OffloadCrypto                    // crypto
	OffloadPacket                    // packet
	OffloadAuto                      // auto
)

// ParseOffloadMode reads the configuration words no|crypto|packet|auto.
func ParseOffloadMode(s string) (OffloadMode, error) {
	switch s {
	case "", "no", "none":
		return OffloadNone, nil
	case "crypto", "yes":
		return OffloadCrypto, nil
	case "packet", "full":
		return OffloadPacket, nil
	case "auto":
		return OffloadAuto, nil
	}
	return 0, fmt.Errorf("offload mode %q: want no, crypto, packet or auto: %w", s, ErrInvalid)
}

// Offload asks for hardware offload on Device. With OffloadAuto the backend
// tries packet, then crypto, then software. A refusal of an explicit mode
// (crypto or packet) fails the install with an *OffloadError.
type Offload struct {
	Device string
	Mode   OffloadMode
	// Active is set by AddSA/UpdateSA on success: the mode the dataplane
	// actually installed (OffloadNone when Auto fell back to software).
	Active OffloadMode
}

// SA is one security association as handed to a dataplane.
type SA struct {
	ID       SAID
	Mode     Mode
	ReqID    uint32
	Selector Selector // zero for "any" (usual in tunnel mode)

	Encryption Encryption // ESP; zero for AH
	Integrity  Integrity  // zero (IntegNone) with an AEAD cipher

	ReplayWindow uint32 // packets; 0 disables anti-replay
	ESN          bool
	Encap        *Encap // nil: plain ESP

	Lifetime Lifetimes
	Mark     Mark
	IfID     uint32    // XFRM interface id; 0 for none
	Dir      Direction // DirIn/DirOut when the dataplane records SA direction
	Offload  Offload

	// Sync, when set on an add, is the replay state and lifetime usage
	// the SA starts with, as SetSyncState would write them (an HA
	// takeover, without a round trip per SA): dataplanes claiming
	// CapSync take it with the add, the others refuse the add
	// (ErrNotSupported); an update refuses it (ErrInvalid). A zero
	// AddTime is the add's own time.
	Sync *SyncState
}

// Encryption is a cipher by IANA IKEv2 transform id. Key holds the cipher
// key followed by the salt/nonce where the transform has one (4 bytes for
// GCM, GMAC, CTR and ChaCha20-Poly1305, 3 bytes for CCM), exactly as IKE's
// KEYMAT lays it out. KeyBits is the IKE Key Length attribute: required for
// variable-size ciphers (AES), 0 for fixed-size ones.
type Encryption struct {
	ID      EncrID
	KeyBits int
	Key     Key
}

// Integrity is an integrity algorithm by IANA IKEv2 transform id.
type Integrity struct {
	ID  IntegID
	Key Key
}

// Key is secret key material. It never prints: fmt and slog show its
// length only, so a logged SA cannot leak keys.
type Key []byte

func (k Key) String() string { return fmt.Sprintf("<%d-byte key>", len(k)) }

// Format keeps every fmt verb (%x and %#v included) from printing the
// bytes.
func (k Key) Format(f fmt.State, _ rune) { fmt.Fprint(f, k.String()) }

// LogValue makes Key a slog.LogValuer, so every slog handler (text, JSON,
// or any other) logs its length only: without it the text handler quotes
// a []byte as is.
func (k Key) LogValue() slog.Value { return slog.StringValue(k.String()) }

var _ slog.LogValuer = Key(nil)

// Clone returns a deep copy; backends that keep an SA must not alias the
// caller's key slices.
func (sa *SA) Clone() *SA {
	c := *sa
	c.Encryption.Key = append(Key(nil), sa.Encryption.Key...)
	c.Integrity.Key = append(Key(nil), sa.Integrity.Key...)
	if sa.Encap != nil {
		e := *sa.Encap
		c.Encap = &e
	}
	if sa.Sync != nil {
		st := *sa.Sync
		st.Replay.Bitmap = append([]uint32(nil), sa.Sync.Replay.Bitmap...)
		c.Sync = &st
	}
	return &c
}

// ReplayState is an SA's anti-replay state: what a standby node needs to
// continue an SA without replay holes (xfrm_sync). Sequence numbers are
// 64-bit; without ESN the high half is zero.
type ReplayState struct {
	OSeq   uint64   // last outbound sequence number sent
	Seq    uint64   // highest inbound sequence number seen
	Window uint32   // window size in packets
	Bitmap []uint32 // inbound window bitmap, bit 0 = Seq
}

// Counters are an SA's usage. A zero time means "never" or, where the
// capability is absent, "unknown" (see CapLastUsed).
type Counters struct {
	Bytes, Packets uint64
	AddTime        time.Time
	FirstUse       time.Time
	LastUsed       time.Time

	ReplayDrops     uint64 // packets outside the window or replayed
	IntegrityErrors uint64 // ICV failures
	Replay          ReplayState
}

// SAState is where an SA is in its life: larval is allocated by AllocSPI
// and not yet filled, dying is soft-expired and still usable, dead is
// hard-expired and going away.
type SAState uint8

const (
	SAValid  SAState = iota // valid
	SALarval                // larval
	SADying                 // dying
	SADead                  // dead
)

// SAEntry is an SA as read back from the dataplane. Key fields are filled
// only where the dataplane returns keys.
type SAEntry struct {
	SA
	State    SAState
	Counters Counters
}

// SPIRequest asks for an inbound SPI. Min/Max of 0 use the backend's
// configured range (Options.SPIMin/SPIMax).
type SPIRequest struct {
	Src, Dst netip.Addr // the future SA's outer addresses (Dst is local)
	Proto    Proto
	ReqID    uint32
	Min, Max uint32
}

// Action is what a policy does with matching traffic: ipsec protects with
// the templates' SAs, pass lets it through unprotected (bypass), block
// drops it. Trap protects like ipsec but exists to raise an acquire when
// no SA matches (on-demand tunnels); dataplanes that cannot raise
// acquires refuse it with ErrNotSupported (see CapTrap).
type Action uint8

const (
	ActionIPsec Action = iota + 1 // ipsec
	ActionPass                    // pass
	ActionBlock                   // block
	ActionTrap                    // trap
)

// Template says which SA protects traffic of an ipsec or trap policy.
type Template struct {
	Src, Dst netip.Addr // outer addresses; unset in transport mode
	Proto    Proto
	Mode     Mode
	ReqID    uint32
	SPI      uint32 // 0: any
	Optional bool   // level "use" rather than "required"
}

// PolicyID identifies a policy: what the kernel looks policies up by.
type PolicyID struct {
	Selector Selector
	Dir      Direction
	Mark     Mark
	IfID     uint32
}

func (id PolicyID) String() string {
	s := fmt.Sprintf("%s %s", id.Selector, id.Dir)
	if !id.Mark.IsZero() {
		s += " mark " + id.Mark.String()
	}
	if id.IfID != 0 {
		s += fmt.Sprintf(" if_id %#x", id.IfID)
	}
	return s
}

// Policy is one security policy database entry.
type Policy struct {
	Selector  Selector
	Dir       Direction
	Action    Action
	Priority  uint32 // lower wins; 0 derives one with AutoPriority
	Templates []Template
	Mark      Mark
	IfID      uint32
	// Lifetime limits the policy itself (time fields only); expiry raises
	// a PolicyExpireEvent. Rarely used by IKE daemons.
	Lifetime Lifetimes
}

// ID returns the policy's lookup key.
func (p *Policy) ID() PolicyID {
	return PolicyID{Selector: p.Selector, Dir: p.Dir, Mark: p.Mark, IfID: p.IfID}
}

// Clone returns a deep copy.
func (p *Policy) Clone() *Policy {
	c := *p
	c.Templates = append([]Template(nil), p.Templates...)
	return &c
}

// PolicyEntry is a policy as read back from the dataplane.
type PolicyEntry struct {
	Policy
	AddTime time.Time
	UseTime time.Time // zero: never used, or unknown
}

// Route is the answer of address selection for one destination.
type Route struct {
	Src     netip.Addr // preferred source address
	Gateway netip.Addr // next hop; unset when directly connected
	IfIndex int
	IfName  string
}

// Interface is a network interface and its addresses.
type Interface struct {
	Index int
	Name  string
	Up    bool
	Addrs []netip.Prefix
	// XfrmIfID is an xfrm interface's if_id; 0 for other interfaces.
	XfrmIfID uint32
}

// Endpoints are a tunnel's outer addresses seen from this host.
type Endpoints struct {
	Local, Remote netip.Addr
}

// Migration moves a child's SAs and policy templates to new outer addresses
// (MOBIKE, RFC 4555), keeping keys, counters and replay state.
type Migration struct {
	ReqID    uint32
	Old, New Endpoints
	Encap    *Encap     // the encapsulation after the move, as on the outbound SA (local port, remote port; the inbound SA's are the other way round); nil for none
	SAs      []SAID     // the SAs to move (their IDs use the Old addresses)
	Policies []PolicyID // policies whose templates point at the Old addresses
}

// SyncThresholds make the dataplane send SyncEvents (xfrm_sync aevents):
// after ReplayDiff packets of sequence-number advance, or Timer after a
// change, whichever comes first. Zero fields disable that trigger.
type SyncThresholds struct {
	ReplayDiff uint32
	Timer      time.Duration
}

// SyncState is what an HA peer copies to take over an SA: replay state and
// current lifetime usage.
type SyncState struct {
	Replay         ReplayState
	Bytes, Packets uint64
	AddTime        time.Time
	UseTime        time.Time
}

// HoleSet lists the bypasses a host needs beside its IPsec policies.
type HoleSet struct {
	IKEPorts []uint16 // UDP ports let through unprotected, e.g. 500 and 4500
	IPv6ND   bool     // ICMPv6 neighbour/router discovery let through
}

// OffloadSupport is what a device can offload.
type OffloadSupport struct {
	Crypto bool
	Packet bool
	Detail string // e.g. the ethtool feature bits read
}

// XfrmInterface is a route-based IPsec interface (Linux xfrm interface).
type XfrmInterface struct {
	Name     string
	IfID     uint32
	Underlay string // the device the interface is bound to; may be empty
}
