package kernelops

import (
	"context"
	"errors"
	"iter"
)

// The SAD, SPD and batch through the front end.

// AllocSPI implements SAD; the driver sees the request with its range
// resolved (ValidateSPIRequest).
func (h *Handle) AllocSPI(ctx context.Context, req SPIRequest) (uint32, error) {
	const op = "alloc SPI"
	if err := h.enter(ctx, op, CapSAD, h.sad != nil); err != nil {
		return 0, err
	}
	req, err := ValidateSPIRequest(h.name, op, req, h.opts)
	if err != nil {
		return 0, err
	}
	var spi uint32
	if h.alloc != nil {
		spi, err = h.alloc.AllocSPI(ctx, req)
	} else {
		spi, err = h.spis.allocate(ctx, h.sad, req)
	}
	if err == nil && (spi < req.Min || spi > req.Max) {
		err = &Error{Err: ErrNoSpace, Detail: "the dataplane returned an SPI outside the requested range"}
	}
	if err != nil { // named only for an error: every child's SPI is asked for here
		return 0, h.wrap(op, req.Proto.String()+" "+addrText(req.Src)+"->"+addrText(req.Dst), err)
	}
	return spi, nil
}

// AddSA implements SAD.
func (h *Handle) AddSA(ctx context.Context, sa *SA) error {
	return h.putSA(ctx, OpAddSA.String(), sa, false)
}

// UpdateSA implements SAD.
func (h *Handle) UpdateSA(ctx context.Context, sa *SA) error {
	return h.putSA(ctx, OpUpdateSA.String(), sa, true)
}

func (h *Handle) putSA(ctx context.Context, op string, sa *SA, update bool) error {
	if err := h.enter(ctx, op, CapSAD, h.sad != nil); err != nil {
		return err
	}
	if err := h.caps.CheckSA(h.name, op, sa); err != nil {
		return err
	}
	if err := syncOnUpdate(h.name, op, sa, update); err != nil {
		return err
	}
	h.lockLife()
	defer h.unlockLife()
	var err error
	if update {
		err = h.sad.UpdateSA(ctx, sa)
	} else {
		err = h.sad.AddSA(ctx, sa)
	}
	if err != nil {
		return h.wrap(op, sa.ID.String(), err)
	}
	h.installed(sa, update)
	return nil
}

// syncOnUpdate refuses an initial sync state on an update: XFRM's UPDSA
// keeps the SA's replay state and usage, so it would be dropped.
func syncOnUpdate(backend, op string, sa *SA, update bool) error {
	if update && sa.Sync != nil {
		return Invalid(backend, op, sa.ID.String(), "Sync", "an update keeps the SA's sync state: set it with SetSyncState")
	}
	return nil
}

// DeleteSA implements SAD.
func (h *Handle) DeleteSA(ctx context.Context, id SAID) error {
	op := OpDeleteSA.String()
	if err := h.enter(ctx, op, CapSAD, h.sad != nil); err != nil {
		return err
	}
	if err := h.caps.CheckSAID(h.name, op, id); err != nil {
		return err
	}
	h.lockLife()
	defer h.unlockLife()
	err := h.sad.DeleteSA(ctx, id)
	if err != nil {
		err = h.wrap(op, id.String(), err)
	}
	return h.deleted(id, err)
}

// deleted follows a driver's DeleteSA (its error wrapped): the SA is gone
// either way, and a delete of an SPI only reserved by AllocSPI ends the
// reservation.
func (h *Handle) deleted(id SAID, err error) error {
	if err == nil || errors.Is(err, ErrNotFound) {
		h.gone(id)
	}
	if errors.Is(err, ErrNotFound) && h.spis != nil && h.spis.dropLarval(id) {
		return nil
	}
	return err
}

// GetSA implements SAD.
func (h *Handle) GetSA(ctx context.Context, id SAID) (*SAEntry, error) {
	const op = "get SA"
	if err := h.enter(ctx, op, CapSAD, h.sad != nil); err != nil {
		return nil, err
	}
	if err := h.caps.CheckSAID(h.name, op, id); err != nil {
		return nil, err
	}
	e, err := h.sad.GetSA(ctx, id)
	if err == nil && e == nil {
		err = ErrNotFound
	}
	if err != nil {
		return nil, h.wrap(op, id.String(), err)
	}
	h.fillLife(e)
	return e, nil
}

// SAs implements SAD; the entry is the driver's, reused between yields.
func (h *Handle) SAs(ctx context.Context) iter.Seq2[*SAEntry, error] {
	return dump(h, ctx, "dump SAs", CapSAD, h.sad != nil, func() iter.Seq2[*SAEntry, error] { return h.sad.SAs(ctx) }, h.fillLife)
}

