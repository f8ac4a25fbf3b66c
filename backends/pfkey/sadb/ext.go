package sadb

import (
	"encoding/binary"
	"net/netip"
	"strings"
)

// Ext is one extension. Its wire header (sadb_ext_len, sadb_ext_type) and
// trailing padding are written by Marshal; an Ext holds the rest.
type Ext interface {
	// Type is the extension's sadb_ext_type in dialect d, 0 when d has
	// no such extension.
	Type(d *Dialect) ExtType
	appendBody(d *Dialect, b []byte) ([]byte, error)
}

// SA is struct sadb_sa.
type SA struct {
	SPI     uint32 // as a number; the wire carries it in network order
	Replay  uint8  // window: packets on Linux, bytes of bitmap on KAME (Dialect.ReplayInBytes)
	State   uint8  // State*
	Auth    uint8  // SADB_AALG_*; for IPcomp unused
	Encrypt uint8  // SADB_EALG_*, or SADB_X_CALG_* for IPcomp
	Flags   uint32
	// Tail holds bytes past the 16 of struct sadb_sa (XNU's private
	// sadb_sa_2 appends NAT-T ports there), kept for round trips.
	Tail []byte
}

func (*SA) Type(*Dialect) ExtType { return ExtSA }

func (e *SA) appendBody(d *Dialect, b []byte) ([]byte, error) {
	b = binary.BigEndian.AppendUint32(b, e.SPI)
	b = append(b, e.Replay, e.State, e.Auth, e.Encrypt)
	b = d.Order.AppendUint32(b, e.Flags)
	return append(b, e.Tail...), nil
}

// Lifetime is struct sadb_lifetime (current, hard or soft).
type Lifetime struct {
	T           ExtType // ExtLifetimeCurrent, ExtLifetimeHard or ExtLifetimeSoft
	Allocations uint32  // Linux: packets
	Bytes       uint64
	AddTime     uint64 // seconds: a limit, or (current) the Unix time of the add
	UseTime     uint64 // seconds: a limit, or (current) the Unix time of first use
}

func (e *Lifetime) Type(*Dialect) ExtType { return e.T }

func (e *Lifetime) appendBody(d *Dialect, b []byte) ([]byte, error) {
	b = d.Order.AppendUint32(b, e.Allocations)
	b = d.Order.AppendUint64(b, e.Bytes)
	b = d.Order.AppendUint64(b, e.AddTime)
	return d.Order.AppendUint64(b, e.UseTime), nil
}

// Address is struct sadb_address and its sockaddr: an SA endpoint, a
// policy selector side (with prefix length, protocol and port), the
// proxy address, or a NAT-T original address.
type Address struct {
	T         ExtType // ExtAddressSrc, ExtAddressDst, ExtAddressProxy, or a dialect's NAT-T OA / NEW_ADDRESS
	Proto     uint8   // upper-layer protocol of a selector; ProtoAny for any
	PrefixLen uint8
	Addr      netip.AddrPort
}

func (e *Address) Type(*Dialect) ExtType { return e.T }

func (e *Address) appendBody(d *Dialect, b []byte) ([]byte, error) {
	if int(e.PrefixLen) > e.Addr.Addr().BitLen() {
		return nil, merr(e.T, "sadb_address_prefixlen", ErrPrefix, "/%d for %s", e.PrefixLen, e.Addr.Addr())
	}
	b = append(b, e.Proto, e.PrefixLen, 0, 0)
	b, err := d.appendSockaddr(b, e.Addr)
	if err != nil {
		return nil, merr(e.T, "sockaddr", err, "%v", e.Addr)
	}
	return b, nil
}

// Key is struct sadb_key and its key bits.
type Key struct {
	T    ExtType // ExtKeyAuth or ExtKeyEncrypt
	Bits uint16  // key length in bits; Data holds ceil(Bits/8) bytes
	Data []byte
}

func (e *Key) Type(*Dialect) ExtType { return e.T }

func (e *Key) appendBody(d *Dialect, b []byte) ([]byte, error) {
	if (int(e.Bits)+7)/8 != len(e.Data) {
		return nil, merr(e.T, "sadb_key_bits", ErrLength, "%d bits with %d bytes of key", e.Bits, len(e.Data))
	}
	b = d.Order.AppendUint16(b, e.Bits)
	b = append(b, 0, 0)
	return append(b, e.Data...), nil
}

// Identity is struct sadb_ident and its identity string.
type Identity struct {
	T         ExtType // ExtIdentitySrc or ExtIdentityDst
	IdentType uint16  // Ident*
	ID        uint64
	Data      []byte // the identity, NUL-padded on the wire
}

func (e *Identity) Type(*Dialect) ExtType { return e.T }

