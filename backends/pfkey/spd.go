//go:build linux || freebsd || netbsd || darwin

package pfkey

import (
	"context"
	"errors"
	"hash/maphash"
	"iter"
	"net/netip"
	"sync"

	"github.com/keyplane/keyplane/backends/pfkey/sadb"
	"github.com/keyplane/keyplane/kernelops"
)

// AddPolicy implements kernelops.SPD with SADB_X_SPDADD.
func (b *driver) AddPolicy(ctx context.Context, p *kernelops.Policy) error {
	return b.putPolicy(ctx, sadb.MsgSPDAdd, p)
}

// ReplacePolicy implements kernelops.SPD with SADB_X_SPDUPDATE, which adds
// a missing policy.
func (b *driver) ReplacePolicy(ctx context.Context, p *kernelops.Policy) error {
	return b.putPolicy(ctx, sadb.MsgSPDUpdate, p)
}

func (b *driver) putPolicy(ctx context.Context, t sadb.MsgType, p *kernelops.Policy) error {
	m, kerr := b.x.policyMsg(t, p)
	if kerr != nil {
		return kerr
	}
	reply, err := b.request(ctx, p.ID().String(), m)
	if err != nil {
		return err
	}
	id := normPolicyID(p.ID())
	b.mu.Lock()
	if pol := reply.Policy(); pol != nil && pol.ID != 0 {
		b.index[id] = pol.ID
	} else {
		delete(b.index, id)
	}
	if p.Action == kernelops.ActionTrap {
		b.traps[id] = true
	} else {
		delete(b.traps, id)
	}
	b.mu.Unlock()
	return nil
}

// DeletePolicy implements kernelops.SPD with SADB_X_SPDDELETE (by
// selector and direction).
func (b *driver) DeletePolicy(ctx context.Context, id kernelops.PolicyID) error {
	if err := b.checkPolicyID(id); err != nil {
		return err
	}
	if _, err := b.request(ctx, id.String(), b.x.policySelectorMsg(sadb.MsgSPDDelete, id)); err != nil {
		return err
	}
	b.dropPolicy(normPolicyID(id))
	return nil
}

func (b *driver) dropPolicy(id kernelops.PolicyID) {
	b.mu.Lock()
	delete(b.index, id)
	delete(b.traps, id)
	b.mu.Unlock()
}

func (b *driver) checkPolicyID(id kernelops.PolicyID) error {
	if e := b.x.checkPolicyID(id); e != nil {
		return e
	}
	return nil
}

// GetPolicy implements kernelops.SPD. SADB_X_SPDGET looks policies up by
// kernel index only: the index the add returned is tried first, a dump
// is the fallback (policies added before this backend opened).
func (b *driver) GetPolicy(ctx context.Context, id kernelops.PolicyID) (*kernelops.PolicyEntry, error) {
	if err := b.checkPolicyID(id); err != nil {
		return nil, err
	}
	id = normPolicyID(id)
	b.mu.Lock()
	idx, ok := b.index[id]
	b.mu.Unlock()
	if ok {
		e, err := b.policyByIndex(ctx, idx)
		if err == nil && e.ID() == id {
			return e, nil
		}
		if err != nil && !errors.Is(err, kernelops.ErrNotFound) {
			return nil, err
		}
	}
	for e, err := range b.Policies(ctx) {
		if err != nil {
			return nil, err
		}
		if e.ID() == id {
			c := *e
			c.Templates = append([]kernelops.Template(nil), e.Templates...)
			return &c, nil
		}
	}
	return nil, &kernelops.Error{Object: id.String(), Err: kernelops.ErrNotFound, Detail: "no such policy"}
}

