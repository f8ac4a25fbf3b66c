package nokernel

import (
	"context"
	"iter"
	"net/netip"
	"syscall"
	"time"

	"github.com/keyplane/keyplane/internal/chainmap"
	"github.com/keyplane/keyplane/kernelops"
	"github.com/keyplane/keyplane/kernelops/clock"
)

// spd holds the policies by PolicyID, under a hash of the 88-octet ID
// (internal/chainmap) rather than keyed by the ID itself: a policy then
// costs its entry and a 16-octet slot, not a slot the size of its ID
// beside it (the entry holds the ID already), which at 100,000 tunnels of
// three policies each was a fifth of the model's memory.
type spd struct {
	m   chainmap.Map[kernelops.PolicyID, polEntry, *polEntry]
	seq uint64
}

type polEntry struct {
	p    kernelops.Policy // Priority holds the effective priority
	add  time.Time
	use  time.Time // last use; zero: never
	seq  uint64    // insertion order: the older of equal priorities wins
	dead bool
	hole bool // installed by OpenHoles

	timer    clock.Timer
	timerSeq uint64
	softDone bool

	next *polEntry // the next entry of the same hash
}

func (e *polEntry) ChainKey() kernelops.PolicyID { return e.p.ID() }
func (e *polEntry) ChainNext() **polEntry        { return &e.next }

// get returns the policy with this ID (nil: none).
func (s *spd) get(id kernelops.PolicyID) *polEntry { return s.m.Get(id) }

// put adds e, whose ID no entry has.
func (s *spd) put(e *polEntry) { s.m.Put(e) }

// del removes e.
func (s *spd) del(e *polEntry) {
	if s.m.Get(e.p.ID()) == e {
		s.m.Delete(e.p.ID())
	}
}

// each calls f for every policy until it returns false.
func (s *spd) each(f func(*polEntry) bool) {
	for e := range s.m.All() {
		if !f(e) {
			return
		}
	}
}

func (s *spd) stopTimers() {
	s.each(func(e *polEntry) bool { e.stop(); return true })
}

func (e *polEntry) stop() {
	if e.timer != nil {
		e.timer.Stop()
		e.timer = nil
	}
}

func (s *spd) all() []*polEntry {
	out := make([]*polEntry, 0, s.m.Len())
	s.each(func(e *polEntry) bool { out = append(out, e); return true })
	return out
}

// lookup finds the policy XFRM would apply to a packet: among the
// policies of dir whose selector, mark and if_id match, the lowest
// (effective) priority, and of equal priorities the oldest.
func (s *spd) lookup(dir kernelops.Direction, src, dst netip.Addr, proto uint8, sport, dport uint16, mark, ifid uint32) *polEntry {
	var best *polEntry
	s.each(func(e *polEntry) bool {
		p := &e.p
		if p.Dir != dir || p.IfID != ifid || mark&p.Mark.Mask != p.Mark.Value {
			return true
		}
		if !p.Selector.Matches(src, dst, proto, sport, dport) || !sameFamily(p.Selector, src) {
			return true
		}
		if best == nil || e.p.Priority < best.p.Priority || (e.p.Priority == best.p.Priority && e.seq < best.seq) {
			best = e
		}
		return true
	})
	return best
}

// sameFamily keeps a selector with prefixes of one family from matching
// packets of the other (a zero selector matches both, as the kernelops
// Selector means "any address of the other side's family").
func sameFamily(s kernelops.Selector, a netip.Addr) bool {
	switch {
	case s.Src.IsValid():
		return s.Src.Addr().Is4() == a.Is4()
	case s.Dst.IsValid():
		return s.Dst.Addr().Is4() == a.Is4()
	}
	return true
}

// owned says whether a policy is keyplane's: one of its templates carries
// an owned reqid. Pass and block policies carry no reqid and are never
// flushed (CloseHoles removes the hole policies).
func (b *model) owned(p *kernelops.Policy) bool {
	for _, t := range p.Templates {
		if b.opts.Owns(t.ReqID) {
			return true
		}
	}
	return false
}

// AddPolicy installs a policy; a taken PolicyID is ErrExists (EEXIST).
func (b *model) AddPolicy(ctx context.Context, p *kernelops.Policy) error {
	return b.putPolicy(ctx, p, false)
}

// ReplacePolicy installs a policy, replacing one with the same PolicyID.
func (b *model) ReplacePolicy(ctx context.Context, p *kernelops.Policy) error {
	return b.putPolicy(ctx, p, true)
}

func (b *model) putPolicy(ctx context.Context, p *kernelops.Policy, replace bool) error {
	b.mu.Lock()
	defer b.mu.Unlock()
	if err := b.checkLocked(); err != nil {
		return err
	}
	return b.insertPolicyLocked(p, replace, false)
}