// fillLife sets e's lifetimes from the software lifetimes' tracking (for
// a driver claiming them), which holds what the SA was added or updated
// with: the driver need not keep a copy per SA. An SA not tracked (not
// installed through the Handle, larval) keeps the driver's.
func (h *Handle) fillLife(e *SAEntry) {
	if !h.swLife {
		return
	}
	if lt, ok := h.life.Lifetimes(e.ID); ok {
		e.Lifetime = lt
	}
}

// Usage implements UsageReader: the driver's bulk read, else its SAD
// dump.
func (h *Handle) Usage(ctx context.Context) iter.Seq2[Usage, error] {
	return func(yield func(Usage, error) bool) {
		if err := h.enter(ctx, "read usage", CapSAD, h.sad != nil); err != nil {
			yield(Usage{}, err)
			return
		}
		for u, err := range h.readUsage(ctx) {
			if !yield(u, h.wrap("read usage", "", err)) || err != nil {
				return
			}
		}
	}
}

// readUsage is the driver's usage, unchecked: what idle scans read.
func (h *Handle) readUsage(ctx context.Context) iter.Seq2[Usage, error] {
	if h.usage != nil {
		return h.usage.Usage(ctx)
	}
	return func(yield func(Usage, error) bool) {
		for e, err := range h.sad.SAs(ctx) {
			if err != nil {
				yield(Usage{}, err)
				return
			}
			if !yield(UsageOf(e), nil) {
				return
			}
		}
	}
}

// FlushSAs implements SAD.
func (h *Handle) FlushSAs(ctx context.Context) error {
	const op = "flush SAs"
	if err := h.enter(ctx, op, CapSAD, h.sad != nil); err != nil {
		return err
	}
	h.lockLife()
	defer h.unlockLife()
	err := h.sad.FlushSAs(ctx)
	if h.swLife {
		h.life.RemoveIf(func(_ SAID, reqid uint32) bool { return h.opts.Owns(reqid) })
	}
	if h.spis != nil {
		if rerr := h.spis.resync(ctx, h.sad, h.opts.Owns); err == nil {
			err = rerr
		}
	}
	return h.wrap(op, "", err)
}

// AddPolicy implements SPD.
func (h *Handle) AddPolicy(ctx context.Context, p *Policy) error {
	return h.putPolicy(ctx, OpAddPolicy.String(), p, SPD.AddPolicy)
}

// ReplacePolicy implements SPD.
func (h *Handle) ReplacePolicy(ctx context.Context, p *Policy) error {
	return h.putPolicy(ctx, OpReplacePolicy.String(), p, SPD.ReplacePolicy)
}

func (h *Handle) putPolicy(ctx context.Context, op string, p *Policy, put func(SPD, context.Context, *Policy) error) error {
	if err := h.enter(ctx, op, CapSPD, h.spd != nil); err != nil {
		return err
	}
	if err := h.caps.CheckPolicy(h.name, op, p); err != nil {
		return err
	}
	if err := put(h.spd, ctx, p); err != nil {
		return h.wrap(op, p.ID().String(), err)
	}
	return nil
}

// DeletePolicy implements SPD.
func (h *Handle) DeletePolicy(ctx context.Context, id PolicyID) error {
	op := OpDeletePolicy.String()
	if err := h.enter(ctx, op, CapSPD, h.spd != nil); err != nil {
		return err
	}
	if err := h.caps.CheckPolicyID(h.name, op, id); err != nil {
		return err
	}
	if err := h.spd.DeletePolicy(ctx, id); err != nil {
		return h.wrap(op, id.String(), err)
	}
	return nil
}

// GetPolicy implements SPD.
func (h *Handle) GetPolicy(ctx context.Context, id PolicyID) (*PolicyEntry, error) {
	const op = "get policy"
	if err := h.enter(ctx, op, CapSPD, h.spd != nil); err != nil {
		return nil, err
	}
	if err := h.caps.CheckPolicyID(h.name, op, id); err != nil {
		return nil, err
	}
	e, err := h.spd.GetPolicy(ctx, id)
	if err == nil && e == nil {
		err = ErrNotFound
	}
	if err != nil {
		return nil, h.wrap(op, id.String(), err)
	}
	return e, nil
}

