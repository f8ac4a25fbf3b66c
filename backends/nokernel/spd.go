package nokernel

import (
	"context"
	"iter"
	"net/netip"
	"syscall"
	"time"

	"github.com/keyplane/keyplane/internal/caddr"
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

// polEntry is a policy in the model, kept compactly: its selector's
// prefixes as caddr and length, a single template inline (its addresses
// as caddrs), its times as stamps, and what few policies have (lifetimes
// and their timer, no template or several, zones) apart in x, its flags
// in one octet. Its fields fill a 144-octet allocation (TestPolEntrySize).
type polEntry struct {
	mark     kernelops.Mark
	ifID     uint32
	prio     uint32 // the effective priority
	treqid   uint32
	tspi     uint32
	add, use stamp  // use: last use; zero: never
	seq      uint64 // insertion order: the older of equal priorities wins

	next *polEntry // the next entry of the same hash
	x    *polExtra // nil: none of it

	sport, dport     uint16
	src, dst         caddr.Addr // the selector's prefixes' addresses (a Prefix has no zone)
	tsrc, tdst       caddr.Addr // the one template's
	srcBits, dstBits uint8      // the prefixes' lengths plus one; 0: no prefix
	proto            uint8
	dir              kernelops.Direction
	action           kernelops.Action
	tproto           kernelops.Proto
	tmode            kernelops.Mode
	flags            polFlags
}

// polFlags are a polEntry's flags, kept in one octet: five bools took
// five and, with them, the entry over the 144-octet size class. Every
// access is under the model's lock, as every other field's.
type polFlags uint8

const (
	polOne      polFlags = 1 << iota // exactly one template, the t fields; else x.tmpls
	polOptional                      // the one template's Optional
	polDead                          // removed; a snapshot holding it skips it
	polHole                          // installed by OpenHoles
	polSoftDone                      // the soft lifetime expiry was delivered
)

func (e *polEntry) is(f polFlags) bool { return e.flags&f != 0 }

// set turns f on or off.
func (e *polEntry) set(f polFlags, on bool) {
	if on {
		e.flags |= f
	} else {
		e.flags &^= f
	}
}

// polExtra is what a policy needs only with lifetimes, with no template
// or several, or with a time a stamp cannot hold.
type polExtra struct {
	tmpls    []kernelops.Template
	life     kernelops.Lifetimes
	timer    clock.Timer
	timerSeq uint64
	times    [2]time.Time // add, use when their stamp is stampApart
	zones    [2]string    // the zones of tsrc and tdst when caddr.Zoned
}

func (e *polEntry) extra() *polExtra {
	if e.x == nil {
		e.x = &polExtra{}
	}
	return e.x
}

func (e *polEntry) selector() kernelops.Selector {
	// netip.PrefixFrom(p.Addr(), p.Bits()) is p for every Prefix p.
	return kernelops.Selector{Src: caddr.UnpackPrefix(e.src, e.srcBits), Dst: caddr.UnpackPrefix(e.dst, e.dstBits),
		Proto: e.proto, SrcPort: e.sport, DstPort: e.dport}
}

func (e *polEntry) setSelector(s kernelops.Selector) {
	e.src, e.srcBits = caddr.PackPrefix(s.Src)
	e.dst, e.dstBits = caddr.PackPrefix(s.Dst)
	e.proto, e.sport, e.dport = s.Proto, s.SrcPort, s.DstPort
}

// templates returns e's templates, the one inline in buf.
func (e *polEntry) templates(buf *[1]kernelops.Template) []kernelops.Template {
	if e.is(polOne) {
		var zs [2]string
		if e.x != nil {
			zs = e.x.zones
		}
		buf[0] = kernelops.Template{Src: e.tsrc.Unpack(zs[0]), Dst: e.tdst.Unpack(zs[1]), Proto: e.tproto, Mode: e.tmode, ReqID: e.treqid, SPI: e.tspi, Optional: e.is(polOptional)}
		return buf[:]
	}
	if e.x == nil {
		return nil
	}
	return e.x.tmpls
}

// setTemplates sets e's templates to a copy of ts.
func (e *polEntry) setTemplates(ts []kernelops.Template) {
	e.set(polOne, len(ts) == 1)
	if len(ts) == 1 {
		t := &ts[0]
		e.tsrc, e.tdst, e.tproto, e.tmode, e.treqid, e.tspi = caddr.Pack(t.Src), caddr.Pack(t.Dst), t.Proto, t.Mode, t.ReqID, t.SPI
		e.set(polOptional, t.Optional)
		if e.x != nil {
			e.x.tmpls = nil
		}
		if e.tsrc.Kind() == caddr.Zoned || e.tdst.Kind() == caddr.Zoned || e.x != nil {
			e.extra().zones = [2]string{t.Src.Zone(), t.Dst.Zone()}
		}
		return
	}
	e.tsrc, e.tdst, e.tproto, e.tmode, e.treqid, e.tspi = caddr.Addr{}, caddr.Addr{}, 0, 0, 0, 0
	e.set(polOptional, false)
	if len(ts) > 0 || e.x != nil {
		e.extra().tmpls = append([]kernelops.Template(nil), ts...)
	}
}

func (e *polEntry) lifetime() kernelops.Lifetimes {
	if e.x == nil {
		return kernelops.Lifetimes{}
	}
	return e.x.life
}

// The times of a polEntry, for polTime and setPolTime.
const (
	pAdd = iota
	pUse
)

func (b *model) polTime(e *polEntry, i int) time.Time {
	s := e.add
	if i == pUse {
		s = e.use
	}
	if s == stampApart {
		return e.x.times[i]
	}
	return b.fromStamp(s)
}

func (b *model) setPolTime(e *polEntry, i int, t time.Time) {
	s, ok := b.toStamp(t)
	if !ok {
		s = stampApart
		e.extra().times[i] = t.Round(0)
	}
	if i == pUse {
		e.use = s
	} else {
		e.add = s
	}
}

func (e *polEntry) id() kernelops.PolicyID {
	return kernelops.PolicyID{Selector: e.selector(), Dir: e.dir, Mark: e.mark, IfID: e.ifID}
}

func (e *polEntry) ChainKey() kernelops.PolicyID { return e.id() }
func (e *polEntry) ChainNext() **polEntry        { return &e.next }

// get returns the policy with this ID (nil: none).
func (s *spd) get(id kernelops.PolicyID) *polEntry { return s.m.Get(id) }

// put adds e, whose ID no entry has.
func (s *spd) put(e *polEntry) { s.m.Put(e) }

// del removes e.
func (s *spd) del(e *polEntry) {
	if id := e.id(); s.m.Get(id) == e {
		s.m.Delete(id)
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
	if e.x != nil && e.x.timer != nil {
		e.x.timer.Stop()
		e.x.timer = nil
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
		if e.dir != dir || e.ifID != ifid || mark&e.mark.Mask != e.mark.Value {
			return true
		}
		if sel := e.selector(); !sel.Matches(src, dst, proto, sport, dport) || !sameFamily(sel, src) {
			return true
		}
		if best == nil || e.prio < best.prio || (e.prio == best.prio && e.seq < best.seq) {
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
func (b *model) owned(e *polEntry) bool {
	var one [1]kernelops.Template
	for _, t := range e.templates(&one) {
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
	b.spd.seq++
	e := &polEntry{dir: p.Dir, action: p.Action, prio: kernelops.EffectivePriority(p), mark: p.Mark, ifID: p.IfID,
		seq: b.spd.seq}
	e.set(polHole, hole)
	e.setSelector(p.Selector)
	e.setTemplates(p.Templates)
	if p.Lifetime != (kernelops.Lifetimes{}) {
		e.extra().life = p.Lifetime
	}
	b.setPolTime(e, pAdd, b.clk.Now())
	b.spd.put(e)
	b.armPolicy(e)
	return nil
}

func (b *model) removePolicyLocked(e *polEntry) {
	e.set(polDead, true)
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
	b.copyPolicy(out, e)
	return out, nil
}

func (b *model) copyPolicy(dst *kernelops.PolicyEntry, e *polEntry) {
	var one [1]kernelops.Template
	tm := dst.Templates
	dst.Policy = kernelops.Policy{Selector: e.selector(), Dir: e.dir, Action: e.action, Priority: e.prio,
		Templates: append(tm[:0], e.templates(&one)...), Mark: e.mark, IfID: e.ifID, Lifetime: e.lifetime()}
	dst.AddTime = b.polTime(e, pAdd)
	dst.UseTime = b.polTime(e, pUse)
}

// Policies streams every policy with the same snapshot rules as SAs; the
// yielded entry is reused.
func (b *model) Policies(ctx context.Context) iter.Seq2[*kernelops.PolicyEntry, error] {
	return dumpSnapshot(b, ctx, b.spd.all, func(e *polEntry) bool { return e.is(polDead) }, b.copyPolicy)
}

// FlushPolicies removes the policies keyplane owns (see owned).
func (b *model) FlushPolicies(ctx context.Context) error {
	b.mu.Lock()
	defer b.mu.Unlock()
	if err := b.checkLocked(); err != nil {
		return err
	}
	for _, e := range b.spd.all() {
		if b.owned(e) {
			b.removePolicyLocked(e)
		}
	}
	return nil
}

// armPolicy sets the policy's lifetime timer for its next deadline. XFRM
// counts a policy's use-time from its last use (add time if unused).
func (b *model) armPolicy(e *polEntry) {
	e.stop()
	if e.x == nil || e.x.life == (kernelops.Lifetimes{}) {
		return
	}
	x := e.x
	next := b.policyDeadline(e, x.life.Hard)
	if !e.is(polSoftDone) {
		if d := b.policyDeadline(e, x.life.Soft); !d.IsZero() && (next.IsZero() || d.Before(next)) {
			next = d
		}
	}
	if next.IsZero() {
		return
	}
	x.timerSeq++
	seq := x.timerSeq
	x.timer = b.clk.AfterFunc(max(next.Sub(b.clk.Now()), 0), func() { b.policyTimer(e, seq) })
}

func (b *model) policyDeadline(e *polEntry, l kernelops.Limits) time.Time {
	var d time.Time
	if l.AddTime != 0 {
		d = b.polTime(e, pAdd).Add(l.AddTime)
	}
	if l.UseTime != 0 {
		from := b.polTime(e, pUse)
		if from.IsZero() {
			from = b.polTime(e, pAdd)
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
	if e.is(polDead) || b.closed || e.x.timerSeq != seq {
		return
	}
	x := e.x
	x.timer = nil
	now := b.clk.Now()
	due := func(l kernelops.Limits) bool {
		d := b.policyDeadline(e, l)
		return !d.IsZero() && !now.Before(d)
	}
	id := e.id()
	if due(x.life.Hard) {
		if !e.is(polSoftDone) && due(x.life.Soft) {
			b.env.Publish(&kernelops.PolicyExpireEvent{Policy: id})
		}
		b.removePolicyLocked(e)
		b.env.Publish(&kernelops.PolicyExpireEvent{Policy: id, Hard: true})
		return
	}
	if !e.is(polSoftDone) && due(x.life.Soft) {
		e.set(polSoftDone, true)
		b.env.Publish(&kernelops.PolicyExpireEvent{Policy: id})
	}
	b.armPolicy(e)
}