func (b *driver) policyByIndex(ctx context.Context, idx uint32) (*kernelops.PolicyEntry, error) {
	reply, err := b.request(ctx, "", policyIndexMsg(sadb.MsgSPDGet, idx))
	if err != nil {
		return nil, err
	}
	e := &kernelops.PolicyEntry{}
	if _, err := b.x.policyEntry(reply, e); err != nil {
		return nil, &kernelops.Error{Err: err}
	}
	b.markTrap(e)
	return e, nil
}

// markTrap restores ActionTrap: the kernel stores a trap as an ipsec
// policy (it raises an acquire whenever no SA matches).
func (b *driver) markTrap(e *kernelops.PolicyEntry) {
	if e.Action != kernelops.ActionIPsec {
		return
	}
	b.mu.Lock()
	if b.traps[e.ID()] {
		e.Action = kernelops.ActionTrap
	}
	b.mu.Unlock()
}

// Policies implements kernelops.SPD with SADB_X_SPDDUMP, streamed.
// Per-socket policies (IKE bypass) are not in it.
func (b *driver) Policies(ctx context.Context) iter.Seq2[*kernelops.PolicyEntry, error] {
	return func(yield func(*kernelops.PolicyEntry, error) bool) {
		var e kernelops.PolicyEntry
		stopped := false
		err := b.dump(ctx, sadb.MsgSPDDump, func(m *sadb.Msg) bool {
			idx, err := b.x.policyEntry(m, &e)
			if err != nil {
				return true
			}
			// Remember every index seen, so GetPolicy of a policy this
			// backend did not add needs one dump, not one per call.
			b.mu.Lock()
			b.index[e.ID()] = idx
			b.mu.Unlock()
			b.markTrap(&e)
			if !yield(&e, nil) {
				stopped = true
				return false
			}
			return true
		})
		if err != nil && !stopped {
			yield(nil, err)
		}
	}
}

// FlushPolicies implements kernelops.SPD. SADB_X_SPDFLUSH would empty the
// whole SPD; this deletes, by index, only policies with a template whose
// kernel reqid is in the owned window.
func (b *driver) FlushPolicies(ctx context.Context) error {
	type victim struct {
		idx uint32
		id  kernelops.PolicyID
	}
	var vs []victim
	var e kernelops.PolicyEntry
	err := b.dump(ctx, sadb.MsgSPDDump, func(m *sadb.Msg) bool {
		pol := m.Policy()
		if pol == nil {
			return true
		}
		for _, r := range pol.Requests {
			if b.x.rq.inWindow(r.ReqID) {
				if idx, err := b.x.policyEntry(m, &e); err == nil {
					vs = append(vs, victim{idx, e.ID()})
				}
				break
			}
		}
		return true
	})
	if err != nil {
		return err
	}
	return b.parallel(ctx, len(vs), func(i int) error {
		_, err := b.request(ctx, vs[i].id.String(), policyIndexMsg(sadb.MsgSPDDelete2, vs[i].idx))
		b.dropPolicy(vs[i].id)
		if errors.Is(err, kernelops.ErrNotFound) {
			return nil
		}
		return err
	})
}

// ndTypes are the ICMPv6 neighbour and router discovery messages (RFC
// 4861): router solicitation and advertisement, neighbour solicitation
// and advertisement, redirect. Selectors carry the ICMP type in the
// source port, as XFRM and KAME do.
var ndTypes = []uint16{133, 134, 135, 136, 137}

