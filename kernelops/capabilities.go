package kernelops

import (
	"fmt"
	"strings"
)

// Cap is one capability of a dataplane. Capabilities are claims the
// conformance suite tests hard; a missing one must make the matching call
// fail with ErrNotSupported.
type Cap uint64

const (
	// Facets.
	CapSAD            Cap = 1 << iota // SAD facet
	CapSPD                            // SPD facet
	CapEvents                         // EventSource facet
	CapSockets                        // IKE sockets with per-socket IPsec bypass
	CapAddrSelect                     // RouteTo / Interfaces
	CapChangeEvents                   // address, link and route events
	CapAddrManage                     // AddAddress/RemoveAddress
	CapHoles                          // IKE-port and IPv6 ND bypass policies
	CapOffload                        // hardware offload detection and install
	CapSync                           // xfrm_sync: thresholds, GetSyncState/SetSyncState, SyncEvents, SA.Sync on add
	CapIdle                           // IdleWatcher
	CapMigrate                        // Migrator
	CapXfrmInterfaces                 // route-based xfrm interfaces
	CapBatch                          // Batcher with requests in flight

	// SA and policy features.
	CapTrap               // ActionTrap policies raise AcquireEvents
	CapLifetimeTime       // add/use-time lifetimes fire expires
	CapLifetimeBytes      // byte lifetimes fire expires
	CapLifetimePackets    // packet lifetimes fire expires
	CapSoftwareLifetimes  // lifetimes are enforced by keyplane, not the dataplane (informational)
	CapLastUsed           // Counters.LastUsed is filled
	CapLastUsedAllTraffic // ... and moves on every packet (XFRM >= 6.2), not just at first use
	CapESN                // 64-bit extended sequence numbers
	CapUDPEncap           // ESP-in-UDP (NAT-T)
	CapTunnelMode         // tunnel-mode SAs
	CapTransportMode      // transport-mode SAs
	CapMarks              // SA/policy marks
	CapIfID               // SA/policy interface ids
	CapSADir              // SAs record their direction
	CapPolicyPriority     // explicit policy priorities are honoured
	CapPolicyLifetime     // policy lifetimes raise PolicyExpireEvents
	CapMappingEvents      // MappingEvents for NAT-T SAs
	CapMigrateEvents      // MigrateEvents
	CapKeysReadable       // GetSA/SAs return key material
	CapCounters           // Counters.Bytes/Packets move with traffic

	capEnd
)

var capNames = []string{
	"sad", "spd", "events", "sockets", "addr-select", "change-events", "addr-manage",
	"holes", "offload", "sync", "idle", "migrate", "xfrm-interfaces", "batch",
	"trap", "lifetime-time", "lifetime-bytes", "lifetime-packets", "software-lifetimes",
	"last-used", "last-used-all-traffic", "esn", "udp-encap", "tunnel-mode",
	"transport-mode", "marks", "if-id", "sa-dir", "policy-priority", "policy-lifetime",
	"mapping-events", "migrate-events", "keys-readable", "counters",
}

// AllCaps lists every capability, in order.
func AllCaps() []Cap {
	out := make([]Cap, 0, len(capNames))
	for c := Cap(1); c < capEnd; c <<= 1 {
		out = append(out, c)
	}
	return out
}

func (c Cap) String() string {
	var parts []string
	for i, n := range capNames {
		if c&(1<<i) != 0 {
			parts = append(parts, n)
		}
	}
	if len(parts) == 0 {
		return fmt.Sprintf("cap(%#x)", uint64(c))
	}
	return strings.Join(parts, "|")
}

// ParseCap reads a capability name as printed by String.
func ParseCap(s string) (Cap, bool) {
	for i, n := range capNames {
		if n == s {
			return 1 << i, true
		}
	}
	return 0, false
}

// Capabilities is what an open dataplane can do, as it really is (the
// running kernel's version and modules, the VPP build), not what the
// backend's code could do on a better day.
type Capabilities struct {
	Caps       Cap
	Algorithms AlgorithmSet
	// MaxReplayWindow is the largest anti-replay window in packets.
	MaxReplayWindow uint32
	// SPIMin and SPIMax bound AllocSPI when the request gives no range.
	SPIMin, SPIMax uint32
	// Notes explain absent or limited capabilities, for humans and skip
	// messages: Notes[CapTrap] = "VPP raises no acquire".
	Notes map[Cap]string
}

// Has reports whether every capability in c is present.
func (c Capabilities) Has(x Cap) bool { return c.Caps&x == x }

// Why returns the note for a capability, or a generic sentence.
func (c Capabilities) Why(x Cap) string {
	if n, ok := c.Notes[x]; ok {
		return n
	}
	if c.Has(x) {
		return "supported"
	}
	return "not supported by this dataplane"
}

// Require returns a *Error wrapping ErrNotSupported unless c has x.
func (c Capabilities) Require(backend, op string, x Cap) error {
	if c.Has(x) {
		return nil
	}
	return NotSupported(backend, op, fmt.Sprintf("capability %s: %s", x, c.Why(x)))
}
