//go:build vpp

package vpp

import (
	"context"
	"net/netip"

	"github.com/keyplane/keyplane/kernelops"
	"go.fd.io/govpp/binapi/ipsec_types"
)

// OpenHoles lets IKE through keyplane's SPD unprotected: for each port an
// outbound bypass (UDP from that local port, to any port) and an inbound
// one, for IPv4 and IPv6, above every policy. VPP 25.10 matches inbound
// bypass entries by address only — protocol and ports are ignored — so the
// inbound hole passes every ESP/AH/IKE packet no PROTECT entry claimed;
// VPP checks only ESP, AH and UDP 500/4500 inbound in the first place.
//
// VPP's SPD matches no ICMP types, so the IPv6 neighbour-discovery hole is
// drawn by the addresses ND uses instead: outbound ICMPv6 from or to
// link-local fe80::/10 and to link-scope multicast ff02::/16 passes. That
// is narrower than "all ICMPv6" and wider than ND's five types (it also
// passes MLD and link-local pings). Inbound needs none: VPP's inbound SPD
// never sees ICMPv6.
func (b *driver) OpenHoles(ctx context.Context, h kernelops.HoleSet) error {
	for _, p := range h.IKEPorts {
		if p == 0 {
			return kernelops.Invalid("", "", "", "IKEPorts", "port 0")
		}
	}
	s, err := b.lockSession(ctx)
	if err != nil {
		return wrap("", err, nil)
	}
	defer b.mu.Unlock()
	want := b.holeEntries(h)
	if err := b.applyEntries(ctx, s, b.holes, want); err != nil {
		return wrap("", err, spdOverride)
	}
	b.holes, b.holeSet = want, h
	return nil
}

// CloseHoles removes the holes.
func (b *driver) CloseHoles(ctx context.Context) error {
	s, err := b.lockSession(ctx)
	if err != nil {
		return wrap("", err, nil)
	}
	defer b.mu.Unlock()
	if err := b.applyEntries(ctx, s, b.holes, nil); err != nil {
		return wrap("", err, spdOverride)
	}
	b.holes, b.holeSet = nil, kernelops.HoleSet{}
	return nil
}

func (b *driver) holeEntries(h kernelops.HoleSet) []ipsec_types.IpsecSpdEntryV2 {
	var out []ipsec_types.IpsecSpdEntryV2
	for _, port := range h.IKEPorts {
		for _, dir := range []kernelops.Direction{kernelops.DirOut, kernelops.DirIn} {
			p := &kernelops.Policy{Dir: dir, Action: kernelops.ActionPass, Selector: kernelops.Selector{Proto: 17}}
			if dir == kernelops.DirOut {
				p.Selector.SrcPort = port
			} else {
				p.Selector.DstPort = port
			}
			for _, e := range baseEntries(b.p.spdID, p, holePriority) {
				e.Policy = ipsec_types.IPSEC_API_SPD_ACTION_BYPASS
				out = append(out, e)
			}
		}
	}
	if h.IPv6ND {
		ll, mc := netip.MustParsePrefix("fe80::/10"), netip.MustParsePrefix("ff02::/16")
		for _, sel := range []kernelops.Selector{{Src: ll, Proto: 58}, {Dst: ll, Proto: 58}, {Dst: mc, Proto: 58}} {
			p := &kernelops.Policy{Dir: kernelops.DirOut, Action: kernelops.ActionPass, Selector: sel}
			if !sel.Src.IsValid() {
				p.Selector.Src = netip.PrefixFrom(netip.IPv6Unspecified(), 0)
			}
			if !sel.Dst.IsValid() {
				p.Selector.Dst = netip.PrefixFrom(netip.IPv6Unspecified(), 0)
			}
			for _, e := range baseEntries(b.p.spdID, p, holePriority) {
				e.Policy = ipsec_types.IPSEC_API_SPD_ACTION_BYPASS
				out = append(out, e)
			}
		}
	}
	return out
}
