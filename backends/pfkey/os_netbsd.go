package pfkey

import (
	"github.com/keyplane/keyplane/backends/pfkey/sadb"
	"github.com/keyplane/keyplane/kernelops"
	"golang.org/x/sys/unix"
)

// NetBSD's PF_KEY (sys/netipsec/key.c). Verified by build only.
var host = &osInfo{
	name:    "netbsd",
	dialect: &sadb.NetBSD,
	family:  29, // pseudo_AF_KEY, sys/sys/socket.h
	missing: "the kernel has no PF_KEY sockets: build it with options IPSEC",

	caps: commonCaps | kernelops.CapSockets | kernelops.CapUDPEncap | kernelops.CapPolicyLifetime,
	notes: map[kernelops.Cap]string{
		kernelops.CapESN:             "NetBSD's pfkeyv2.h has no ESN flag",
		kernelops.CapLifetimePackets: "KAME's sadb_lifetime_allocations counts SA lookups, not packets",
		kernelops.CapCounters:        "NetBSD's current lifetime counts bytes but not packets",
		kernelops.CapPolicyPriority:  "NetBSD's sadb_x_policy has no priority (sadb_x_policy_reserved2): the SPD keeps insertion order",
		kernelops.CapMappingEvents:   "NetBSD defines SADB_X_NAT_T_NEW_MAPPING, but what its kernel sends in it is unverified here",
		kernelops.CapMigrateEvents:   "NetBSD's SADB_X_MIGRATE is #if 0",
		kernelops.CapMigrate:         "NetBSD's SADB_X_MIGRATE is #if 0",
		kernelops.CapSync:            "PF_KEY cannot read or set replay state",
	},

	maxReplay:    255 * 8, // sadb_sa_replay: up to 255 bytes of bitmap
	packetLimits: false,
	forwardDir:   false,
	saReqIDMax:   0xffff, // pfkeyv2.h: "topmost 16bits are always 0"

	ipsecPolicy4:  unix.IP_IPSEC_POLICY,   // 22
	ipsecPolicy6:  unix.IPV6_IPSEC_POLICY, // 28
	udpEncapLevel: unix.IPPROTO_UDP,
	udpEncapOpt:   100, // UDP_ENCAP, netinet/udp.h
}

// soRError is SO_RERROR, sys/sys/socket.h (NetBSD 9+); x/sys/unix lacks it.
const soRError = 0x4000

func init() { kernelops.Register(Name, Open) }
