package nokernel

import (
	"context"
	"fmt"
	"math"
	"net/netip"
	"time"

	"github.com/keyplane/keyplane/kernelops"
	"github.com/keyplane/keyplane/kernelops/clock"
)

// Packet is one simulated packet for Inject.
//
// Outbound (Dir DirOut, or zero): a host sends Src -> Dst; the model looks
// up the outbound policy, resolves its templates to SAs, moves their
// counters and sequence numbers, or raises an acquire.
//
// Inbound (Dir DirIn): an ESP/AH packet arrives on SA (found by
// destination, SPI, protocol and Mark, as XFRM does; SA.Src is ignored)
// with sequence number Seq (0: the next after the highest seen). Src and
// Dst are then the inner addresses checked against the inbound policy
// (unset: no policy check). From is the outer source of an ESP-in-UDP
// packet; a change from the SA's peer raises a MappingEvent.
type Packet struct {
	Dir              kernelops.Direction
	Src, Dst         netip.Addr
	Proto            uint8
	SrcPort, DstPort uint16 // ICMP: type and code
	Len              int    // bytes counted on each SA
	Mark             uint32 // the packet's firewall mark
	IfID             uint32 // outbound: sent through the xfrm interface with this if_id

	SA   kernelops.SAID // inbound only
	Seq  uint64         // inbound only
	From netip.AddrPort // inbound only
}

// Verdict is what the model did with a packet.
type Verdict uint8

const (
	Protected Verdict = iota + 1 // outbound: sent through SAs
	Passed                       // outbound: sent in the clear (pass policy, or no policy)
	Delivered                    // inbound: accepted
	Dropped                      // see Result.Reason
)

func (v Verdict) String() string {
	switch v {
	case Protected:
		return "protected"
	case Passed:
		return "passed"
	case Delivered:
		return "delivered"
	case Dropped:
		return "dropped"
	}
	return fmt.Sprintf("verdict(%d)", uint8(v))
}

// Result reports a packet's fate.
type Result struct {
	Verdict Verdict
	Policy  *kernelops.PolicyID // the policy applied, if any
	SAs     []kernelops.SAID    // the SAs that carried the packet
	Acquire bool                // an acquire was raised for it
	Reason  string              // why it was dropped
}

// Inject pushes one simulated packet through the model and returns what
// happened to it. It fails only for a bad packet, a done ctx or a closed
// backend; a dropped packet is a Result, not an error.
func (b *model) Inject(ctx context.Context, p Packet) (Result, error) {
	if p.Len < 0 {
		return Result{}, kernelops.Invalid(Name, "inject", "", "Len", "negative length %d", p.Len)
	}
	switch p.Dir {
	case kernelops.DirAny, kernelops.DirOut:
		if !p.Src.IsValid() || !p.Dst.IsValid() || p.Src.Is4() != p.Dst.Is4() {
			return Result{}, kernelops.Invalid(Name, "inject", "", "Dst", "outbound packet needs source and destination of one family (%s, %s)", p.Src, p.Dst)
		}
		return b.outbound(ctx, p)
	case kernelops.DirIn:
		if !p.SA.Dst.IsValid() {
			return Result{}, kernelops.Invalid(Name, "inject", "", "SA.Dst", "inbound packet needs the SA it arrived on")
		}
		return b.inbound(ctx, p)
	}
	return Result{}, kernelops.Invalid(Name, "inject", "", "Dir", "direction %s: want out or in", p.Dir)
}

// observed is a counter report for the front end's lifetimes
// (Env.Observe), made after mu is released.
type observed struct {
	id             kernelops.SAID
	bytes, packets uint64
	firstUse       time.Time
}

func (b *model) report(obs []observed) {
	for _, o := range obs {
		b.env.Observe(o.id, o.bytes, o.packets, o.firstUse)
	}
}