// String is the identity without its NUL padding.
func (e *Identity) String() string { return strings.TrimRight(string(e.Data), "\x00") }

func (e *Identity) appendBody(d *Dialect, b []byte) ([]byte, error) {
	b = d.Order.AppendUint16(b, e.IdentType)
	b = append(b, 0, 0)
	b = d.Order.AppendUint64(b, e.ID)
	return append(b, e.Data...), nil
}

// Sensitivity is struct sadb_sens and its bitmaps.
type Sensitivity struct {
	DPD         uint32
	SensLevel   uint8
	IntegLevel  uint8
	SensBitmap  []uint64
	IntegBitmap []uint64
}

func (*Sensitivity) Type(*Dialect) ExtType { return ExtSensitivity }

func (e *Sensitivity) appendBody(d *Dialect, b []byte) ([]byte, error) {
	if len(e.SensBitmap) > 255 || len(e.IntegBitmap) > 255 {
		return nil, merr(ExtSensitivity, "sadb_sens_sens_len", ErrValue, "bitmaps of %d and %d words", len(e.SensBitmap), len(e.IntegBitmap))
	}
	b = d.Order.AppendUint32(b, e.DPD)
	b = append(b, e.SensLevel, byte(len(e.SensBitmap)), e.IntegLevel, byte(len(e.IntegBitmap)))
	b = d.Order.AppendUint32(b, 0)
	for _, w := range e.SensBitmap {
		b = d.Order.AppendUint64(b, w)
	}
	for _, w := range e.IntegBitmap {
		b = d.Order.AppendUint64(b, w)
	}
	return b, nil
}

// Comb is struct sadb_comb, one algorithm combination of a proposal.
type Comb struct {
	Auth, Encrypt                  uint8
	Flags                          uint16
	AuthMinBits, AuthMaxBits       uint16
	EncryptMinBits, EncryptMaxBits uint16
	SoftAllocations                uint32
	HardAllocations                uint32
	SoftBytes, HardBytes           uint64
	SoftAddTime, HardAddTime       uint64
	SoftUseTime, HardUseTime       uint64
}

const combLen = 72

// Proposal is struct sadb_prop and its combinations (in ACQUIRE).
type Proposal struct {
	Replay uint8
	Combs  []Comb
}

func (*Proposal) Type(*Dialect) ExtType { return ExtProposal }

func (e *Proposal) appendBody(d *Dialect, b []byte) ([]byte, error) {
	b = append(b, e.Replay, 0, 0, 0)
	for _, c := range e.Combs {
		b = append(b, c.Auth, c.Encrypt)
		b = d.Order.AppendUint16(b, c.Flags)
		b = d.Order.AppendUint16(b, c.AuthMinBits)
		b = d.Order.AppendUint16(b, c.AuthMaxBits)
		b = d.Order.AppendUint16(b, c.EncryptMinBits)
		b = d.Order.AppendUint16(b, c.EncryptMaxBits)
		b = d.Order.AppendUint32(b, 0)
		b = d.Order.AppendUint32(b, c.SoftAllocations)
		b = d.Order.AppendUint32(b, c.HardAllocations)
		for _, v := range []uint64{c.SoftBytes, c.HardBytes, c.SoftAddTime, c.HardAddTime, c.SoftUseTime, c.HardUseTime} {
			b = d.Order.AppendUint64(b, v)
		}
	}
	return b, nil
}

// Alg is struct sadb_alg, one algorithm a kernel supports.
type Alg struct {
	ID               uint8
	IVLen            uint8
	MinBits, MaxBits uint16
}

// Supported is struct sadb_supported and its algorithms (REGISTER reply).
type Supported struct {
	T    ExtType // ExtSupportedAuth or ExtSupportedEncrypt
	Algs []Alg
}

func (e *Supported) Type(*Dialect) ExtType { return e.T }

func (e *Supported) appendBody(d *Dialect, b []byte) ([]byte, error) {
	b = d.Order.AppendUint32(b, 0)
	for _, a := range e.Algs {
		b = append(b, a.ID, a.IVLen)
		b = d.Order.AppendUint16(b, a.MinBits)
		b = d.Order.AppendUint16(b, a.MaxBits)
		b = d.Order.AppendUint16(b, 0)
	}
	return b, nil
}

// SPIRange is struct sadb_spirange (GETSPI).
type SPIRange struct {
	Min, Max uint32
}

func (*SPIRange) Type(*Dialect) ExtType { return ExtSPIRange }

func (e *SPIRange) appendBody(d *Dialect, b []byte) ([]byte, error) {
	b = d.Order.AppendUint32(b, e.Min)
	b = d.Order.AppendUint32(b, e.Max)
	return d.Order.AppendUint32(b, 0), nil
}

