package ike

import (
	"errors"
	"fmt"
	"slices"
	"strings"
	"time"

	"github.com/keyplane/keyplane/kernelops"
)

// A takeover installs its children in batches: each batch's SAs go to
// the dataplane in one kernelops.Apply (one fence check, and on XFRM one
// sendmsg), then their sequence numbers and replay state (Syncer), then
// their policies in a second Apply — so no policy sends traffic into an
// SA whose sequence number is not yet past the old node's. A child whose
// step fails is rolled back alone; the others go on.

// restoreBatch is how many children one batch installs: 2 SAs and up to
// 3 policies each, within one XFRM chunk of 1,024 requests.
const restoreBatch = 128

// RestoreStats says where a takeover's restore spent its time; Restore
// adds to it (RestoreOptions.Stats).
type RestoreStats struct {
	IKESAs   int // restored
	Children int // restored
	Failed   int // children rolled back
	Batches  int
	// SAs, Sync and Policies are the dataplane's time adding the SAs
	// (batched), setting their sequence numbers and replay state, and
	// adding the policies (batched); Report the rest, after the last
	// batch: the engine's bookkeeping, of which Sink is the state sink's
	// (the children's records, counter sync), State the children's state
	// change (log, events, hooks) and Idle the idle watch set-up; Total
	// the whole of Restore's work.
	SAs, Sync, Policies, Report, Total time.Duration
	Sink, State, Idle                  time.Duration
}

// Add adds o's figures to s.
func (s *RestoreStats) Add(o RestoreStats) {
	s.IKESAs += o.IKESAs
	s.Children += o.Children
	s.Failed += o.Failed
	s.Batches += o.Batches
	s.SAs += o.SAs
	s.Sync += o.Sync
	s.Policies += o.Policies
	s.Report += o.Report
	s.Sink += o.Sink
	s.State += o.State
	s.Idle += o.Idle
	s.Total += o.Total
}

func (s RestoreStats) String() string {
	r := func(d time.Duration) time.Duration { return d.Round(time.Millisecond) }
	return fmt.Sprintf("%d IKE SA(s), %d children (%d failed) in %d batches, %v: SAs %v, sync state %v, policies %v, after the batches %v (sink %v, state changes %v, idle watch %v)",
		s.IKESAs, s.Children, s.Failed, s.Batches, r(s.Total), r(s.SAs), r(s.Sync), r(s.Policies), r(s.Report),
		r(s.Sink), r(s.State), r(s.Idle))
}

// ChildrenError says that an IKE SA was restored but some of its
// children were not: each was rolled back alone (nothing of it stays in
// the dataplane) and the peer is told they are gone (a Delete).
type ChildrenError struct {
	Errs []*RestoreError
}

func (e *ChildrenError) Error() string {
	msgs := make([]string, 0, min(len(e.Errs), 3))
	for _, err := range e.Errs[:min(len(e.Errs), 3)] {
		msgs = append(msgs, err.Error())
	}
	more := ""
	if len(e.Errs) > 3 {
		more = fmt.Sprintf("; and %d more", len(e.Errs)-3)
	}
	return fmt.Sprintf("ike: %d children not restored: %s%s", len(e.Errs), strings.Join(msgs, "; "), more)
}

func (e *ChildrenError) Unwrap() []error {
	out := make([]error, len(e.Errs))
	for i, err := range e.Errs {
		out[i] = err
	}
	return out
}

// restoring is one child of a takeover on its way in.
type restoring struct {
	ch   *childSA
	est  time.Time
	plan offloadPlan
	in   *kernelops.SA
	out  *kernelops.SA
	pols []*kernelops.Policy
	err  error
}

// restoreChildren installs the children, batch by batch. It returns
// those installed, in order, and the errors of those that were not.
func (e *Engine) restoreChildren(rs []*restoring, o RestoreOptions, st *RestoreStats) {
	for b := range slices.Chunk(rs, restoreBatch) {
		st.Batches++
		e.restoreSAs(b, st)
		t := time.Now()
		for _, r := range b {
			if r.err == nil {
				if err := e.restoreReplay(r.ch, r.est, o); err != nil {
					e.restoreFailed(r, err)
				}
			}
		}
		st.Sync += time.Since(t)
		e.restorePolicies(b, st)
	}
}

// restoreFailed rolls the child back: whatever of it went in comes out.
func (e *Engine) restoreFailed(r *restoring, err error) {
	r.err = err
	e.uninstall(r.ch)
}

