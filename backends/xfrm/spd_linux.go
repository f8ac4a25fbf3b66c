package xfrm

import (
	"context"
	"errors"
	"fmt"
	"iter"

	"github.com/keyplane/keyplane/kernelops"
	"github.com/vishvananda/netlink/nl"
	"golang.org/x/sys/unix"
)

// The kernel stores no "trap" action: a trap policy is an ipsec policy
// whose SA is negotiated on demand. This process remembers which of its
// policies are traps; any other ipsec policy reads as a trap when its
// priority lies in the trap band (kernelops.PriorityBandTrap), which is
// where AutoPriority puts traps, so traps survive a restart.

func (b *driver) rememberAction(p *kernelops.Policy) {
	id := canonID(p.ID())
	b.mu.Lock()
	defer b.mu.Unlock()
	if p.Action == kernelops.ActionTrap {
		b.traps[id] = struct{}{}
	} else {
		delete(b.traps, id)
	}
}

func (b *driver) forgetAction(id kernelops.PolicyID) {
	b.mu.Lock()
	defer b.mu.Unlock()
	delete(b.traps, canonID(id))
}

// resolveAction turns a read-back ipsec policy into a trap where it is one.
func (b *driver) resolveAction(e *kernelops.PolicyEntry) {
	if e.Action != kernelops.ActionIPsec {
		return
	}
	b.mu.Lock()
	_, trap := b.traps[e.ID()]
	b.mu.Unlock()
	if trap || (e.Priority >= kernelops.PriorityBandTrap && e.Priority < kernelops.PriorityBandBlock) {
		e.Action = kernelops.ActionTrap
	}
}

// AddPolicy implements kernelops.SPD with XFRM_MSG_NEWPOLICY.
func (b *driver) AddPolicy(ctx context.Context, p *kernelops.Policy) error {
	return b.putPolicy(ctx, nl.XFRM_MSG_NEWPOLICY, p)
}

// ReplacePolicy implements kernelops.SPD with XFRM_MSG_UPDPOLICY.
func (b *driver) ReplacePolicy(ctx context.Context, p *kernelops.Policy) error {
	return b.putPolicy(ctx, nl.XFRM_MSG_UPDPOLICY, p)
}

func (b *driver) putPolicy(ctx context.Context, typ uint16, p *kernelops.Policy) error {
	err := b.do(ctx, p.ID().String(), func(mb *msgBuilder, seq uint32) error {
		appendPolicy(mb, typ, reqFlags, seq, p, b.newIndex(p.Dir))
		return nil
	}, nil)
	if err == nil {
		b.rememberAction(p)
	}
	return err
}

// zeroSelFamilies is the order in which a selector without prefixes is
// looked up: it installs as IPv4 unless a template said IPv6.
var zeroSelFamilies = []uint16{unix.AF_INET, unix.AF_INET6}

func familiesOf(id kernelops.PolicyID) []uint16 {
	if id.Selector.Src.IsValid() || id.Selector.Dst.IsValid() {
		return []uint16{selectorFamily(id.Selector, netipZero)}
	}
	return zeroSelFamilies
}

// DeletePolicy implements kernelops.SPD.
func (b *driver) DeletePolicy(ctx context.Context, id kernelops.PolicyID) error {
	var err error
	for _, fam := range familiesOf(id) {
		err = b.do(ctx, id.String(), func(mb *msgBuilder, seq uint32) error {
			appendPolicyID(mb, nl.XFRM_MSG_DELPOLICY, reqFlags, seq, id, fam)
			return nil
		}, nil)
		if !errors.Is(err, kernelops.ErrNotFound) {
			break
		}
	}
	if err == nil {
		b.forgetAction(id)
	}
	return err
}