// OpenHoles implements kernelops.Holes with pass policies (type NONE) in
// the SPD: UDP to and from each IKE port in both families, and ICMPv6
// neighbour discovery. It replaces the set an earlier call opened.
func (b *driver) OpenHoles(ctx context.Context, h kernelops.HoleSet) error {
	if err := b.CloseHoles(ctx); err != nil {
		return err
	}
	var ps []*kernelops.Policy
	for _, port := range h.IKEPorts {
		for _, any := range []netip.Prefix{netip.PrefixFrom(netip.IPv4Unspecified(), 0), netip.PrefixFrom(netip.IPv6Unspecified(), 0)} {
			ps = append(ps,
				&kernelops.Policy{Selector: kernelops.Selector{Src: any, Dst: any, Proto: 17, SrcPort: port}, Dir: kernelops.DirOut, Action: kernelops.ActionPass},
				&kernelops.Policy{Selector: kernelops.Selector{Src: any, Dst: any, Proto: 17, DstPort: port}, Dir: kernelops.DirIn, Action: kernelops.ActionPass})
		}
	}
	if h.IPv6ND {
		any := netip.PrefixFrom(netip.IPv6Unspecified(), 0)
		for _, t := range ndTypes {
			for _, d := range []kernelops.Direction{kernelops.DirOut, kernelops.DirIn} {
				ps = append(ps, &kernelops.Policy{Selector: kernelops.Selector{Src: any, Dst: any, Proto: 58, SrcPort: t}, Dir: d, Action: kernelops.ActionPass})
			}
		}
	}
	for _, p := range ps {
		if err := b.putPolicy(ctx, sadb.MsgSPDUpdate, p); err != nil {
			b.CloseHoles(ctx) // roll back what this call added
			return err
		}
		b.mu.Lock()
		b.holes = append(b.holes, p.ID())
		b.mu.Unlock()
	}
	return nil
}

// CloseHoles implements kernelops.Holes: it removes the pass policies
// OpenHoles installed.
func (b *driver) CloseHoles(ctx context.Context) error {
	b.mu.Lock()
	holes := b.holes
	b.holes = nil
	b.mu.Unlock()
	var first error
	for _, id := range holes {
		if err := b.DeletePolicy(ctx, id); err != nil && !errors.Is(err, kernelops.ErrNotFound) && first == nil {
			first = err
		}
	}
	return first
}

// Apply implements kernelops.Batcher: operations run on up to eight
// sockets at once; operations on the same SA or policy run in order on
// one of them, so a batch means what it would mean applied in sequence.
func (b *driver) Apply(ctx context.Context, ops []kernelops.Op) error {
	const workers = 8
	var lanes [workers][]int
	seed := maphash.MakeSeed()
	for i := range ops {
		var key string
		switch op := &ops[i]; op.Kind {
		case kernelops.OpAddSA, kernelops.OpUpdateSA:
			if op.SA != nil {
				key = op.SA.ID.String()
			}
		case kernelops.OpDeleteSA:
			key = op.SAID.String()
		case kernelops.OpAddPolicy, kernelops.OpReplacePolicy:
			if op.Policy != nil {
				key = normPolicyID(op.Policy.ID()).String()
			}
		case kernelops.OpDeletePolicy:
			key = normPolicyID(op.PolicyID).String()
		}
		lane := maphash.String(seed, key) % workers
		lanes[lane] = append(lanes[lane], i)
	}
	var wg sync.WaitGroup
	for _, lane := range lanes {
		wg.Go(func() {
			for _, i := range lane {
				ops[i].Err = b.applyOne(ctx, &ops[i])
			}
		})
	}
	wg.Wait()
	return kernelops.BatchResult(ops)
}

func (b *driver) applyOne(ctx context.Context, op *kernelops.Op) error {
	if err := ctx.Err(); err != nil {
		return err
	}
	switch op.Kind {
	case kernelops.OpAddSA:
		return b.AddSA(ctx, op.SA)
	case kernelops.OpUpdateSA:
		return b.UpdateSA(ctx, op.SA)
	case kernelops.OpDeleteSA:
		return b.DeleteSA(ctx, op.SAID)
	case kernelops.OpAddPolicy:
		return b.AddPolicy(ctx, op.Policy)
	case kernelops.OpReplacePolicy:
		return b.ReplacePolicy(ctx, op.Policy)
	case kernelops.OpDeletePolicy:
		return b.DeletePolicy(ctx, op.PolicyID)
	}
	return kernelops.Invalid(Name, "batch", "", "Kind", "unknown operation %d", op.Kind)
}