// Policies implements SPD; the entry is the driver's, reused between
// yields.
func (h *Handle) Policies(ctx context.Context) iter.Seq2[*PolicyEntry, error] {
	return dump(h, ctx, "dump policies", CapSPD, h.spd != nil, func() iter.Seq2[*PolicyEntry, error] { return h.spd.Policies(ctx) }, nil)
}

// FlushPolicies implements SPD.
func (h *Handle) FlushPolicies(ctx context.Context) error {
	const op = "flush policies"
	if err := h.enter(ctx, op, CapSPD, h.spd != nil); err != nil {
		return err
	}
	return h.wrap(op, "", h.spd.FlushPolicies(ctx))
}

// dump streams the driver's seq, checked and wrapped; fill, when not nil,
// completes each entry before it is yielded.
func dump[E any](h *Handle, ctx context.Context, op string, c Cap, have bool, seq func() iter.Seq2[*E, error], fill func(*E)) iter.Seq2[*E, error] {
	return func(yield func(*E, error) bool) {
		if err := h.enter(ctx, op, c, have); err != nil {
			yield(nil, err)
			return
		}
		for e, err := range seq() {
			if err != nil {
				yield(nil, h.wrap(op, "", err))
				return
			}
			if fill != nil {
				fill(e)
			}
			if !yield(e, nil) {
				return
			}
		}
	}
}

// Apply implements Batcher: each op is checked as its single call would
// be (a bad one fails alone), the rest go to the driver's Batcher in one
// batch, and every op's error is wrapped.
func (h *Handle) Apply(ctx context.Context, ops []Op) error {
	if err := h.enter(ctx, "batch", CapBatch, h.batch != nil); err != nil {
		return err
	}
	failed := 0
	for i := range ops {
		ops[i].Err = h.checkOp(ctx, &ops[i])
		if ops[i].Err != nil {
			failed++
		}
	}
	// The driver gets the ops that passed: ops itself when all did, so a
	// large batch is not copied.
	pass, idx := ops, []int(nil)
	if failed > 0 {
		pass = make([]Op, 0, len(ops)-failed)
		idx = make([]int, 0, len(ops)-failed)
		for i := range ops {
			if ops[i].Err == nil {
				pass = append(pass, ops[i])
				idx = append(idx, i)
			}
		}
	}
	h.lockLife()
	if len(pass) > 0 {
		h.batch.Apply(ctx, pass)
	}
	for j := range pass {
		i := j
		if idx != nil {
			i = idx[j]
		}
		op := &ops[i]
		err := pass[j].Err
		if err != nil { // named only when it failed: a batch holds thousands
			err = h.wrap(op.Kind.String(), opObject(op), err)
		}
		switch op.Kind {
		case OpAddSA, OpUpdateSA:
			if err == nil {
				h.installed(op.SA, op.Kind == OpUpdateSA)
			}
		case OpDeleteSA:
			err = h.deleted(op.SAID, err)
		}
		op.Err = err
	}
	h.unlockLife()
	return BatchResult(ops)
}

// checkOp checks one batched op as its single call would be checked.
func (h *Handle) checkOp(ctx context.Context, op *Op) error {
	name := op.Kind.String()
	switch op.Kind {
	case OpAddSA, OpUpdateSA:
		if err := h.enter(ctx, name, CapSAD, h.sad != nil); err != nil {
			return err
		}
		if err := h.caps.CheckSA(h.name, name, op.SA); err != nil {
			return err
		}
		return syncOnUpdate(h.name, name, op.SA, op.Kind == OpUpdateSA)
	case OpDeleteSA:
		if err := h.enter(ctx, name, CapSAD, h.sad != nil); err != nil {
			return err
		}
		return h.caps.CheckSAID(h.name, name, op.SAID)
	case OpAddPolicy, OpReplacePolicy:
		if err := h.enter(ctx, name, CapSPD, h.spd != nil); err != nil {
			return err
		}
		return h.caps.CheckPolicy(h.name, name, op.Policy)
	case OpDeletePolicy:
		if err := h.enter(ctx, name, CapSPD, h.spd != nil); err != nil {
			return err
		}
		return h.caps.CheckPolicyID(h.name, name, op.PolicyID)
	}
	return Invalid(h.name, "batch", "", "Kind", "unknown operation %d", op.Kind)
}

func opObject(op *Op) string {
	switch op.Kind {
	case OpAddSA, OpUpdateSA:
		return op.SA.ID.String()
	case OpDeleteSA:
		return op.SAID.String()
	case OpAddPolicy, OpReplacePolicy:
		return op.Policy.ID().String()
	case OpDeletePolicy:
		return op.PolicyID.String()
	}
	return ""
}
