package sadb

import "fmt"

// Version is PF_KEY_V2, the only version there is (RFC 2367 §2.3.1).
const Version = 2

// HeaderLen is sizeof(struct sadb_msg); ExtHeaderLen sizeof(struct sadb_ext).
const (
	HeaderLen    = 16
	ExtHeaderLen = 4
	// MaxLen is the longest message sadb_msg_len (uint16 of 64-bit
	// units) can describe.
	MaxLen = 0xffff * 8
)

// MsgType is sadb_msg_type. Types 1..22 are the same in RFC 2367 and every
// KAME-derived kernel; later ones differ and live in [Dialect].
type MsgType uint8

const (
	MsgReserved   MsgType = 0
	MsgGetSPI     MsgType = 1
	MsgUpdate     MsgType = 2
	MsgAdd        MsgType = 3
	MsgDelete     MsgType = 4
	MsgGet        MsgType = 5
	MsgAcquire    MsgType = 6
	MsgRegister   MsgType = 7
	MsgExpire     MsgType = 8
	MsgFlush      MsgType = 9
	MsgDump       MsgType = 10
	MsgPromisc    MsgType = 11 // SADB_X_PROMISC
	MsgPChange    MsgType = 12 // SADB_X_PCHANGE
	MsgSPDUpdate  MsgType = 13 // SADB_X_SPDUPDATE
	MsgSPDAdd     MsgType = 14 // SADB_X_SPDADD
	MsgSPDDelete  MsgType = 15 // SADB_X_SPDDELETE: by selector
	MsgSPDGet     MsgType = 16 // SADB_X_SPDGET: by policy id
	MsgSPDAcquire MsgType = 17 // SADB_X_SPDACQUIRE
	MsgSPDDump    MsgType = 18 // SADB_X_SPDDUMP
	MsgSPDFlush   MsgType = 19 // SADB_X_SPDFLUSH
	MsgSPDSetIdx  MsgType = 20 // SADB_X_SPDSETIDX
	MsgSPDExpire  MsgType = 21 // SADB_X_SPDEXPIRE
	MsgSPDDelete2 MsgType = 22 // SADB_X_SPDDELETE2: by policy id
)

var msgNames = [...]string{"RESERVED", "GETSPI", "UPDATE", "ADD", "DELETE", "GET", "ACQUIRE",
	"REGISTER", "EXPIRE", "FLUSH", "DUMP", "X_PROMISC", "X_PCHANGE", "X_SPDUPDATE", "X_SPDADD",
	"X_SPDDELETE", "X_SPDGET", "X_SPDACQUIRE", "X_SPDDUMP", "X_SPDFLUSH", "X_SPDSETIDX",
	"X_SPDEXPIRE", "X_SPDDELETE2"}

func (t MsgType) String() string {
	if int(t) < len(msgNames) {
		return "SADB_" + msgNames[t]
	}
	return fmt.Sprintf("SADB_%d", uint8(t))
}

// ExtType is sadb_ext_type. Types 1..19 are common to RFC 2367, KAME and
// Linux; later ones differ and live in [Dialect].
type ExtType uint16

const (
	ExtReserved         ExtType = 0
	ExtSA               ExtType = 1
	ExtLifetimeCurrent  ExtType = 2
	ExtLifetimeHard     ExtType = 3
	ExtLifetimeSoft     ExtType = 4
	ExtAddressSrc       ExtType = 5
	ExtAddressDst       ExtType = 6
	ExtAddressProxy     ExtType = 7
	ExtKeyAuth          ExtType = 8
	ExtKeyEncrypt       ExtType = 9
	ExtIdentitySrc      ExtType = 10
	ExtIdentityDst      ExtType = 11
	ExtSensitivity      ExtType = 12
	ExtProposal         ExtType = 13
	ExtSupportedAuth    ExtType = 14
	ExtSupportedEncrypt ExtType = 15
	ExtSPIRange         ExtType = 16
	ExtKMPrivate        ExtType = 17 // SADB_X_EXT_KMPRIVATE
	ExtPolicy           ExtType = 18 // SADB_X_EXT_POLICY
	ExtSA2              ExtType = 19 // SADB_X_EXT_SA2
)

// SAType is sadb_msg_satype.
type SAType uint8

const (
	SATypeUnspec SAType = 0
	SATypeAH     SAType = 2
	SATypeESP    SAType = 3
	SATypeIPComp SAType = 9 // SADB_X_SATYPE_IPCOMP
)

func (t SAType) String() string {
	switch t {
	case SATypeUnspec:
		return "unspec"
	case SATypeAH:
		return "ah"
	case SATypeESP:
		return "esp"
	case SATypeIPComp:
		return "ipcomp"
	}
	return fmt.Sprintf("satype(%d)", uint8(t))
}

// SA states (sadb_sa_state).
const (
	StateLarval uint8 = 0
	StateMature uint8 = 1
	StateDying  uint8 = 2
	StateDead   uint8 = 3
)

// IPsec modes (IPSEC_MODE_* in ipsec.h; sadb_x_sa2_mode, ipsecrequest mode).
const (
	ModeAny       uint8 = 0
	ModeTransport uint8 = 1
	ModeTunnel    uint8 = 2
)

// Policy directions (IPSEC_DIR_*; sadb_x_policy_dir).
const (
	DirAny      uint8 = 0
	DirInbound  uint8 = 1
	DirOutbound uint8 = 2
	DirForward  uint8 = 3 // Linux only
)

// Policy types (IPSEC_POLICY_*; sadb_x_policy_type).
const (
	PolicyDiscard uint16 = 0
	PolicyNone    uint16 = 1
	PolicyIPsec   uint16 = 2
	PolicyEntrust uint16 = 3
	PolicyBypass  uint16 = 4
)

// Request levels (IPSEC_LEVEL_*; sadb_x_ipsecrequest_level).
const (
	LevelDefault uint8 = 0
	LevelUse     uint8 = 1
	LevelRequire uint8 = 2
	LevelUnique  uint8 = 3
)

// ManualReqIDMax is IPSEC_MANUAL_REQID_MAX: KAME kernels and Linux af_key
// replace a larger reqid in a policy request (level unique) with one they
// generate themselves.
const ManualReqIDMax = 0x3fff

// ProtoAny is IPSEC_ULPROTO_ANY: "any upper-layer protocol" in
// sadb_address_proto of a policy selector.
const ProtoAny = 255

// NATTypeESPInUDP is UDP_ENCAP_ESPINUDP, the RFC 3948 encapsulation, for
// sadb_x_nat_t_type_type.
const NATTypeESPInUDP = 2

// Identity types (sadb_ident_type).
const (
	IdentPrefix   uint16 = 1
	IdentFQDN     uint16 = 2
	IdentUserFQDN uint16 = 3
)

// IP protocol numbers used in sadb_x_ipsecrequest_proto.
const (
	IPProtoESP    = 50
	IPProtoAH     = 51
	IPProtoIPComp = 108
)
