package xfrm

import (
	"fmt"

	"github.com/keyplane/keyplane/kernelops"
)

// maxReplayWindow is the kernel's limit: an ESN bitmap of at most 128
// words (XFRMA_REPLAY_ESN_MAX).
const maxReplayWindow = maxBmpLen * 32

// capabilities states what this kernel can do, from the probe. Every
// SA-level feature needs an IPsec protocol, so without ESP they are
// absent with the kernel's own answer as the reason.
func capabilities(k kernelInfo, opts kernelops.Options) kernelops.Capabilities {
	c := kernelops.Capabilities{
		Caps: kernelops.CapSPD | kernelops.CapEvents | kernelops.CapSockets | kernelops.CapAddrSelect |
			kernelops.CapChangeEvents | kernelops.CapAddrManage | kernelops.CapHoles | kernelops.CapBatch |
			kernelops.CapMarks | kernelops.CapIfID | kernelops.CapPolicyPriority | kernelops.CapPolicyLifetime |
			kernelops.CapTrap,
		Algorithms:      k.Algorithms,
		MaxReplayWindow: maxReplayWindow,
		SPIMin:          opts.SPIMin,
		SPIMax:          opts.SPIMax,
		Notes:           map[kernelops.Cap]string{},
	}
	note := func(x kernelops.Cap, format string, args ...any) { c.Notes[x] = fmt.Sprintf(format, args...) }
	note(kernelops.CapTrap, "trap policies raise XFRM_MSG_ACQUIRE")
	if k.ESP {
		c.Caps |= kernelops.CapSAD | kernelops.CapSync | kernelops.CapLifetimeTime | kernelops.CapLifetimeBytes |
			kernelops.CapLifetimePackets | kernelops.CapESN | kernelops.CapUDPEncap |
			kernelops.CapTunnelMode | kernelops.CapTransportMode | kernelops.CapMappingEvents |
			kernelops.CapKeysReadable | kernelops.CapCounters | kernelops.CapMigrate | kernelops.CapOffload |
			kernelops.CapIdle
		note(kernelops.CapIdle, "one SA dump per scan; from byte and packet deltas where the kernel keeps no last-used time")
		if k.Migrate {
			c.Caps |= kernelops.CapMigrateEvents
		} else {
			note(kernelops.CapMigrateEvents, "kernel built without CONFIG_XFRM_MIGRATE: no XFRM_MSG_MIGRATE; Migrate re-installs SAs instead")
		}
		// Linux 6.2 started to keep x->lastused, on every packet in and
		// out at once; so both capabilities come and go together.
		if k.lastUsed() {
			c.Caps |= kernelops.CapLastUsed | kernelops.CapLastUsedAllTraffic
		} else {
			why := fmt.Sprintf("Linux %s does not maintain XFRMA_LASTUSED for ESP (6.2 and later do)", k.Release)
			if k.LastUsedProbed {
				why += "; a probe packet left it unset"
			} else if k.LastUsedWhy != "" {
				why += "; probe failed: " + k.LastUsedWhy
			}
			note(kernelops.CapLastUsed, "%s", why)
			note(kernelops.CapLastUsedAllTraffic, "%s", why)
		}
		if k.saDir() {
			c.Caps |= kernelops.CapSADir
		} else {
			note(kernelops.CapSADir, "XFRMA_SA_DIR needs Linux 6.10 (running %s)", k.Release)
		}
		note(kernelops.CapOffload, "detection by ethtool feature esp-hw-offload; packet offload %s",
			map[bool]string{true: "available (Linux >= 6.2)", false: "needs Linux 6.2"}[k.packetOffload()])
	} else {
		why := "the kernel has no ESP (CONFIG_INET_ESP/esp4/esp6)"
		if k.ESPErr != "" {
			why += ": adding an ESP state fails with " + k.ESPErr
		}
		if !k.Probed {
			why = "kernel not probed: " + k.ProbeErr
		}
		for _, x := range []kernelops.Cap{kernelops.CapSAD, kernelops.CapSync, kernelops.CapLifetimeTime,
			kernelops.CapLifetimeBytes, kernelops.CapLifetimePackets, kernelops.CapLastUsed,
			kernelops.CapLastUsedAllTraffic, kernelops.CapESN, kernelops.CapUDPEncap, kernelops.CapTunnelMode,
			kernelops.CapTransportMode, kernelops.CapMappingEvents, kernelops.CapKeysReadable,
			kernelops.CapCounters, kernelops.CapMigrate, kernelops.CapMigrateEvents, kernelops.CapSADir,
			kernelops.CapOffload, kernelops.CapIdle} {
			c.Notes[x] = why
		}
	}
	if k.XfrmIfaces {
		c.Caps |= kernelops.CapXfrmInterfaces
	} else {
		note(kernelops.CapXfrmInterfaces, "the kernel has no xfrm interfaces (CONFIG_XFRM_INTERFACE): %s", k.XfrmIfacesErr)
	}
	note(kernelops.CapSoftwareLifetimes, "the kernel enforces lifetimes itself")
	return c
}