// KMPrivate is struct sadb_x_kmprivate and whatever a key manager put
// after it.
type KMPrivate struct {
	Data []byte
}

func (*KMPrivate) Type(*Dialect) ExtType { return ExtKMPrivate }

func (e *KMPrivate) appendBody(d *Dialect, b []byte) ([]byte, error) {
	b = d.Order.AppendUint32(b, 0)
	return append(b, e.Data...), nil
}

// Request is struct sadb_x_ipsecrequest: one SA template of a policy.
// Src and Dst are set in tunnel mode (and for MIGRATE) and unset
// otherwise.
type Request struct {
	Proto    uint16 // IPPROTO_ESP, _AH, _COMP
	Mode     uint8  // Mode*
	Level    uint8  // Level*
	ReqID    uint32 // 16 bits wide on KAME kernels
	Src, Dst netip.AddrPort
}

// Policy is struct sadb_x_policy and its requests.
type Policy struct {
	PolicyType uint16 // Policy*
	Dir        uint8  // Dir*
	// Reserved is sadb_x_policy_reserved: FreeBSD's scope, NetBSD's flags.
	Reserved uint8
	ID       uint32
	// Priority is sadb_x_policy_priority on Linux and FreeBSD,
	// sadb_x_policy_reserved2 on NetBSD and XNU.
	Priority uint32
	Requests []Request
}

func (*Policy) Type(*Dialect) ExtType { return ExtPolicy }

func (e *Policy) appendBody(d *Dialect, b []byte) ([]byte, error) {
	b = d.Order.AppendUint16(b, e.PolicyType)
	b = append(b, e.Dir, e.Reserved)
	b = d.Order.AppendUint32(b, e.ID)
	b = d.Order.AppendUint32(b, e.Priority)
	for i, r := range e.Requests {
		var err error
		if b, err = d.appendRequest(b, &r); err != nil {
			err.(*MarshalError).Field = "sadb_x_ipsecrequest[" + itoa(i) + "]." + err.(*MarshalError).Field
			return nil, err
		}
	}
	return b, nil
}

func (d *Dialect) appendRequest(b []byte, r *Request) ([]byte, error) {
	start := len(b)
	b = d.Order.AppendUint16(b, 0) // length, set below
	b = d.Order.AppendUint16(b, r.Proto)
	b = append(b, r.Mode, r.Level)
	if d.RequestLen == 16 {
		b = d.Order.AppendUint16(b, 0)
		b = d.Order.AppendUint32(b, r.ReqID)
		b = d.Order.AppendUint32(b, 0)
	} else {
		if r.ReqID > 0xffff {
			return nil, merr(ExtPolicy, "reqid", ErrValue, "%#x does not fit this kernel's 16-bit field", r.ReqID)
		}
		b = d.Order.AppendUint16(b, uint16(r.ReqID))
	}
	if r.Src.IsValid() || r.Dst.IsValid() {
		if r.Src.Addr().Is4() != r.Dst.Addr().Is4() || !r.Src.IsValid() || !r.Dst.IsValid() {
			return nil, merr(ExtPolicy, "addresses", ErrFamily, "%v -> %v", r.Src, r.Dst)
		}
		var err error
		if b, err = d.appendSockaddr(b, r.Src); err != nil {
			return nil, merr(ExtPolicy, "src", err, "%v", r.Src)
		}
		if b, err = d.appendSockaddr(b, r.Dst); err != nil {
			return nil, merr(ExtPolicy, "dst", err, "%v", r.Dst)
		}
	}
	for (len(b)-start)%8 != 0 {
		b = append(b, 0)
	}
	d.Order.PutUint16(b[start:], uint16(len(b)-start)) // bytes, not 64-bit units
	return b, nil
}

// SA2 is struct sadb_x_sa2: mode and reqid of an SA.
type SA2 struct {
	Mode uint8
	// Reserved1 and Reserved2 are reserved on Linux; XNU uses them for
	// alwaysexpire and flags.
	Reserved1 uint8
	Reserved2 uint16
	Sequence  uint32
	ReqID     uint32
}

func (*SA2) Type(*Dialect) ExtType { return ExtSA2 }

func (e *SA2) appendBody(d *Dialect, b []byte) ([]byte, error) {
	b = append(b, e.Mode, e.Reserved1)
	b = d.Order.AppendUint16(b, e.Reserved2)
	b = d.Order.AppendUint32(b, e.Sequence)
	return d.Order.AppendUint32(b, e.ReqID), nil
}

// NATTType is struct sadb_x_nat_t_type.
type NATTType struct {
	EncapType uint8 // NATTypeESPInUDP
}

func (*NATTType) Type(d *Dialect) ExtType { return d.ExtNATTType }

