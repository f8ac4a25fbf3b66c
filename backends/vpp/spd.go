//go:build vpp

package vpp

import (
	"context"
	"errors"
	"fmt"
	"iter"
	"math"
	"net/netip"
	"slices"

	"github.com/keyplane/keyplane/kernelops"
	"go.fd.io/govpp/api"
	"go.fd.io/govpp/binapi/ip_types"
	"go.fd.io/govpp/binapi/ipsec"
	"go.fd.io/govpp/binapi/ipsec_types"
)

// protoAny is "any protocol" in ipsec_spd_entry_v2 (IP_PROTOCOL_RESERVED).
const protoAny = 255

// vppPriority maps keyplane's priority (lower wins) onto VPP's (higher
// matches first), order-reversing and one-to-one over all of uint32.
func vppPriority(p uint32) int32 { return int32(math.MaxInt32 - int64(p)) }

func keyplanePriority(v int32) uint32 { return uint32(math.MaxInt32 - int64(v)) }

// holePriority puts holes above every policy.
const holePriority = math.MaxInt32

// checkPolicy refuses what VPP's SPD cannot express.
func (b *driver) checkPolicy(p *kernelops.Policy) error {
	obj := p.ID().String()
	switch {
	case p.Action == kernelops.ActionTrap:
		return notSupported(obj, "Action", b.caps.Why(kernelops.CapTrap))
	case !p.Mark.IsZero():
		return notSupported(obj, "Mark", "VPP policies have no marks")
	case p.IfID != 0:
		return notSupported(obj, "IfID", "VPP policies have no XFRM interface id")
	case !p.Lifetime.Soft.IsZero() || !p.Lifetime.Hard.IsZero():
		return notSupported(obj, "Lifetime", b.caps.Why(kernelops.CapPolicyLifetime))
	case len(p.Templates) > 1:
		return notSupported(obj, "Templates", "a VPP SPD entry protects with one SA: no SA bundles")
	}
	if pr := p.Selector.Proto; (p.Selector.SrcPort != 0 || p.Selector.DstPort != 0) && pr != 6 && pr != 17 && pr != 132 {
		return notSupported(obj, "Selector.Proto", fmt.Sprintf("VPP's SPD matches ports only for TCP, UDP and SCTP, not protocol %d", pr))
	}
	for i, t := range p.Templates {
		f := fmt.Sprintf("Templates[%d]", i)
		switch {
		case t.Proto == kernelops.ProtoIPComp:
			return notSupported(obj, f+".Proto", "VPP has no IPComp")
		case t.Optional:
			return notSupported(obj, f+".Optional", "VPP has no optional (level use) templates")
		}
	}
	return nil
}

// baseEntries are a policy's VPP entries without the SA: one per address
// family the selector covers.
func baseEntries(spdID uint32, p *kernelops.Policy, prio int32) []ipsec_types.IpsecSpdEntryV2 {
	sel := p.Selector
	var fams []bool // v6?
	switch {
	case sel.Src.IsValid():
		fams = []bool{sel.Src.Addr().Is6()}
	case sel.Dst.IsValid():
		fams = []bool{sel.Dst.Addr().Is6()}
	default:
		fams = []bool{false, true}
	}
	out := make([]ipsec_types.IpsecSpdEntryV2, 0, len(fams))
	for _, v6 := range fams {
		src, dst := sel.Src, sel.Dst
		if !src.IsValid() {
			src = fullRange(v6)
		}
		if !dst.IsValid() {
			dst = fullRange(v6)
		}
		e := ipsec_types.IpsecSpdEntryV2{SpdID: spdID, Priority: prio, Protocol: sel.Proto}
		if e.Protocol == 0 {
			e.Protocol = protoAny
		}
		local, remote := src, dst
		lport, rport := sel.SrcPort, sel.DstPort
		if p.Dir == kernelops.DirOut {
			e.IsOutbound = true
		} else {
			local, remote = dst, src
			lport, rport = rport, lport
		}
		e.LocalAddressStart, e.LocalAddressStop = toAddr(local.Masked().Addr()), toAddr(lastAddr(local))
		e.RemoteAddressStart, e.RemoteAddressStop = toAddr(remote.Masked().Addr()), toAddr(lastAddr(remote))
		e.LocalPortStart, e.LocalPortStop = portRange(lport)
		e.RemotePortStart, e.RemotePortStop = portRange(rport)
		out = append(out, e)
	}
	return out
}

func portRange(p uint16) (uint16, uint16) {
	if p == 0 {
		return 0, math.MaxUint16
	}
	return p, p
}

