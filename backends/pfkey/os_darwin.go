package pfkey

import (
	"github.com/keyplane/keyplane/backends/pfkey/sadb"
	"github.com/keyplane/keyplane/kernelops"
	"golang.org/x/sys/unix"
)

// XNU's PF_KEY (bsd/netkey/key.c). Verified by build only.
var host = &osInfo{
	name:    "darwin",
	dialect: &sadb.Darwin,
	family:  29, // pseudo_AF_KEY, bsd/sys/socket.h
	missing: "the kernel refused a PF_KEY socket (it needs root)",

	caps: commonCaps | kernelops.CapPolicyLifetime,
	notes: map[kernelops.Cap]string{
		kernelops.CapESN:             "XNU's pfkeyv2.h has no ESN flag",
		kernelops.CapUDPEncap:        "XNU carries NAT-T in its private sadb_sa_2 and a global ESP-in-UDP port, not the KAME NAT_T extensions; not implemented",
		kernelops.CapSockets:         "NAT-T sockets need XNU's private ESP-in-UDP setup; IKE sockets are not implemented on Darwin",
		kernelops.CapLifetimePackets: "KAME's sadb_lifetime_allocations counts SA lookups, not packets",
		kernelops.CapCounters:        "XNU's current lifetime counts bytes but not packets",
		kernelops.CapPolicyPriority:  "XNU's sadb_x_policy has no priority: the SPD keeps insertion order",
		kernelops.CapMappingEvents:   "XNU has no SADB_X_NAT_T_NEW_MAPPING",
		kernelops.CapMigrateEvents:   "XNU's SADB_MIGRATE carries Apple's own extensions; not implemented",
		kernelops.CapMigrate:         "XNU's SADB_MIGRATE carries Apple's own extensions; not implemented",
		kernelops.CapSync:            "PF_KEY cannot read or set replay state",
	},

	maxReplay:    255 * 8,
	packetLimits: false,
	forwardDir:   false,
	saReqIDMax:   0xffffffff,

	ipsecPolicy4: unix.IP_IPSEC_POLICY,   // 21
	ipsecPolicy6: unix.IPV6_IPSEC_POLICY, // 28
}

// soRError: XNU has no SO_RERROR; a PF_KEY overflow cannot be detected.
const soRError = 0

func init() { kernelops.Register(Name, Open) }