// count moves an SA's counters for one packet of n bytes.
// The first use goes to the front end as the clock read it (the model
// keeps it without its monotonic reading).
func (b *model) count(e *saEntry, n int, now time.Time) observed {
	e.bytes += uint64(n)
	e.packets++
	first := now
	if e.t[tFirstUse] == stampZero {
		b.setSATime(e, tFirstUse, now)
	} else {
		first = b.saTime(e, tFirstUse)
	}
	b.setSATime(e, tLastUsed, now)
	return observed{e.said(), e.bytes, e.packets, first}
}

func (b *model) outbound(ctx context.Context, p Packet) (Result, error) {
	b.mu.Lock()
	if err := b.checkLocked(); err != nil {
		b.mu.Unlock()
		return Result{}, err
	}
	now := b.clk.Now()
	pol := b.spd.lookup(kernelops.DirOut, p.Src, p.Dst, p.Proto, p.SrcPort, p.DstPort, p.Mark, p.IfID)
	if pol == nil {
		b.mu.Unlock()
		return Result{Verdict: Passed}, nil
	}
	id := pol.id()
	res := Result{Policy: &id}
	b.setPolTime(pol, pUse, now)
	switch pol.action {
	case kernelops.ActionPass:
		b.mu.Unlock()
		res.Verdict = Passed
		return res, nil
	case kernelops.ActionBlock:
		b.mu.Unlock()
		res.Verdict, res.Reason = Dropped, "blocked by policy"
		return res, nil
	}

	// ipsec/trap: every required template needs an SA.
	var bundle []*saEntry
	var one [1]kernelops.Template
	for _, t := range pol.templates(&one) {
		src, dst := t.Src, t.Dst
		if t.Mode == kernelops.ModeTransport && (!src.IsValid() || !dst.IsValid()) {
			src, dst = p.Src, p.Dst
		}
		if e := b.findOutSA(pol, t, src, dst, p); e != nil {
			bundle = append(bundle, e)
			continue
		}
		if b.acquireLocked(pol, t, src, dst, p) {
			res.Acquire = true
		}
		if !t.Optional {
			b.mu.Unlock()
			res.Verdict = Dropped
			res.Reason = fmt.Sprintf("no SA for template %s %s %s->%s reqid %d (acquire pending)", t.Proto, t.Mode, src, dst, t.ReqID)
			return res, nil
		}
	}
	for _, e := range bundle {
		if !e.esn && e.oseq >= math.MaxUint32 {
			b.mu.Unlock()
			res.Verdict, res.Reason = Dropped, "outbound sequence number overflow on "+e.said().String()
			return res, nil
		}
	}
	obs := make([]observed, 0, len(bundle))
	for _, e := range bundle {
		e.oseq++
		obs = append(obs, b.count(e, p.Len, now))
		b.syncTouched(e)
		res.SAs = append(res.SAs, e.said())
	}
	b.mu.Unlock()
	b.report(obs)
	res.Verdict = Protected
	return res, nil
}

// findOutSA is XFRM's xfrm_state_find: a valid or dying SA of the
// template's protocol, mode, reqid (exactly) and endpoints, with the
// policy's mark and if_id, whose selector (if any) covers the packet,
// not recorded as inbound. A fresh SA beats a dying one, a newer one an
// older one.
func (b *model) findOutSA(pol *polEntry, t kernelops.Template, src, dst netip.Addr, p Packet) *saEntry {
	mark := pol.mark.Value & pol.mark.Mask
	var best *saEntry
	for e := range b.sad.byReq(t.ReqID) {
		switch {
		case e.state != kernelops.SAValid && e.state != kernelops.SADying,
			e.proto != t.Proto, e.mode != t.Mode,
			e.srcAddr() != src, e.dstAddr() != dst,
			t.SPI != 0 && t.SPI != e.spi,
			e.dir == kernelops.DirIn,
			mark&e.mark.Mask != e.mark.Value,
			e.ifID != pol.ifID,
			e.x != nil && !e.x.sel.IsZero() && !e.x.sel.Matches(p.Src, p.Dst, p.Proto, p.SrcPort, p.DstPort):
			continue
		}
		if best == nil || (best.state == kernelops.SADying && e.state == kernelops.SAValid) ||
			(best.state == e.state && e.order > best.order) {
			best = e
		}
	}
	return best
}