// templateMatches reports whether SA r can carry traffic of policy p.
func templateMatches(p *kernelops.Policy, r *saRec) bool {
	if len(p.Templates) == 0 {
		return false
	}
	t := p.Templates[0]
	sa := r.sa
	if sa.ID.Proto != t.Proto || sa.Mode != t.Mode || r.inbound != (p.Dir != kernelops.DirOut) {
		return false
	}
	if (t.ReqID != 0 && sa.ReqID != t.ReqID) || (t.SPI != 0 && sa.ID.SPI != t.SPI) {
		return false
	}
	if t.Src.IsValid() && sa.ID.Src != t.Src {
		return false
	}
	if t.Dst.IsValid() && sa.ID.Dst != t.Dst {
		return false
	}
	return true
}

// wantEntries is what a policy should be in VPP given the SAs keyplane has
// now. VPP does not tell forwarded from local inbound traffic, so fwd
// policies become inbound entries just like in policies (VPP keeps the
// equal entries of an in and a fwd policy side by side). An outbound ipsec policy protects with its newest matching SA (as
// XFRM picks the newest state), or discards while it has none, so nothing
// leaks past it; VPP matches inbound ESP to a policy by the SA's SPI, so
// an inbound ipsec policy becomes one entry per matching SA. b.mu is held.
func (b *driver) wantEntries(p *kernelops.Policy) []ipsec_types.IpsecSpdEntryV2 {
	base := baseEntries(b.p.spdID, p, vppPriority(kernelops.EffectivePriority(p)))
	switch p.Action {
	case kernelops.ActionPass:
		for i := range base {
			base[i].Policy = ipsec_types.IPSEC_API_SPD_ACTION_BYPASS
		}
		return base
	case kernelops.ActionBlock:
		for i := range base {
			base[i].Policy = ipsec_types.IPSEC_API_SPD_ACTION_DISCARD
		}
		return base
	}
	var match []*saRec
	for _, r := range b.sas {
		if templateMatches(p, r) {
			match = append(match, r)
		}
	}
	slices.SortFunc(match, func(x, y *saRec) int {
		switch {
		case x.seq > y.seq:
			return -1
		case x.seq < y.seq:
			return 1
		}
		return 0
	})
	var out []ipsec_types.IpsecSpdEntryV2
	if p.Dir == kernelops.DirOut {
		for _, e := range base {
			if len(match) == 0 {
				e.Policy = ipsec_types.IPSEC_API_SPD_ACTION_DISCARD
			} else {
				e.Policy = ipsec_types.IPSEC_API_SPD_ACTION_PROTECT
				e.SaID = match[0].sadID
			}
			out = append(out, e)
		}
		return out
	}
	for _, r := range match {
		for _, e := range base {
			e.Policy = ipsec_types.IPSEC_API_SPD_ACTION_PROTECT
			e.SaID = r.sadID
			out = append(out, e)
		}
	}
	return out
}

// spdEntry adds or deletes one VPP SPD entry.
func (b *driver) spdEntry(ctx context.Context, s *session, add bool, e ipsec_types.IpsecSpdEntryV2) error {
	return b.check(s, s.invoke(ctx, &ipsec.IpsecSpdEntryAddDelV2{IsAdd: add, Entry: e}, &ipsec.IpsecSpdEntryAddDelV2Reply{}))
}

// applyEntries moves VPP from old to new: additions first, so traffic is
// never without its policy, then removals. On failure it undoes what it
// added and returns the error. b.mu is held.
func (b *driver) applyEntries(ctx context.Context, s *session, old, new []ipsec_types.IpsecSpdEntryV2) error {
	add, del := multisetDiff(new, old)
	for i, e := range add {
		if err := b.spdEntry(ctx, s, true, e); err != nil {
			for _, u := range add[:i] {
				b.spdEntry(ctx, s, false, u)
			}
			return err
		}
	}
	for i, e := range del {
		if err := b.spdEntry(ctx, s, false, e); err != nil {
			for _, u := range del[:i] {
				b.spdEntry(ctx, s, true, u)
			}
			for _, u := range add {
				b.spdEntry(ctx, s, false, u)
			}
			return err
		}
	}
	return nil
}

// multisetDiff returns what is in a but not b, and in b but not a,
// counting duplicates (VPP keeps equal entries twice).
func multisetDiff(a, b []ipsec_types.IpsecSpdEntryV2) (onlyA, onlyB []ipsec_types.IpsecSpdEntryV2) {
	count := map[ipsec_types.IpsecSpdEntryV2]int{}
	for _, e := range b {
		count[e]++
	}
	for _, e := range a {
		if count[e] > 0 {
			count[e]--
			continue
		}
		onlyA = append(onlyA, e)
	}
	for _, e := range b {
		if count[e] > 0 {
			count[e]--
			onlyB = append(onlyB, e)
		}
	}
	return onlyA, onlyB
}

