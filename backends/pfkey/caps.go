package pfkey

import (
	"maps"

	"github.com/keyplane/keyplane/backends/pfkey/sadb"
	"github.com/keyplane/keyplane/kernelops"
)

// osInfo is what one operating system's PF_KEY is: its dialect, the
// socket numbers, and what it can and cannot do, with the reasons. The
// per-OS files (os_linux.go, os_freebsd.go, ...) each define one.
type osInfo struct {
	name    string
	dialect *sadb.Dialect
	family  int    // PF_KEY: 15 Linux, 27 FreeBSD, 29 NetBSD and Darwin
	missing string // what to do when the kernel has no PF_KEY sockets

	caps  kernelops.Cap
	notes map[kernelops.Cap]string

	maxReplay    uint32 // packets
	packetLimits bool   // sadb_lifetime_allocations counts packets
	forwardDir   bool   // IPSEC_DIR_FWD exists
	saReqIDMax   uint32 // widest reqid SA2 carries

	// IKE socket options: IP(V6)_IPSEC_POLICY and UDP_ENCAP.
	ipsecPolicy4, ipsecPolicy6 int
	udpEncapLevel, udpEncapOpt int // 0: no per-socket ESP-in-UDP switch
}

// common claims and absences shared by every PF_KEY kernel.
const commonCaps = kernelops.CapSAD | kernelops.CapSPD | kernelops.CapEvents | kernelops.CapBatch |
	kernelops.CapAddrSelect | kernelops.CapHoles | kernelops.CapIdle | kernelops.CapTrap | kernelops.CapLifetimeTime |
	kernelops.CapLifetimeBytes | kernelops.CapTunnelMode | kernelops.CapTransportMode |
	kernelops.CapKeysReadable

var commonNotes = map[kernelops.Cap]string{
	kernelops.CapChangeEvents:       "PF_KEY carries no address, link or route events (they come from the routing socket or rtnetlink, not from this backend)",
	kernelops.CapAddrManage:         "PF_KEY does not configure interface addresses",
	kernelops.CapOffload:            "PF_KEY v2 has no way to request hardware offload",
	kernelops.CapIdle:               "the front end scans one SADB_DUMP per interval; PF_KEY keeps no last-used time, so idleness comes from byte and packet counts",
	kernelops.CapXfrmInterfaces:     "PF_KEY cannot create or bind route-based IPsec interfaces (no if_id)",
	kernelops.CapMarks:              "PF_KEY messages carry no mark",
	kernelops.CapIfID:               "PF_KEY messages carry no interface id",
	kernelops.CapSADir:              "sadb_sa has no direction field",
	kernelops.CapLastUsed:           "the current lifetime's usetime is the time of first use, not of last use",
	kernelops.CapLastUsedAllTraffic: "no last-used time at all (see last-used)",
	kernelops.CapSoftwareLifetimes:  "the kernel enforces lifetimes itself",
	kernelops.CapAddrSelect:         "address selection asks the kernel through a connected UDP socket; Route.Gateway is not reported",
	kernelops.CapBatch:              "PF_KEY has one operation per message: a batch runs on several sockets at once, ops on the same SA or policy in order",
	kernelops.CapTrap:               "trap and ipsec policies are the same kernel policy; the backend remembers which ones it installed as traps",
}

// capabilities states what the running kernel can do: the OS's claims,
// and the algorithms both the dialect maps and SADB_REGISTER reported.
func (o *osInfo) capabilities(algs kernelops.AlgorithmSet, opts kernelops.Options, extra kernelops.Cap,
	extraNotes map[kernelops.Cap]string) kernelops.Capabilities {
	notes := maps.Clone(commonNotes)
	maps.Copy(notes, o.notes)
	maps.Copy(notes, extraNotes)
	caps := o.caps | extra
	for c := range notes {
		// Notes on present capabilities qualify them; keep them only
		// where they say something (AddrSelect, Batch, Trap, Idle).
		if caps&c != 0 && c != kernelops.CapAddrSelect && c != kernelops.CapBatch && c != kernelops.CapTrap && c != kernelops.CapIdle {
			delete(notes, c)
		}
	}
	return kernelops.Capabilities{
		Caps:            caps,
		Algorithms:      algs,
		MaxReplayWindow: o.maxReplay,
		SPIMin:          opts.SPIMin,
		SPIMax:          opts.SPIMax,
		Notes:           notes,
	}
}

// supportedAlgorithms is the dialect's table narrowed to what the kernel
// answered SADB_REGISTER with; a nil reply (the kernel did not answer)
// keeps the whole table.
func supportedAlgorithms(d *sadb.Dialect, reply *sadb.Msg) kernelops.AlgorithmSet {
	var set kernelops.AlgorithmSet
	has := func(t sadb.ExtType, id uint8) bool {
		if reply == nil {
			return true
		}
		s := reply.Supported(t)
		if s == nil {
			return false
		}
		for _, a := range s.Algs {
			if a.ID == id {
				return true
			}
		}
		return false
	}
	for _, a := range d.Encr {
		if has(sadb.ExtSupportedEncrypt, a.SADB) {
			set.Encryption = append(set.Encryption, a.ID)
		}
	}
	for _, a := range d.Auth {
		if has(sadb.ExtSupportedAuth, a.SADB) {
			set.Integrity = append(set.Integrity, a.ID)
		}
	}
	return set
}