// acqKey is what makes acquires distinct: XFRM keeps one larval acquire
// state per template endpoints, protocol, mode, reqid, mark and if_id.
type acqKey struct {
	src, dst netip.Addr
	proto    kernelops.Proto
	mode     kernelops.Mode
	reqid    uint32
	mark     uint32
	ifid     uint32
}

type acquire struct {
	timer clock.Timer
}

// acquireLocked raises an acquire for a template without an SA, unless one
// is pending for the same key; it reports whether it raised one.
func (b *model) acquireLocked(pol *polEntry, t kernelops.Template, src, dst netip.Addr, p Packet) bool {
	k := acqKey{src: src, dst: dst, proto: t.Proto, mode: t.Mode, reqid: t.ReqID,
		mark: pol.mark.Value & pol.mark.Mask, ifid: pol.ifID}
	if _, pending := b.acquires[k]; pending {
		return false
	}
	a := &acquire{}
	a.timer = b.clk.AfterFunc(b.acqExpires, func() {
		b.mu.Lock()
		defer b.mu.Unlock()
		if b.acquires[k] == a {
			delete(b.acquires, k)
		}
	})
	b.acquires[k] = a
	b.acqSeq++
	host := func(x netip.Addr) netip.Prefix { return netip.PrefixFrom(x, x.BitLen()) }
	b.env.Publish(&kernelops.AcquireEvent{
		Seq: b.acqSeq, Src: src, Dst: dst, Proto: t.Proto, ReqID: t.ReqID, Policy: pol.id(),
		Packet: kernelops.Selector{Src: host(p.Src), Dst: host(p.Dst), Proto: p.Proto, SrcPort: p.SrcPort, DstPort: p.DstPort},
	})
	return true
}

// clearAcquires drops the pending acquire an SA answers, as XFRM deletes
// the larval acquire state when the SA is added.
func (b *model) clearAcquires(e *saEntry) {
	k := acqKey{src: e.srcAddr(), dst: e.dstAddr(), proto: e.proto, mode: e.mode, reqid: e.reqID,
		mark: e.mark.Value, ifid: e.ifID}
	if a := b.acquires[k]; a != nil {
		a.timer.Stop()
		delete(b.acquires, k)
	}
}

// PendingAcquires reports how many acquires wait for an SA or a timeout.
func (b *model) PendingAcquires() int {
	b.mu.Lock()
	defer b.mu.Unlock()
	return len(b.acquires)
}

func (b *model) inbound(ctx context.Context, p Packet) (Result, error) {
	b.mu.Lock()
	if err := b.checkLocked(); err != nil {
		b.mu.Unlock()
		return Result{}, err
	}
	drop := func(reason string) (Result, error) {
		b.mu.Unlock()
		return Result{Verdict: Dropped, Reason: reason}, nil
	}
	e := b.sad.findByMark(keyOf(p.SA), p.Mark)
	switch {
	case e == nil:
		return drop("no SA for " + p.SA.String())
	case e.state == kernelops.SALarval:
		return drop("SA " + e.said().String() + " is larval")
	case e.dir == kernelops.DirOut:
		return drop("SA " + e.said().String() + " is outbound")
	}
	now := b.clk.Now()
	if e.encap && p.From.IsValid() {
		peer := netip.AddrPortFrom(e.srcAddr(), e.encapPorts[0])
		var seen netip.AddrPort
		if e.x != nil {
			seen = e.x.mapping
		}
		if p.From != peer && p.From != seen {
			e.extra().mapping = p.From
			b.env.Publish(&kernelops.MappingEvent{SA: e.said(), ReqID: e.reqID, Old: peer, New: p.From})
		}
	}
	seq := p.Seq
	if seq == 0 {
		seq = e.seq + 1
	}
	if !e.esn && seq > math.MaxUint32 {
		return drop(fmt.Sprintf("sequence number %d beyond 32 bits without ESN", seq))
	}
	r := kernelops.ReplayState{Seq: e.seq, Window: e.window, Bitmap: e.bitmap()}
	if !replayAccept(&r, seq) {
		e.drops++
		return drop(fmt.Sprintf("replayed or too old sequence number %d (highest %d, window %d)", seq, e.seq, e.window))
	}
	e.seq = r.Seq
	obs := []observed{b.count(e, p.Len, now)}
	b.syncTouched(e)
	res := Result{Verdict: Delivered, SAs: []kernelops.SAID{e.said()}}
	if reason := b.inboundPolicyLocked(e, p, &res); reason != "" {
		res.Verdict, res.Reason = Dropped, reason
	}
	b.mu.Unlock()
	b.report(obs)
	return res, nil
}