// rebind re-points the policies an SA can carry after the SA came or
// went. b.mu is held.
func (b *driver) rebind(ctx context.Context, s *session, r *saRec) error {
	for _, pr := range b.pols {
		if pr.p.Action != kernelops.ActionIPsec || !templateMatches(pr.p, r) {
			continue
		}
		want := b.wantEntries(pr.p)
		if err := b.applyEntries(ctx, s, pr.entries, want); err != nil {
			return fmt.Errorf("policy %s: %w", pr.p.ID(), err)
		}
		pr.entries = want
	}
	return nil
}

// rebindAll recomputes every ipsec policy (after a reqid change).
func (b *driver) rebindAll(ctx context.Context, s *session) error {
	for _, pr := range b.pols {
		if pr.p.Action != kernelops.ActionIPsec {
			continue
		}
		want := b.wantEntries(pr.p)
		if err := b.applyEntries(ctx, s, pr.entries, want); err != nil {
			return fmt.Errorf("policy %s: %w", pr.p.ID(), err)
		}
		pr.entries = want
	}
	return nil
}

var spdOverride = map[api.VPPApiError]error{api.SYSCALL_ERROR_1: kernelops.ErrNotFound}

// AddPolicy installs a policy.
func (b *driver) AddPolicy(ctx context.Context, p *kernelops.Policy) error {
	return b.putPolicy(ctx, p, false)
}

// ReplacePolicy adds or replaces a policy; the new entries go in before
// the old ones leave.
func (b *driver) ReplacePolicy(ctx context.Context, p *kernelops.Policy) error {
	return b.putPolicy(ctx, p, true)
}

func (b *driver) putPolicy(ctx context.Context, p *kernelops.Policy, replace bool) error {
	if err := b.checkPolicy(p); err != nil {
		return err
	}
	id := p.ID()
	s, err := b.lockSession(ctx)
	if err != nil {
		return wrap(id.String(), err, nil)
	}
	defer b.mu.Unlock()
	pr := b.pols[id]
	if pr != nil && !replace {
		return &kernelops.Error{Object: id.String(), Err: kernelops.ErrExists}
	}
	n := &polRec{p: p.Clone(), addTime: b.clock.Now()}
	n.p.Priority = kernelops.EffectivePriority(p) // what reads back, as kernels report it
	var old []ipsec_types.IpsecSpdEntryV2
	if pr != nil {
		old = pr.entries
		n.addTime = pr.addTime
	}
	n.entries = b.wantEntries(n.p)
	if err := b.applyEntries(ctx, s, old, n.entries); err != nil {
		return wrap(id.String(), err, spdOverride)
	}
	b.pols[id] = n
	return nil
}

// DeletePolicy removes a policy.
func (b *driver) DeletePolicy(ctx context.Context, id kernelops.PolicyID) error {
	s, err := b.lockSession(ctx)
	if err != nil {
		return wrap(id.String(), err, nil)
	}
	defer b.mu.Unlock()
	pr := b.pols[id]
	if pr == nil {
		return &kernelops.Error{Object: id.String(), Err: kernelops.ErrNotFound}
	}
	if err := b.applyEntries(ctx, s, pr.entries, nil); err != nil {
		return wrap(id.String(), err, spdOverride)
	}
	delete(b.pols, id)
	return nil
}

// GetPolicy reads a policy keyplane installed.
func (b *driver) GetPolicy(ctx context.Context, id kernelops.PolicyID) (*kernelops.PolicyEntry, error) {
	if err := ctx.Err(); err != nil {
		return nil, &kernelops.Error{Backend: Name, Op: "get policy", Object: id.String(), Err: err}
	}
	b.mu.Lock()
	defer b.mu.Unlock()
	pr := b.pols[id]
	if pr == nil {
		return nil, &kernelops.Error{Backend: Name, Op: "get policy", Object: id.String(), Err: kernelops.ErrNotFound}
	}
	return &kernelops.PolicyEntry{Policy: *pr.p.Clone(), AddTime: pr.addTime}, nil
}

