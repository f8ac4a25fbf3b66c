//go:build vpp

package vpp

import "github.com/keyplane/keyplane/kernelops"

// capabilities states what this backend does against VPP 25.10.
func (b *driver) capabilities() kernelops.Capabilities {
	c := kernelops.Capabilities{
		Caps: kernelops.CapSAD | kernelops.CapSPD | kernelops.CapEvents | kernelops.CapAddrSelect |
			kernelops.CapChangeEvents | kernelops.CapAddrManage | kernelops.CapHoles | kernelops.CapMigrate |
			kernelops.CapESN | kernelops.CapUDPEncap | kernelops.CapTunnelMode | kernelops.CapTransportMode |
			kernelops.CapSADir | kernelops.CapPolicyPriority | kernelops.CapKeysReadable,
		Algorithms:      algorithms(),
		MaxReplayWindow: MaxReplayWindow,
		SPIMin:          b.opts.SPIMin,
		SPIMax:          b.opts.SPIMax,
		Notes: map[kernelops.Cap]string{
			kernelops.CapTrap: "VPP raises no acquire: its SPD has no trap action (RESOLVE is unimplemented), " +
				"so on-demand tunnels need the engine to initiate",
			kernelops.CapSockets: "IKE sockets live on the host; getting IKE from VPP to them (punt socket or " +
				"linux-cp) is not wired in this backend",
			kernelops.CapOffload: "VPP picks crypto engines itself; its IPsec API has no per-SA device offload",
			kernelops.CapSync:    "VPP has no API to read or set an SA's replay state",
			kernelops.CapMarks:   "VPP SAs and policies have no marks",
			kernelops.CapIfID:    "VPP has no XFRM interface ids (its route-based tunnels, ipsec_itf, are not wired)",
			kernelops.CapXfrmInterfaces: "route-based VPP tunnels (ipsec_itf + tunnel protect) are not wired " +
				"in this backend",
			kernelops.CapBatch:          "requests go one at a time over the API socket",
			kernelops.CapPolicyLifetime: "VPP policies have no lifetimes",
			kernelops.CapMappingEvents:  "VPP does not report NAT mapping changes",
			kernelops.CapMigrateEvents:  "VPP does not report migrations",
			kernelops.CapChangeEvents: "links from VPP's sw_interface_event; addresses from keyplane's own changes " +
				"and an ip_address_dump poll (addr-poll), since VPP sends no address events; no route events",
			kernelops.CapSADir: "inferred when SA.Dir is unset: inbound for an SPI from AllocSPI or a local destination",
		},
	}
	if b.p.statsSocket != "" {
		c.Caps |= kernelops.CapCounters | kernelops.CapLastUsed | kernelops.CapLastUsedAllTraffic
		c.Notes[kernelops.CapLastUsed] = "derived: VPP keeps no last-used time, keyplane sets it when an SA's " +
			"stats-segment counter moved between two reads (every read, and a scan every IdleScanInterval); " +
			"its resolution is the time between reads"
		c.Notes[kernelops.CapLastUsedAllTraffic] = c.Notes[kernelops.CapLastUsed]
	} else {
		why := "stats-socket=none: the stats segment is not read"
		c.Notes[kernelops.CapCounters], c.Notes[kernelops.CapLastUsed] = why, why
		c.Notes[kernelops.CapLastUsedAllTraffic] = why
	}
	// VPP has no lifetimes: the kernelops front end enforces them.
	c.Caps |= kernelops.CapLifetimeTime | kernelops.CapSoftwareLifetimes
	c.Notes[kernelops.CapSoftwareLifetimes] = "VPP has no SA lifetimes: keyplane enforces them, time limits on its " +
		"clock, byte and packet limits at each stats read (scan-interval), so a byte/packet limit can be " +
		"overshot by one interval's traffic"
	if b.p.statsSocket != "" {
		c.Caps |= kernelops.CapLifetimeBytes | kernelops.CapLifetimePackets | kernelops.CapIdle
		c.Notes[kernelops.CapIdle] = "the front end's idle detection over one stats-segment read per scan"
	} else {
		why := "stats-socket=none: no counters to check byte/packet limits or idleness against"
		c.Notes[kernelops.CapLifetimeBytes], c.Notes[kernelops.CapLifetimePackets], c.Notes[kernelops.CapIdle] = why, why, why
	}
	return c
}