// inboundPolicyLocked is XFRM's inbound policy check of a decapsulated
// packet: the inbound policy must expect the SA it came through.
func (b *model) inboundPolicyLocked(e *saEntry, p Packet, res *Result) string {
	if !p.Src.IsValid() || !p.Dst.IsValid() {
		return ""
	}
	if sel := e.selector(); !sel.IsZero() && !sel.Matches(p.Src, p.Dst, p.Proto, p.SrcPort, p.DstPort) {
		return "inner packet outside the SA's selector"
	}
	pol := b.spd.lookup(kernelops.DirIn, p.Src, p.Dst, p.Proto, p.SrcPort, p.DstPort, p.Mark, e.ifID)
	if pol == nil || pol.action == kernelops.ActionPass {
		if e.mode == kernelops.ModeTunnel {
			return "no inbound ipsec policy expects tunnel-mode traffic"
		}
		return ""
	}
	id := pol.id()
	res.Policy = &id
	b.setPolTime(pol, pUse, b.clk.Now())
	if pol.action == kernelops.ActionBlock {
		return "blocked by policy"
	}
	var one [1]kernelops.Template
	for _, t := range pol.templates(&one) {
		if t.Proto == e.proto && t.Mode == e.mode && (t.ReqID == 0 || t.ReqID == e.reqID) &&
			(t.SPI == 0 || t.SPI == e.spi) &&
			(t.Mode != kernelops.ModeTunnel || (t.Dst == e.dstAddr() && (!t.Src.IsValid() || t.Src.IsUnspecified() || t.Src == e.srcAddr()))) {
			return ""
		}
	}
	return "SA does not match the inbound policy's templates"
}

// replayAccept checks seq against the anti-replay window and records it.
// Bit i of the bitmap stands for sequence number Seq-i.
func replayAccept(r *kernelops.ReplayState, seq uint64) bool {
	if seq == 0 {
		return false
	}
	w := uint64(r.Window)
	if w == 0 {
		r.Seq = max(r.Seq, seq)
		return true
	}
	if seq > r.Seq {
		shiftBitmap(r.Bitmap, seq-r.Seq, w)
		r.Seq = seq
		r.Bitmap[0] |= 1
		return true
	}
	diff := r.Seq - seq
	if diff >= w {
		return false
	}
	word, bit := diff/32, diff%32
	if r.Bitmap[word]&(1<<bit) != 0 {
		return false
	}
	r.Bitmap[word] |= 1 << bit
	return true
}

// shiftBitmap moves every bit n places up (older), clearing the new low
// bits and whatever falls off the window.
func shiftBitmap(bm []uint32, n, w uint64) {
	if n >= w {
		clear(bm)
		return
	}
	words, bits := int(n/32), uint(n%32)
	for i := len(bm) - 1; i >= 0; i-- {
		var v uint32
		if j := i - words; j >= 0 {
			v = bm[j] << bits
			if bits != 0 && j-1 >= 0 {
				v |= bm[j-1] >> (32 - bits)
			}
		}
		bm[i] = v
	}
}