// GetPolicy implements kernelops.SPD.
func (b *driver) GetPolicy(ctx context.Context, id kernelops.PolicyID) (*kernelops.PolicyEntry, error) {
	var e *kernelops.PolicyEntry
	var meta polMeta
	var err error
	for _, fam := range familiesOf(id) {
		err = b.do(ctx, id.String(), func(mb *msgBuilder, seq uint32) error {
			appendPolicyID(mb, nl.XFRM_MSG_GETPOLICY, reqFlags, seq, id, fam)
			return nil
		}, func(m nlMsg) error {
			if m.Type != nl.XFRM_MSG_NEWPOLICY {
				return nil
			}
			e = &kernelops.PolicyEntry{}
			return decodePolicy(m.Data, e, &meta)
		})
		if !errors.Is(err, kernelops.ErrNotFound) {
			break
		}
	}
	if err != nil {
		return nil, err
	}
	if e == nil {
		return nil, &kernelops.Error{Object: id.String(), Err: kernelops.ErrNotFound}
	}
	b.resolveAction(e)
	return e, nil
}

// Policies implements kernelops.SPD: one streaming dump. Per-socket
// policies (the IKE sockets' bypass) and sub-policies are not SPD
// entries and are left out.
func (b *driver) Policies(ctx context.Context) iter.Seq2[*kernelops.PolicyEntry, error] {
	return func(yield func(*kernelops.PolicyEntry, error) bool) {
		var e kernelops.PolicyEntry
		var meta polMeta
		stopped := false
		err := b.dumpXFRM(ctx, nl.XFRM_MSG_GETPOLICY, func(m nlMsg) (bool, error) {
			if m.Type != nl.XFRM_MSG_NEWPOLICY {
				return true, nil
			}
			if err := decodePolicy(m.Data, &e, &meta); err != nil {
				return false, fmt.Errorf("decode policy: %w", err)
			}
			if meta.Dir > xfrmPolicyFwd || meta.SubType {
				return true, nil
			}
			b.resolveAction(&e)
			if !yield(&e, nil) {
				stopped = true
				return false, nil
			}
			return true, nil
		})
		if err != nil && !stopped {
			yield(nil, err)
		}
	}
}

// ownsPolicy applies the ownership rule of doc.go.
func (b *driver) ownsPolicy(e *kernelops.PolicyEntry, m *polMeta) bool {
	if b.ownsIndex(m.Index) {
		return true
	}
	for _, t := range e.Templates {
		if b.opts.Owns(t.ReqID) {
			return true
		}
	}
	return false
}

// policyRef addresses a policy by kernel index for deletion.
type policyRef struct {
	index uint32
	dir   uint8
	mark  kernelops.Mark
	ifID  uint32
	id    kernelops.PolicyID
}

// FlushPolicies implements kernelops.SPD: it deletes keyplane's own
// policies by index and leaves everyone else's.
func (b *driver) FlushPolicies(ctx context.Context) error {
	var refs []policyRef
	var e kernelops.PolicyEntry
	var meta polMeta
	err := b.dumpXFRM(ctx, nl.XFRM_MSG_GETPOLICY, func(m nlMsg) (bool, error) {
		if m.Type != nl.XFRM_MSG_NEWPOLICY {
			return true, nil
		}
		if err := decodePolicy(m.Data, &e, &meta); err != nil {
			return false, fmt.Errorf("decode policy: %w", err)
		}
		if meta.Dir <= xfrmPolicyFwd && !meta.SubType && b.ownsPolicy(&e, &meta) {
			refs = append(refs, policyRef{meta.Index, meta.Dir, e.Mark, e.IfID, e.ID()})
		}
		return true, nil
	})
	if err != nil {
		return err
	}
	reqs := make([]batchReq, len(refs))
	for i, r := range refs {
		reqs[i] = batchReq{object: r.id.String(), build: func(mb *msgBuilder, seq uint32) error {
			appendPolicyIndex(mb, nl.XFRM_MSG_DELPOLICY, reqFlags, seq, r.index, r.dir, r.mark, r.ifID)
			return nil
		}}
	}
	b.runBatch(ctx, reqs)
	for i, r := range reqs {
		if r.err != nil && !errors.Is(r.err, kernelops.ErrNotFound) {
			return r.err
		}
		b.forgetAction(refs[i].id)
	}
	b.mu.Lock()
	clear(b.holes)
	b.mu.Unlock()
	return nil
}
