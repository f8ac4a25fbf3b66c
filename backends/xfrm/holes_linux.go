package xfrm

import (
	"context"
	"errors"
	"net/netip"

	"github.com/keyplane/keyplane/kernelops"
)

// Holes are pass policies in the pass band (kernelops.PriorityBandPass),
// which outranks every ipsec, trap and block policy:
//
//   - per IKE port and family: inbound to the port, outbound from it
//     (a NAT may change the peer's port, never ours);
//   - IPv6 neighbour and router discovery (ICMPv6 types 133..137) in,
//     out and forwarded, so ND keeps working under a ::/0 tunnel.
//
// They carry keyplane's policy index tag, so FlushPolicies and a
// restart's cleanup remove them and nobody else's.

var (
	any4 = kernelops.Selector{}
	any6 = kernelops.Selector{Src: netip.PrefixFrom(netip.IPv6Unspecified(), 0), Dst: netip.PrefixFrom(netip.IPv6Unspecified(), 0)}
)

const (
	protoUDP    = 17
	protoICMPv6 = 58
)

// holePolicies lists the pass policies of h.
func holePolicies(h kernelops.HoleSet) []kernelops.Policy {
	var ps []kernelops.Policy
	pass := func(s kernelops.Selector, dir kernelops.Direction) {
		ps = append(ps, kernelops.Policy{Selector: s, Dir: dir, Action: kernelops.ActionPass})
	}
	for _, port := range h.IKEPorts {
		for _, base := range []kernelops.Selector{any4, any6} {
			in, out := base, base
			in.Proto, in.DstPort = protoUDP, port
			out.Proto, out.SrcPort = protoUDP, port
			pass(in, kernelops.DirIn)
			pass(out, kernelops.DirOut)
		}
	}
	if h.IPv6ND {
		for typ := uint16(133); typ <= 137; typ++ {
			s := any6
			s.Proto, s.SrcPort = protoICMPv6, typ // ICMP type travels in the source port
			for _, d := range []kernelops.Direction{kernelops.DirIn, kernelops.DirOut, kernelops.DirFwd} {
				pass(s, d)
			}
		}
	}
	for i := range ps {
		ps[i].Priority = kernelops.AutoPriority(&ps[i])
	}
	return ps
}

// OpenHoles implements kernelops.Holes: it installs h's pass policies and
// removes holes of an earlier set that h no longer has. On failure the
// policies this call added are removed again.
func (b *driver) OpenHoles(ctx context.Context, h kernelops.HoleSet) error {
	for _, p := range h.IKEPorts {
		if p == 0 {
			return kernelops.Invalid("", "", "", "IKEPorts", "port 0")
		}
	}
	want := holePolicies(h)
	b.mu.Lock()
	had := make(map[kernelops.PolicyID]struct{}, len(b.holes))
	for id := range b.holes {
		had[id] = struct{}{}
	}
	b.mu.Unlock()
	wantIDs := map[kernelops.PolicyID]struct{}{}
	var added []kernelops.PolicyID
	for i := range want {
		p := &want[i]
		id := canonID(p.ID())
		wantIDs[id] = struct{}{}
		if _, ok := had[id]; ok {
			continue
		}
		if err := b.AddPolicy(ctx, p); err != nil {
			if !errors.Is(err, kernelops.ErrExists) {
				for _, a := range added {
					_ = b.DeletePolicy(ctx, a)
				}
				return err
			}
			// Already there (a previous life of keyplane): take it over.
			if err := b.ReplacePolicy(ctx, p); err != nil {
				return err
			}
		} else {
			added = append(added, id)
		}
	}
	for id := range had {
		if _, keep := wantIDs[id]; keep {
			continue
		}
		if err := b.DeletePolicy(ctx, id); err != nil && !errors.Is(err, kernelops.ErrNotFound) {
			return err
		}
	}
	b.mu.Lock()
	b.holes = wantIDs
	b.mu.Unlock()
	return nil
}

// CloseHoles implements kernelops.Holes.
func (b *driver) CloseHoles(ctx context.Context) error {
	b.mu.Lock()
	ids := make([]kernelops.PolicyID, 0, len(b.holes))
	for id := range b.holes {
		ids = append(ids, id)
	}
	b.mu.Unlock()
	var first error
	for _, id := range ids {
		err := b.DeletePolicy(ctx, id)
		if err != nil && !errors.Is(err, kernelops.ErrNotFound) {
			if first == nil {
				first = err
			}
			continue
		}
		b.mu.Lock()
		delete(b.holes, id)
		b.mu.Unlock()
	}
	return first
}