// Policies streams keyplane's policies, then every other entry in VPP's
// SPDs, the holes among them (described as well as an SPD entry allows).
func (b *driver) Policies(ctx context.Context) iter.Seq2[*kernelops.PolicyEntry, error] {
	return func(yield func(*kernelops.PolicyEntry, error) bool) {
		s, err := b.lockSession(ctx)
		if err != nil {
			yield(nil, wrap("", err, nil))
			return
		}
		owned := make([]*kernelops.PolicyEntry, 0, len(b.pols))
		var mine []ipsec_types.IpsecSpdEntryV2 // holes are not: they list as pass policies
		for _, pr := range b.pols {
			owned = append(owned, &kernelops.PolicyEntry{Policy: *pr.p.Clone(), AddTime: pr.addTime})
			mine = append(mine, pr.entries...)
		}
		sadReqID := map[uint32]uint32{}
		for id, r := range b.bySadID {
			sadReqID[id] = r.sa.ReqID
		}
		b.mu.Unlock()
		spds, err := dump[*ipsec.IpsecSpdsDetails](ctx, s, &ipsec.IpsecSpdsDump{})
		if err != nil {
			yield(nil, wrap("", err, nil))
			return
		}
		var foreign []ipsec_types.IpsecSpdEntryV2
		for _, spd := range spds {
			ds, err := dump[*ipsec.IpsecSpdDetails](ctx, s, &ipsec.IpsecSpdDump{SpdID: spd.SpdID, SaID: ^uint32(0)})
			if err != nil {
				yield(nil, wrap("", err, nil))
				return
			}
			for _, d := range ds {
				foreign = append(foreign, entryFromDetails(d.Entry))
			}
		}
		foreign, _ = multisetDiff(foreign, mine)
		for _, e := range owned {
			if !yield(e, nil) {
				return
			}
		}
		pe := &kernelops.PolicyEntry{}
		for _, e := range foreign {
			policyFromEntry(pe, e, sadReqID)
			if !yield(pe, nil) {
				return
			}
		}
	}
}

// entryFromDetails converts a dumped (v1) entry to the v2 form keyplane
// installs; the fields are the same.
func entryFromDetails(e ipsec_types.IpsecSpdEntry) ipsec_types.IpsecSpdEntryV2 {
	return ipsec_types.IpsecSpdEntryV2(e)
}

// policyFromEntry describes a VPP SPD entry keyplane did not install.
func policyFromEntry(pe *kernelops.PolicyEntry, e ipsec_types.IpsecSpdEntryV2, reqids map[uint32]uint32) {
	*pe = kernelops.PolicyEntry{}
	p := &pe.Policy
	local := toPrefixRange(e.LocalAddressStart, e.LocalAddressStop)
	remote := toPrefixRange(e.RemoteAddressStart, e.RemoteAddressStop)
	lport, rport := singlePort(e.LocalPortStart, e.LocalPortStop), singlePort(e.RemotePortStart, e.RemotePortStop)
	if e.IsOutbound {
		p.Dir = kernelops.DirOut
		p.Selector = kernelops.Selector{Src: local, Dst: remote, SrcPort: lport, DstPort: rport}
	} else {
		p.Dir = kernelops.DirIn
		p.Selector = kernelops.Selector{Src: remote, Dst: local, SrcPort: rport, DstPort: lport}
	}
	if e.Protocol != protoAny {
		p.Selector.Proto = e.Protocol
	}
	p.Priority = keyplanePriority(e.Priority)
	switch e.Policy {
	case ipsec_types.IPSEC_API_SPD_ACTION_BYPASS:
		p.Action = kernelops.ActionPass
	case ipsec_types.IPSEC_API_SPD_ACTION_DISCARD:
		p.Action = kernelops.ActionBlock
	default:
		p.Action = kernelops.ActionIPsec
		p.Templates = []kernelops.Template{{Proto: kernelops.ProtoESP, ReqID: reqids[e.SaID]}}
	}
}

// toPrefixRange gives the prefix a range is, the zero prefix for "any",
// or the smallest prefix covering a range that is not a prefix.
func toPrefixRange(lo, hi ip_types.Address) netip.Prefix {
	a, z := fromAddr(lo), fromAddr(hi)
	p, ok := rangePrefix(a, z)
	if ok {
		if p.Bits() == 0 {
			return netip.Prefix{}
		}
		return p
	}
	for bits := a.BitLen(); bits >= 0; bits-- {
		p := netip.PrefixFrom(a, bits).Masked()
		if p.Contains(z) {
			return p
		}
	}
	return netip.Prefix{}
}

func singlePort(lo, hi uint16) uint16 {
	if lo == hi {
		return lo
	}
	return 0
}

// FlushPolicies removes every policy keyplane installed.
func (b *driver) FlushPolicies(ctx context.Context) error {
	s, err := b.lockSession(ctx)
	if err != nil {
		return wrap("", err, nil)
	}
	defer b.mu.Unlock()
	var errs []error
	for id, pr := range b.pols {
		if err := b.applyEntries(ctx, s, pr.entries, nil); err != nil {
			errs = append(errs, wrap(id.String(), err, spdOverride))
			continue
		}
		delete(b.pols, id)
	}
	return errors.Join(errs...)
}
