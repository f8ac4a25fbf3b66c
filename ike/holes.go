package ike

import (
	"context"
	"fmt"
	"net/netip"
	"slices"

	"github.com/keyplane/keyplane/ike/config"
	"github.com/keyplane/keyplane/kernelops"
)

// Holes (kernelops.Holes): when a child's policies would catch IKE
// itself — selectors that hold both IKE addresses — or IPv6 neighbour
// discovery — IPv6 selectors that hold link-local addresses at both
// ends — the engine opens the dataplane's holes for it, from the start
// of the configuration until the daemon stops or a reload no longer
// needs them. The per-socket bypass already lets keyplane's own sockets
// through; the holes keep IKE on other sockets and ND working under a
// 0.0.0.0/0 or ::/0 tunnel.

var (
	linkLocal6 = netip.MustParseAddr("fe80::1")
	allNodes6  = netip.MustParseAddr("ff02::1")
)

// holesFor decides the holes cfg needs: the local IKE ports of every
// connection a child's selectors would catch, and IPv6 ND.
func holesFor(cfg *config.Config) kernelops.HoleSet {
	var h kernelops.HoleSet
	for _, c := range cfg.Connections {
		for _, ch := range c.Children {
			if catches(ch.LocalTS, c.LocalAddr, 17) && catches(ch.RemoteTS, c.RemoteAddr, 17) {
				for _, p := range []uint16{c.LocalPort, c.LocalNATPort} {
					if p != 0 && !slices.Contains(h.IKEPorts, p) {
						h.IKEPorts = append(h.IKEPorts, p)
					}
				}
			}
			if catches(ch.LocalTS, linkLocal6, 58) &&
				(catches(ch.RemoteTS, linkLocal6, 58) || catches(ch.RemoteTS, allNodes6, 58)) {
				h.IPv6ND = true
			}
		}
	}
	slices.Sort(h.IKEPorts)
	return h
}

// catches reports whether one of ts holds packets of protocol proto to
// or from a (an unset a is %any: only an any-address selector holds it
// for sure). A dynamic selector is the IKE address itself.
func catches(ts []config.TS, a netip.Addr, proto uint8) bool {
	for _, t := range ts {
		if t.Proto != 0 && t.Proto != proto {
			continue
		}
		if proto == 58 && t.Port != 0 {
			continue // one ICMP type is named; ND's are not all held
		}
		switch {
		case t.Dynamic:
			if proto == 17 {
				return true
			}
		case !a.IsValid():
			if t.Prefix.Bits() == 0 {
				return true
			}
		case t.Prefix.Contains(a):
			return true
		}
	}
	return false
}

func sameHoles(a, b kernelops.HoleSet) bool {
	return a.IPv6ND == b.IPv6ND && slices.Equal(a.IKEPorts, b.IKEPorts)
}

func noHoles(h kernelops.HoleSet) bool { return len(h.IKEPorts) == 0 && !h.IPv6ND }

// setHoles opens the holes cfg needs (replacing the earlier set), or
// closes them when it needs none. Runs on the loop.
func (e *Engine) setHoles(ctx context.Context, cfg *config.Config) error {
	want := holesFor(cfg)
	if sameHoles(want, e.holes) {
		return nil
	}
	hs, err := kernelops.As[kernelops.Holes](e.b)
	if err != nil {
		return fmt.Errorf("%w: the configuration needs holes %+v: %w", ErrFacetMissing, want, err)
	}
	if noHoles(want) {
		if err := hs.CloseHoles(ctx); err != nil {
			return fmt.Errorf("close the dataplane's holes: %w", err)
		}
		e.log.Info("holes closed")
	} else {
		if err := hs.OpenHoles(ctx, want); err != nil {
			return fmt.Errorf("open the dataplane's holes (IKE ports %v, IPv6 ND %v): %w", want.IKEPorts, want.IPv6ND, err)
		}
		e.log.Info("holes open: policies would catch IKE or neighbour discovery", "ike-ports", fmt.Sprint(want.IKEPorts), "ipv6-nd", want.IPv6ND)
	}
	e.holes = want
	return nil
}

// closeHoles closes what setHoles opened, at the engine's end.
func (e *Engine) closeHoles() {
	if noHoles(e.holes) {
		return
	}
	if hs, err := kernelops.As[kernelops.Holes](e.b); err == nil {
		if err := hs.CloseHoles(e.ctx); err != nil {
			e.log.Warn("closing the dataplane's holes failed", "err", err)
		}
	}
	e.holes = kernelops.HoleSet{}
}