func (b *model) insertPolicyLocked(p *kernelops.Policy, replace, hole bool) error {
	if old := b.spd.get(p.ID()); old != nil {
		if !replace {
			return errno(syscall.EEXIST, "policy exists")
		}
		b.removePolicyLocked(old)
	}
	c := p.Clone()
	c.Priority = kernelops.EffectivePriority(p)
	b.spd.seq++
	e := &polEntry{p: *c, add: b.clk.Now(), seq: b.spd.seq, hole: hole}
	b.spd.put(e)
	b.armPolicy(e)
	return nil
}

func (b *model) removePolicyLocked(e *polEntry) {
	e.dead = true
	e.stop()
	b.spd.del(e)
}

// DeletePolicy removes a policy; a missing one is ErrNotFound (ENOENT).
func (b *model) DeletePolicy(ctx context.Context, id kernelops.PolicyID) error {
	b.mu.Lock()
	defer b.mu.Unlock()
	if err := b.checkLocked(); err != nil {
		return err
	}
	e := b.spd.get(id)
	if e == nil {
		return errno(syscall.ENOENT, "no such policy")
	}
	b.removePolicyLocked(e)
	return nil
}

// GetPolicy returns a copy of a policy with its add and last-use times.
func (b *model) GetPolicy(ctx context.Context, id kernelops.PolicyID) (*kernelops.PolicyEntry, error) {
	b.mu.Lock()
	defer b.mu.Unlock()
	if err := b.checkLocked(); err != nil {
		return nil, err
	}
	e := b.spd.get(id)
	if e == nil {
		return nil, errno(syscall.ENOENT, "no such policy")
	}
	out := &kernelops.PolicyEntry{}
	copyPolicy(out, e)
	return out, nil
}

func copyPolicy(dst *kernelops.PolicyEntry, e *polEntry) {
	tm := dst.Templates
	dst.Policy = e.p
	dst.Templates = append(tm[:0], e.p.Templates...)
	dst.AddTime = e.add
	dst.UseTime = e.use
}

// Policies streams every policy with the same snapshot rules as SAs; the
// yielded entry is reused.
func (b *model) Policies(ctx context.Context) iter.Seq2[*kernelops.PolicyEntry, error] {
	return dumpSnapshot(b, ctx, b.spd.all, func(e *polEntry) bool { return e.dead }, copyPolicy)
}

// FlushPolicies removes the policies keyplane owns (see owned).
func (b *model) FlushPolicies(ctx context.Context) error {
	b.mu.Lock()
	defer b.mu.Unlock()
	if err := b.checkLocked(); err != nil {
		return err
	}
	for _, e := range b.spd.all() {
		if b.owned(&e.p) {
			b.removePolicyLocked(e)
		}
	}
	return nil
}

// armPolicy sets the policy's lifetime timer for its next deadline. XFRM
// counts a policy's use-time from its last use (add time if unused).
func (b *model) armPolicy(e *polEntry) {
	e.stop()
	if e.p.Lifetime == (kernelops.Lifetimes{}) {
		return
	}
	next := policyDeadline(e, e.p.Lifetime.Hard)
	if !e.softDone {
		if d := policyDeadline(e, e.p.Lifetime.Soft); !d.IsZero() && (next.IsZero() || d.Before(next)) {
			next = d
		}
	}
	if next.IsZero() {
		return
	}
	e.timerSeq++
	seq := e.timerSeq
	e.timer = b.clk.AfterFunc(max(next.Sub(b.clk.Now()), 0), func() { b.policyTimer(e, seq) })
}

func policyDeadline(e *polEntry, l kernelops.Limits) time.Time {
	var d time.Time
	if l.AddTime != 0 {
		d = e.add.Add(l.AddTime)
	}
	if l.UseTime != 0 {
		from := e.use
		if from.IsZero() {
			from = e.add
		}
		if u := from.Add(l.UseTime); d.IsZero() || u.Before(d) {
			d = u
		}
	}
	return d
}

func (b *model) policyTimer(e *polEntry, seq uint64) {
	b.mu.Lock()
	defer b.mu.Unlock()
	if e.dead || b.closed || e.timerSeq != seq {
		return
	}
	e.timer = nil
	now := b.clk.Now()
	due := func(l kernelops.Limits) bool {
		d := policyDeadline(e, l)
		return !d.IsZero() && !now.Before(d)
	}
	id := e.p.ID()
	if due(e.p.Lifetime.Hard) {
		if !e.softDone && due(e.p.Lifetime.Soft) {
			b.env.Publish(&kernelops.PolicyExpireEvent{Policy: id})
		}
		b.removePolicyLocked(e)
		b.env.Publish(&kernelops.PolicyExpireEvent{Policy: id, Hard: true})
		return
	}
	if !e.softDone && due(e.p.Lifetime.Soft) {
		e.softDone = true
		b.env.Publish(&kernelops.PolicyExpireEvent{Policy: id})
	}
	b.armPolicy(e)
}
