//go:build vpp

package vpp

import (
	"fmt"
	"strconv"
	"strings"
	"time"

	"github.com/keyplane/keyplane/kernelops"
)

// Name is the backend's registry name.
const Name = "vpp"

// Parameter names accepted in kernelops.Options.Params.
const (
	ParamSocket       = "socket"        // VPP API socket; default /run/vpp/api.sock
	ParamStatsSocket  = "stats-socket"  // stats segment socket; default /run/vpp/stats.sock; "none" disables counters
	ParamSPDID        = "spd-id"        // the SPD keyplane owns; default 19280 (0x4b50, "KP")
	ParamInterfaces   = "interfaces"    // comma-separated VPP interface names the SPD is bound to
	ParamSAIDMin      = "sa-id-min"     // first VPP sad_id keyplane uses; default 0x4b500000
	ParamSAIDMax      = "sa-id-max"     // last VPP sad_id keyplane uses; default 0x4b5fffff
	ParamKeepalive    = "keepalive"     // control_ping interval that notices a dead VPP; default 1s
	ParamTimeout      = "timeout"       // per-request timeout; default 5s
	ParamReconnectMax = "reconnect-max" // longest pause between reconnect attempts; default 5s
	ParamAddrPoll     = "addr-poll"     // ip_address_dump poll for address events; default 10s, 0 disables
	ParamScanInterval = "scan-interval" // stats-segment read for last-used and byte/packet lifetimes; default min(IdleScanInterval, 1s)
)

var knownParams = []string{ParamSocket, ParamStatsSocket, ParamSPDID, ParamInterfaces, ParamSAIDMin,
	ParamSAIDMax, ParamKeepalive, ParamTimeout, ParamReconnectMax, ParamAddrPoll, ParamScanInterval}

// Default socket paths, as VPP's startup.conf ships them.
const (
	DefaultSocket      = "/run/vpp/api.sock"
	DefaultStatsSocket = "/run/vpp/stats.sock"
	DefaultSPDID       = 0x4b50
	DefaultSAIDMin     = 0x4b500000
	DefaultSAIDMax     = 0x4b5fffff
)

type params struct {
	socket       string
	statsSocket  string // "" when disabled
	spdID        uint32
	interfaces   []string
	saIDMin      uint32
	saIDMax      uint32
	keepalive    time.Duration
	timeout      time.Duration
	reconnectMax time.Duration
	addrPoll     time.Duration
	scanInterval time.Duration
}

func parseParams(o kernelops.Options) (params, error) {
	p := params{
		socket:       DefaultSocket,
		statsSocket:  DefaultStatsSocket,
		spdID:        DefaultSPDID,
		saIDMin:      DefaultSAIDMin,
		saIDMax:      DefaultSAIDMax,
		keepalive:    time.Second,
		timeout:      5 * time.Second,
		reconnectMax: 5 * time.Second,
		addrPoll:     10 * time.Second,
		scanInterval: min(o.IdleScanInterval, time.Second),
	}
	if p.scanInterval <= 0 {
		p.scanInterval = time.Second
	}
	if err := o.CheckParams(Name, knownParams...); err != nil {
		return p, err
	}
	bad := func(name, format string, args ...any) error {
		return kernelops.Invalid(Name, "open", "", "Params."+name, format, args...)
	}
	u32 := func(name string, dst *uint32) error {
		v, ok := o.Params[name]
		if !ok {
			return nil
		}
		n, err := strconv.ParseUint(v, 0, 32)
		if err != nil {
			return bad(name, "%q is not a 32-bit number", v)
		}
		*dst = uint32(n)
		return nil
	}
	dur := func(name string, dst *time.Duration, zeroOK bool) error {
		v, ok := o.Params[name]
		if !ok {
			return nil
		}
		d, err := time.ParseDuration(v)
		if err != nil || d < 0 || (d == 0 && !zeroOK) {
			return bad(name, "%q is not a positive duration", v)
		}
		*dst = d
		return nil
	}
	if v, ok := o.Params[ParamSocket]; ok {
		if v == "" {
			return p, bad(ParamSocket, "empty socket path")
		}
		p.socket = v
	}
	if v, ok := o.Params[ParamStatsSocket]; ok {
		switch v {
		case "none":
			p.statsSocket = ""
		case "":
			return p, bad(ParamStatsSocket, `empty path (use "none" to run without counters)`)
		default:
			p.statsSocket = v
		}
	}
	if v := o.Params[ParamInterfaces]; v != "" {
		for _, name := range strings.Split(v, ",") {
			if name = strings.TrimSpace(name); name != "" {
				p.interfaces = append(p.interfaces, name)
			}
		}
	}
	for _, f := range []func() error{
		func() error { return u32(ParamSPDID, &p.spdID) },
		func() error { return u32(ParamSAIDMin, &p.saIDMin) },
		func() error { return u32(ParamSAIDMax, &p.saIDMax) },
		func() error { return dur(ParamKeepalive, &p.keepalive, false) },
		func() error { return dur(ParamTimeout, &p.timeout, false) },
		func() error { return dur(ParamReconnectMax, &p.reconnectMax, false) },
		func() error { return dur(ParamAddrPoll, &p.addrPoll, true) },
		func() error { return dur(ParamScanInterval, &p.scanInterval, false) },
	} {
		if err := f(); err != nil {
			return p, err
		}
	}
	if p.saIDMin > p.saIDMax {
		return p, bad(ParamSAIDMin, "sa-id range %#x..%#x is empty", p.saIDMin, p.saIDMax)
	}
	if p.spdID == 0 {
		return p, bad(ParamSPDID, "SPD id 0 is reserved here")
	}
	return p, nil
}

func (p params) String() string {
	return fmt.Sprintf("socket=%s stats=%s spd=%d interfaces=%v", p.socket, p.statsSocket, p.spdID, p.interfaces)
}
