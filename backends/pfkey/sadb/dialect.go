package sadb

import (
	"encoding/binary"

	"github.com/keyplane/keyplane/kernelops"
)

// ByteOrder reads and appends integers; binary.NativeEndian, LittleEndian
// and BigEndian all are one.
type ByteOrder interface {
	binary.ByteOrder
	binary.AppendByteOrder
}

// SockaddrStyle is how a kernel lays out struct sockaddr.
type SockaddrStyle uint8

const (
	// SockaddrLinux: sa_family is a host-order uint16; no length byte.
	SockaddrLinux SockaddrStyle = iota
	// SockaddrBSD: sa_len (uint8) then sa_family (uint8).
	SockaddrBSD
)

// Dialect is what one kernel's PF_KEY differs in. Zero extension or
// message types mean "this kernel has no such thing"; the codec then
// treats the number as unknown (kept raw on parse, refused on marshal).
type Dialect struct {
	Name string
	// Order is the kernel's byte order for integers: host order. The
	// dialect values use binary.NativeEndian; tests pin one.
	Order ByteOrder

	Sockaddr SockaddrStyle
	AFInet   uint16 // AF_INET
	AFInet6  uint16 // AF_INET6 (10 Linux, 28 FreeBSD, 24 NetBSD, 30 Darwin)

	// RequestLen is sizeof(struct sadb_x_ipsecrequest): 16 on Linux
	// (32-bit reqid and two reserved fields), 8 on KAME kernels (16-bit
	// reqid).
	RequestLen int
	// ReplayInBytes: sadb_sa_replay counts bytes of bitmap (8 packets
	// each) on KAME kernels; Linux counts packets.
	ReplayInBytes bool
	// FlagESN is the sadb_sa_flags bit that turns on extended sequence
	// numbers; 0 when the kernel has none.
	FlagESN uint32

	// Message types past SADB_X_SPDDELETE2.
	MsgNATTNewMapping MsgType
	MsgMigrate        MsgType
	MsgMax            MsgType

	// Extension types past SADB_X_EXT_SA2.
	ExtNATTType      ExtType
	ExtNATTSport     ExtType
	ExtNATTDport     ExtType
	ExtNATTOA        ExtType // NAT_T_OA, NAT_T_OAI on the BSDs
	ExtNATTOAR       ExtType
	ExtNATTFrag      ExtType
	ExtSecCtx        ExtType
	ExtKMAddress     ExtType
	ExtFilter        ExtType
	ExtSAReplay      ExtType
	ExtNewAddressSrc ExtType
	ExtNewAddressDst ExtType
	ExtMax           ExtType

	// Algorithms: IKEv2 transform id to this kernel's SADB_*ALG_* id.
	Encr []EncrAlg
	Auth []AuthAlg
	// EncrNull is SADB_EALG_NULL (11, or 3 on Darwin): a NULL cipher
	// takes no key.
	EncrNull uint8
}

// EncrAlg maps an IKEv2 encryption transform to a kernel's sadb_sa_encrypt.
type EncrAlg struct {
	ID   kernelops.EncrID
	SADB uint8
}

// AuthAlg maps an IKEv2 integrity transform to a kernel's sadb_sa_auth.
type AuthAlg struct {
	ID   kernelops.IntegID
	SADB uint8
}

// EncrToSADB returns the kernel's id for e.
func (d *Dialect) EncrToSADB(e kernelops.EncrID) (uint8, bool) {
	for _, a := range d.Encr {
		if a.ID == e {
			return a.SADB, true
		}
	}
	return 0, false
}

// EncrFromSADB returns the IKEv2 transform for a kernel id.
func (d *Dialect) EncrFromSADB(v uint8) (kernelops.EncrID, bool) {
	for _, a := range d.Encr {
		if a.SADB == v {
			return a.ID, true
		}
	}
	return 0, false
}

// AuthToSADB returns the kernel's id for i.
func (d *Dialect) AuthToSADB(i kernelops.IntegID) (uint8, bool) {
	for _, a := range d.Auth {
		if a.ID == i {
			return a.SADB, true
		}
	}
	return 0, false
}

// AuthFromSADB returns the IKEv2 transform for a kernel id.
func (d *Dialect) AuthFromSADB(v uint8) (kernelops.IntegID, bool) {
	for _, a := range d.Auth {
		if a.SADB == v {
			return a.ID, true
		}
	}
	return 0, false
}

// kind is how the codec decodes an extension number in a dialect.
type kind uint8

const (
	kUnknown kind = iota
	kSA
	kLifetime
	kAddress
	kKey
	kIdentity
	kSensitivity
	kProposal
	kSupported
	kSPIRange
	kKMPrivate
	kPolicy
	kSA2
	kNATTType
	kNATTPort
	kNATTFrag
	kSecCtx
	kKMAddress
	kFilter
	kSAReplay
)

