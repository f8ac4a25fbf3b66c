package pfkey

import (
	"github.com/keyplane/keyplane/backends/pfkey/sadb"
	"github.com/keyplane/keyplane/kernelops"
	"golang.org/x/sys/unix"
)

// FreeBSD's PF_KEY (sys/netipsec/key.c, keysock.c). Verified by build
// only: the project's lab runs Linux.
var host = &osInfo{
	name:    "freebsd",
	dialect: &sadb.FreeBSD,
	family:  27, // pseudo_AF_KEY, sys/sys/socket.h (x/sys/unix has no AF_KEY here)
	missing: "the kernel has no PF_KEY sockets: load ipsec.ko (options IPSEC)",

	caps: commonCaps | kernelops.CapSockets | kernelops.CapESN | kernelops.CapUDPEncap |
		kernelops.CapPolicyPriority | kernelops.CapPolicyLifetime,
	notes: map[kernelops.Cap]string{
		kernelops.CapLifetimePackets: "KAME's sadb_lifetime_allocations counts SA lookups, not packets, and FreeBSD does not expire on it",
		kernelops.CapCounters:        "FreeBSD's current lifetime counts bytes but not packets",
		kernelops.CapMappingEvents:   "FreeBSD has no SADB_X_NAT_T_NEW_MAPPING (SADB_MAX is SADB_X_SPDDELETE2)",
		kernelops.CapMigrateEvents:   "FreeBSD has no SADB_X_MIGRATE",
		kernelops.CapMigrate:         "FreeBSD has no SADB_X_MIGRATE",
		kernelops.CapSync:            "PF_KEY cannot read or set replay state",
	},

	// key.c: SADB_X_EXT_SA_REPLAY (packets) up to UINT32_MAX - 32,
	// kept in whole bytes of bitmap.
	maxReplay:    (0xffffffff - 32) &^ 7,
	packetLimits: false,
	forwardDir:   false,
	saReqIDMax:   0xffffffff,

	ipsecPolicy4:  unix.IP_IPSEC_POLICY,   // 21
	ipsecPolicy6:  unix.IPV6_IPSEC_POLICY, // 28
	udpEncapLevel: unix.IPPROTO_UDP,
	udpEncapOpt:   1, // UDP_ENCAP, netinet/udp.h; UDP_ENCAP_ESPINUDP is 2
}

// soRError is SO_RERROR (FreeBSD 13+).
const soRError = unix.SO_RERROR

func init() { kernelops.Register(Name, Open) }