// restoreSAs adds the batch's SAs in one Apply.
func (e *Engine) restoreSAs(b []*restoring, st *RestoreStats) {
	ops := make([]kernelops.Op, 0, 2*len(b))
	idx := make([]int, 0, len(b)) // ops[2i], ops[2i+1] are b[idx[i]]'s
	for i, r := range b {
		if r.err != nil {
			continue
		}
		ch := r.ch
		// Selectors are settled: the reqid is this child's, as install
		// takes it (reqidindex.go); uninstall gives it back.
		e.takeChildReqID(ch)
		x, err := e.holdXfrmi(ch.cfg)
		if err != nil {
			e.releaseChildReqID(ch)
			r.err = err
			continue
		}
		ch.xfrmi = x
		// The record's reqid, registered so no later allocation takes it
		// (another if it is taken here): reqidindex.go.
		e.takeChildReqID(ch)
		if r.plan, err = e.planOffload(e.ctx, ch); err != nil {
			e.restoreFailed(r, err)
			continue
		}
		r.in, r.out = e.childKernelSAs(ch)
		r.in.Offload, r.in.IfID, r.in.Mark = r.plan.off, ch.cfg.IfIDIn, r.in.ID.Mark
		r.out.Offload, r.out.IfID, r.out.Mark = r.plan.off, ch.cfg.IfIDOut, r.out.ID.Mark
		ops = append(ops, kernelops.Op{Kind: kernelops.OpAddSA, SA: r.in}, kernelops.Op{Kind: kernelops.OpAddSA, SA: r.out})
		idx = append(idx, i)
	}
	if len(ops) == 0 {
		return
	}
	t := time.Now()
	batchErr := kernelops.Apply(e.ctx, e.b, ops)
	st.SAs += time.Since(t)
	for j, i := range idx {
		r, in, out := b[i], ops[2*j], ops[2*j+1]
		if in.Err == nil {
			r.ch.sas = append(r.ch.sas, r.in.ID)
		}
		if out.Err == nil {
			r.ch.sas = append(r.ch.sas, r.out.ID)
		}
		switch {
		case in.Err != nil:
			e.restoreFailed(r, fmt.Errorf("add inbound SA %s: %w", r.in.ID, in.Err))
		case out.Err != nil:
			e.restoreFailed(r, fmt.Errorf("add outbound SA %s: %w", r.out.ID, out.Err))
		case batchErr != nil && !isBatchError(batchErr):
			// The batch as a whole was refused (fence, no facet): no
			// op carries its error.
			e.restoreFailed(r, fmt.Errorf("add SAs: %w", batchErr))
		default:
			r.ch.offloadDone(r.plan, r.in.Offload.Active, r.out.Offload.Active)
		}
	}
}

func isBatchError(err error) bool {
	var be *kernelops.BatchError
	return errors.As(err, &be)
}

// restorePolicies adds the batch's policies in one Apply. A policy that
// another child here already holds with the same templates is only
// counted; a child whose policy another child of this batch adds too
// goes in after the batch, one call at a time (addPolicyRef).
func (e *Engine) restorePolicies(b []*restoring, st *RestoreStats) {
	t := time.Now()
	defer func() { st.Policies += time.Since(t) }()
	var ops []kernelops.Op
	type span struct {
		r          *restoring
		first, end int // its ops
		counted    []*kernelops.Policy
	}
	var spans []span
	var later []*restoring
	pending := map[kernelops.PolicyID]bool{}
	for _, r := range b {
		if r.err != nil {
			continue
		}
		ch := r.ch
		sels := selectors(ch.localTS, ch.remoteTS)
		if len(sels) == 0 {
			e.restoreFailed(r, fmt.Errorf("no traffic selector pair the dataplane can express (%s <-> %s)", rangesString(ch.localTS), rangesString(ch.remoteTS)))
			continue
		}
		r.pols = childPolicies(ch.cfg, ch.mode, ch.reqid, ch.localAddr, ch.remoteAddr, sels)
		if slices.ContainsFunc(r.pols, func(p *kernelops.Policy) bool { return pending[p.ID()] }) {
			later = append(later, r)
			continue
		}
		sp := span{r: r, first: len(ops)}
		for _, p := range r.pols {
			id := p.ID()
			pending[id] = true
			ref := e.policies.get(id)
			switch {
			case ref != nil && ref.n > 0 && slices.Equal(ref.tmpl, p.Templates):
				sp.counted = append(sp.counted, p)
			case ref != nil && (ref.n > 0 || ref.trap != nil):
				ops = append(ops, kernelops.Op{Kind: kernelops.OpReplacePolicy, Policy: p})
			default:
				ops = append(ops, kernelops.Op{Kind: kernelops.OpAddPolicy, Policy: p})
			}
		}
		sp.end = len(ops)
		spans = append(spans, sp)
	}
	var batchErr error
	if len(ops) > 0 {
		batchErr = kernelops.Apply(e.ctx, e.b, ops)
		if isBatchError(batchErr) {
			batchErr = nil // each op says its own
		}
	}
	for _, sp := range spans {
		for _, p := range sp.counted {
			e.notePolicyRef(p)
			sp.r.ch.polRefs = append(sp.r.ch.polRefs, p.ID())
		}
		var failed error
		for _, op := range ops[sp.first:sp.end] {
			switch {
			case batchErr != nil:
				failed = fmt.Errorf("add policies: %w", batchErr)
			case op.Err != nil:
				if failed == nil {
					failed = fmt.Errorf("add policy %s: %w", op.Policy.ID(), op.Err)
				}
			default:
				e.notePolicyRef(op.Policy)
				sp.r.ch.polRefs = append(sp.r.ch.polRefs, op.Policy.ID())
			}
		}
		if failed != nil {
			e.restoreFailed(sp.r, failed)
		}
	}
	for _, r := range later {
		for _, p := range r.pols {
			if err := e.addPolicyRef(p); err != nil {
				e.restoreFailed(r, fmt.Errorf("add policy %s: %w", p.ID(), err))
				break
			}
			r.ch.polRefs = append(r.ch.polRefs, p.ID())
		}
	}
}

// notePolicyRef counts a policy that is now in the dataplane with p's
// templates (added, replaced, or already there), as addPolicyRef does.
func (e *Engine) notePolicyRef(p *kernelops.Policy) {
	id := p.ID()
	r := e.policies.get(id)
	if r == nil {
		r = e.policies.add(id)
	}
	if r.n > 0 {
		r.n++
	} else {
		r.n = 1
	}
	r.tmpl = slices.Clone(p.Templates)
}