func (d *Dialect) kind(t ExtType) kind {
	switch t {
	case ExtReserved:
		return kUnknown
	case ExtSA:
		return kSA
	case ExtLifetimeCurrent, ExtLifetimeHard, ExtLifetimeSoft:
		return kLifetime
	case ExtAddressSrc, ExtAddressDst, ExtAddressProxy:
		return kAddress
	case ExtKeyAuth, ExtKeyEncrypt:
		return kKey
	case ExtIdentitySrc, ExtIdentityDst:
		return kIdentity
	case ExtSensitivity:
		return kSensitivity
	case ExtProposal:
		return kProposal
	case ExtSupportedAuth, ExtSupportedEncrypt:
		return kSupported
	case ExtSPIRange:
		return kSPIRange
	case ExtKMPrivate:
		return kKMPrivate
	case ExtPolicy:
		return kPolicy
	case ExtSA2:
		return kSA2
	}
	for _, m := range []struct {
		t ExtType
		k kind
	}{
		{d.ExtNATTType, kNATTType}, {d.ExtNATTSport, kNATTPort}, {d.ExtNATTDport, kNATTPort},
		{d.ExtNATTOA, kAddress}, {d.ExtNATTOAR, kAddress}, {d.ExtNATTFrag, kNATTFrag},
		{d.ExtSecCtx, kSecCtx}, {d.ExtKMAddress, kKMAddress}, {d.ExtFilter, kFilter},
		{d.ExtSAReplay, kSAReplay}, {d.ExtNewAddressSrc, kAddress}, {d.ExtNewAddressDst, kAddress},
	} {
		if m.t != 0 && m.t == t {
			return m.k
		}
	}
	return kUnknown
}

// ExtName names an extension type in this dialect.
func (d *Dialect) ExtName(t ExtType) string {
	names := map[ExtType]string{
		ExtSA: "SA", ExtLifetimeCurrent: "LIFETIME_CURRENT", ExtLifetimeHard: "LIFETIME_HARD",
		ExtLifetimeSoft: "LIFETIME_SOFT", ExtAddressSrc: "ADDRESS_SRC", ExtAddressDst: "ADDRESS_DST",
		ExtAddressProxy: "ADDRESS_PROXY", ExtKeyAuth: "KEY_AUTH", ExtKeyEncrypt: "KEY_ENCRYPT",
		ExtIdentitySrc: "IDENTITY_SRC", ExtIdentityDst: "IDENTITY_DST", ExtSensitivity: "SENSITIVITY",
		ExtProposal: "PROPOSAL", ExtSupportedAuth: "SUPPORTED_AUTH", ExtSupportedEncrypt: "SUPPORTED_ENCRYPT",
		ExtSPIRange: "SPIRANGE", ExtKMPrivate: "X_KMPRIVATE", ExtPolicy: "X_POLICY", ExtSA2: "X_SA2",
	}
	if n, ok := names[t]; ok {
		return n
	}
	for _, m := range []struct {
		t ExtType
		n string
	}{
		{d.ExtNATTType, "X_NAT_T_TYPE"}, {d.ExtNATTSport, "X_NAT_T_SPORT"}, {d.ExtNATTDport, "X_NAT_T_DPORT"},
		{d.ExtNATTOA, "X_NAT_T_OA"}, {d.ExtNATTOAR, "X_NAT_T_OAR"}, {d.ExtNATTFrag, "X_NAT_T_FRAG"},
		{d.ExtSecCtx, "X_SEC_CTX"}, {d.ExtKMAddress, "X_KMADDRESS"}, {d.ExtFilter, "X_FILTER"},
		{d.ExtSAReplay, "X_SA_REPLAY"}, {d.ExtNewAddressSrc, "X_NEW_ADDRESS_SRC"},
		{d.ExtNewAddressDst, "X_NEW_ADDRESS_DST"},
	} {
		if m.t != 0 && m.t == t {
			return m.n
		}
	}
	return "EXT_" + itoa(int(t))
}

// MsgName names a message type in this dialect.
func (d *Dialect) MsgName(t MsgType) string {
	switch {
	case t != 0 && t == d.MsgNATTNewMapping:
		return "SADB_X_NAT_T_NEW_MAPPING"
	case t != 0 && t == d.MsgMigrate:
		return "SADB_X_MIGRATE"
	}
	return t.String()
}

// sockaddrLen is the size of the sockaddr for an address family, 0 for
// one the codec does not know.
func (d *Dialect) sockaddrLen(family uint16) int {
	switch family {
	case d.AFInet:
		return 16
	case d.AFInet6:
		return 28
	}
	return 0
}

func itoa(n int) string {
	if n == 0 {
		return "0"
	}
	var b [20]byte
	i := len(b)
	neg := n < 0
	if neg {
		n = -n
	}
	for n > 0 {
		i--
		b[i] = byte('0' + n%10)
		n /= 10
	}
	if neg {
		i--
		b[i] = '-'
	}
	return string(b[i:])
}