func (e *NATTType) appendBody(d *Dialect, b []byte) ([]byte, error) {
	return append(b, e.EncapType, 0, 0, 0), nil
}

// NATTPort is struct sadb_x_nat_t_port (source or destination).
type NATTPort struct {
	Dst  bool // SADB_X_EXT_NAT_T_DPORT rather than _SPORT
	Port uint16
}

func (e *NATTPort) Type(d *Dialect) ExtType {
	if e.Dst {
		return d.ExtNATTDport
	}
	return d.ExtNATTSport
}

func (e *NATTPort) appendBody(d *Dialect, b []byte) ([]byte, error) {
	b = binary.BigEndian.AppendUint16(b, e.Port)
	return append(b, 0, 0), nil
}

// NATTFrag is struct sadb_x_nat_t_frag (KAME).
type NATTFrag struct {
	FragLen uint16
}

func (*NATTFrag) Type(d *Dialect) ExtType { return d.ExtNATTFrag }

func (e *NATTFrag) appendBody(d *Dialect, b []byte) ([]byte, error) {
	b = d.Order.AppendUint16(b, e.FragLen)
	return append(b, 0, 0), nil
}

// SAReplay is FreeBSD's struct sadb_x_sa_replay: a replay window in
// packets, for windows wider than sadb_sa_replay can say.
type SAReplay struct {
	Replay uint32
}

func (*SAReplay) Type(d *Dialect) ExtType { return d.ExtSAReplay }

func (e *SAReplay) appendBody(d *Dialect, b []byte) ([]byte, error) {
	return d.Order.AppendUint32(b, e.Replay), nil
}

// KMAddress is Linux's struct sadb_x_kmaddress: the addresses IKE uses,
// carried by MIGRATE.
type KMAddress struct {
	Reserved      uint32
	Local, Remote netip.Addr
}

func (*KMAddress) Type(d *Dialect) ExtType { return d.ExtKMAddress }

func (e *KMAddress) appendBody(d *Dialect, b []byte) ([]byte, error) {
	if !e.Local.IsValid() || !e.Remote.IsValid() || e.Local.Is4() != e.Remote.Is4() {
		return nil, merr(d.ExtKMAddress, "addresses", ErrFamily, "%v, %v", e.Local, e.Remote)
	}
	b = d.Order.AppendUint32(b, e.Reserved)
	b, _ = d.appendSockaddr(b, netip.AddrPortFrom(e.Local, 0))
	return d.appendSockaddr(b, netip.AddrPortFrom(e.Remote, 0))
}

// SecCtx is Linux's struct sadb_x_sec_ctx and its LSM context.
type SecCtx struct {
	Alg, DOI uint8
	Ctx      []byte
}

func (*SecCtx) Type(d *Dialect) ExtType { return d.ExtSecCtx }

func (e *SecCtx) appendBody(d *Dialect, b []byte) ([]byte, error) {
	if len(e.Ctx) > 0xffff {
		return nil, merr(d.ExtSecCtx, "sadb_x_ctx_len", ErrValue, "%d bytes", len(e.Ctx))
	}
	b = append(b, e.Alg, e.DOI)
	b = d.Order.AppendUint16(b, uint16(len(e.Ctx)))
	return append(b, e.Ctx...), nil
}

// Filter is Linux's struct sadb_x_filter: restricts a DUMP to addresses.
type Filter struct {
	Src, Dst     netip.Addr // IPv4 or IPv6; the family comes from Src
	SPLen, DPLen uint8
}

func (*Filter) Type(d *Dialect) ExtType { return d.ExtFilter }

func (e *Filter) appendBody(d *Dialect, b []byte) ([]byte, error) {
	put := func(a netip.Addr) {
		var v [16]byte
		if a.Is4() {
			a4 := a.As4()
			copy(v[:], a4[:])
		} else if a.IsValid() {
			v = a.As16()
		}
		b = append(b, v[:]...)
	}
	if !e.Src.IsValid() || !e.Dst.IsValid() || e.Src.Is4() != e.Dst.Is4() {
		return nil, merr(d.ExtFilter, "addresses", ErrFamily, "%v, %v", e.Src, e.Dst)
	}
	put(e.Src)
	put(e.Dst)
	fam := d.AFInet
	if e.Src.Is6() {
		fam = d.AFInet6
	}
	b = d.Order.AppendUint16(b, fam)
	return append(b, e.SPLen, e.DPLen), nil
}

// Raw is an extension the dialect does not define, kept as bytes so a
// message round-trips.
type Raw struct {
	T    ExtType
	Data []byte // everything after sadb_ext, padding included
}

func (e *Raw) Type(*Dialect) ExtType { return e.T }

func (e *Raw) appendBody(d *Dialect, b []byte) ([]byte, error) { return append(b, e.Data...), nil }
