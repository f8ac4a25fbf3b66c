package nokernel

import (
	"context"
	"net/netip"
	"syscall"

	"github.com/keyplane/keyplane/kernelops"
)

// ndTypes are the ICMPv6 neighbour/router discovery messages (RFC 4861):
// router solicitation and advertisement, neighbour solicitation and
// advertisement, redirect.
var ndTypes = []uint16{133, 134, 135, 136, 137}

// holePolicies builds the pass policies of a hole set: for each IKE port,
// UDP to it inbound and from it outbound; for ND, ICMPv6 of each ND type
// both ways. Their priorities derive from the pass band, above every
// ipsec policy.
func holePolicies(h kernelops.HoleSet) []*kernelops.Policy {
	var out []*kernelops.Policy
	for _, port := range h.IKEPorts {
		out = append(out,
			&kernelops.Policy{Selector: kernelops.Selector{Proto: 17, DstPort: port}, Dir: kernelops.DirIn, Action: kernelops.ActionPass},
			&kernelops.Policy{Selector: kernelops.Selector{Proto: 17, SrcPort: port}, Dir: kernelops.DirOut, Action: kernelops.ActionPass})
	}
	if h.IPv6ND {
		any6 := netip.PrefixFrom(netip.IPv6Unspecified(), 0)
		for _, t := range ndTypes {
			sel := kernelops.Selector{Src: any6, Dst: any6, Proto: 58, SrcPort: t}
			for _, dir := range []kernelops.Direction{kernelops.DirIn, kernelops.DirOut} {
				out = append(out, &kernelops.Policy{Selector: sel, Dir: dir, Action: kernelops.ActionPass})
			}
		}
	}
	return out
}

// OpenHoles installs the hole set as pass policies in the SPD (visible in
// Policies), replacing an earlier set. A hole whose PolicyID is taken by
// a policy of keyplane's own is ErrExists, and nothing changes.
func (b *model) OpenHoles(ctx context.Context, h kernelops.HoleSet) error {
	pols := holePolicies(h)
	b.mu.Lock()
	defer b.mu.Unlock()
	if err := b.checkLocked(); err != nil {
		return err
	}
	mine := map[kernelops.PolicyID]bool{}
	for _, id := range b.holes {
		if e := b.spd.get(id); e != nil && e.is(polHole) {
			mine[id] = true
		}
	}
	for _, p := range pols {
		if e := b.spd.get(p.ID()); e != nil && !mine[p.ID()] {
			return errno(syscall.EEXIST, "a policy that is not a hole holds this selector")
		}
	}
	b.closeHolesLocked()
	for _, p := range pols {
		if err := b.insertPolicyLocked(p, true, true); err != nil {
			b.closeHolesLocked()
			return err
		}
		b.holes = append(b.holes, p.ID())
	}
	return nil
}

// CloseHoles removes the hole policies; with none open it does nothing.
func (b *model) CloseHoles(ctx context.Context) error {
	b.mu.Lock()
	defer b.mu.Unlock()
	if err := b.checkLocked(); err != nil {
		return err
	}
	b.closeHolesLocked()
	return nil
}

func (b *model) closeHolesLocked() {
	for _, id := range b.holes {
		if e := b.spd.get(id); e != nil && e.is(polHole) {
			b.removePolicyLocked(e)
		}
	}
	b.holes = nil
}
