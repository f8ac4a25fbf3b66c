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
	// SAs is the dataplane's time adding the SAs (batched, with their
	// sequence numbers and replay state: SA.Sync), Sync the part of it
	// spent working those states out, Policies adding the policies
	// (batched); Report the engine's bookkeeping for the children
	// installed, done batch by batch, of which Sink is the state sink's
	// (counter sync; a record only where it changed), State the
	// children's state change (events, hooks, a log line per IKE SA) and
	// Idle the idle watch set-up; Last is the time from the last
	// batch's policies to the end, when the engine answers IKE again
	// (that batch's bookkeeping, the IKE SA's own); Total the whole of
	// Restore's work.
	SAs, Sync, Policies, Report, Total time.Duration
	Sink, State, Idle, Last            time.Duration
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
	s.Last += o.Last
	s.Total += o.Total
}

func (s RestoreStats) String() string {
	r := func(d time.Duration) time.Duration { return d.Round(time.Millisecond) }
	return fmt.Sprintf("%d IKE SA(s), %d children (%d failed) in %d batches, %v: SAs with their sync state %v (states %v), policies %v, bookkeeping %v (sink %v, state changes %v, idle watch %v), after the last batch %v",
		s.IKESAs, s.Children, s.Failed, s.Batches, r(s.Total), r(s.SAs), r(s.Sync), r(s.Policies), r(s.Report),
		r(s.Sink), r(s.State), r(s.Idle), r(s.Last))
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
	ch    *childSA
	est   time.Time
	reqid uint32 // the record's
	plan  offloadPlan
	in    *kernelops.SA
	out   *kernelops.SA
	pols  []*kernelops.Policy
	err   error
}

// restoreChildren installs the children, batch by batch, each batch's
// SAs with their sequence numbers and replay state (SA.Sync: no Syncer
// round trip per SA), then its policies; then, still per batch, the
// engine's bookkeeping for those installed (done), so that what is left
// after the last batch is that batch's alone.
func (e *Engine) restoreChildren(rs []*restoring, o RestoreOptions, st *RestoreStats, done func([]*restoring)) {
	// Without Syncer the outbound SA would start at 0: the peer's
	// replay window drops what we send until it passes the old number,
	// so a dataplane without it cannot take over.
	if _, err := kernelops.As[kernelops.Syncer](e.b); err != nil {
		for _, r := range rs {
			if r.err == nil {
				r.err = fmt.Errorf("the dataplane cannot set sequence numbers: %w", err)
			}
		}
	}
	for b := range slices.Chunk(rs, restoreBatch) {
		st.Batches++
		e.restoreSAs(b, o, st)
		e.restorePolicies(b, st)
		t := time.Now()
		done(b)
		st.Report += time.Since(t)
	}
}

// restoreSync is the state the child's SAs are added with: the outbound
// SA's sequence number advanced past what the other node may have sent
// (the last synced one plus SeqMargin), the inbound SA's replay window
// as it had seen it, both dated from est, the child's first install, so
// time lifetimes run on (zero: the add's own time).
func restoreSync(ch *childSA, est time.Time, o RestoreOptions) (in, out *kernelops.SyncState) {
	var outRS, inRS kernelops.ReplayState
	if o.Replay != nil {
		outRS, _ = o.Replay(ch.outID())
		inRS, _ = o.Replay(ch.inID())
	}
	out = &kernelops.SyncState{Replay: kernelops.ReplayState{OSeq: outRS.OSeq + o.SeqMargin}, AddTime: est}
	in = &kernelops.SyncState{AddTime: est}
	if inRS.Seq > 0 {
		in.Replay.Seq, in.Replay.Bitmap = inRS.Seq, slices.Clone(inRS.Bitmap)
	}
	return in, out
}

// restoreFailed rolls the child back: whatever of it went in comes out.
func (e *Engine) restoreFailed(r *restoring, err error) {
	r.err = err
	e.uninstall(r.ch)
}

// restoreSAs adds the batch's SAs in one Apply.
func (e *Engine) restoreSAs(b []*restoring, o RestoreOptions, st *RestoreStats) {
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
		t := time.Now()
		r.in.Sync, r.out.Sync = restoreSync(ch, r.est, o)
		st.Sync += time.Since(t)
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
		r.ch.hasIn, r.ch.hasOut = in.Err == nil, out.Err == nil // their IDs are r.ch.inID and outID
		switch {
		case in.Err != nil:
			e.restoreFailed(r, fmt.Errorf("add inbound SA %s: %w", r.in.ID, in.Err))
		case out.Err != nil:
			e.restoreFailed(r, fmt.Errorf("add outbound SA %s at sequence number %d: %w", r.out.ID, r.out.Sync.Replay.OSeq, out.Err))
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
			sp.r.ch.polRefs = append(sp.r.ch.polRefs, e.notePolicyRef(p))
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
				sp.r.ch.polRefs = append(sp.r.ch.polRefs, e.notePolicyRef(op.Policy))
			}
		}
		if failed != nil {
			e.restoreFailed(sp.r, failed)
		}
	}
	for _, r := range later {
		for _, p := range r.pols {
			x, err := e.addPolicyRef(p)
			if err != nil {
				e.restoreFailed(r, fmt.Errorf("add policy %s: %w", p.ID(), err))
				break
			}
			r.ch.polRefs = append(r.ch.polRefs, x)
		}
	}
}

// notePolicyRef counts a policy that is now in the dataplane with p's
// templates (added, replaced, or already there), as addPolicyRef does.
func (e *Engine) notePolicyRef(p *kernelops.Policy) *polRefEntry {
	id := p.ID()
	x := e.policies.entry(id)
	if x == nil {
		x = e.policies.add(id)
	}
	if x.n > 0 {
		x.n++
	} else {
		x.n = 1
	}
	x.tmpl = slices.Clone(p.Templates)
	return x
}
