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
func (e *saEntry) count(n int, now time.Time) observed {
	e.c.Bytes += uint64(n)
	e.c.Packets++
	if e.c.FirstUse.IsZero() {
		e.c.FirstUse = now
	}
	e.c.LastUsed = now
	return observed{e.sa.ID, e.c.Bytes, e.c.Packets, e.c.FirstUse}
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
	id := pol.p.ID()
	res := Result{Policy: &id}
	pol.use = now
	switch pol.p.Action {
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
	for _, t := range pol.p.Templates {
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
		if !e.sa.ESN && e.c.Replay.OSeq >= math.MaxUint32 {
			b.mu.Unlock()
			res.Verdict, res.Reason = Dropped, "outbound sequence number overflow on "+e.sa.ID.String()
			return res, nil
		}
	}
	obs := make([]observed, 0, len(bundle))
	for _, e := range bundle {
		e.c.Replay.OSeq++
		obs = append(obs, e.count(p.Len, now))
		b.syncTouched(e)
		res.SAs = append(res.SAs, e.sa.ID)
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
	mark := pol.p.Mark.Value & pol.p.Mark.Mask
	var best *saEntry
	for _, e := range b.sad.byReqID[t.ReqID] {
		sa := &e.sa
		switch {
		case e.state != kernelops.SAValid && e.state != kernelops.SADying,
			sa.ID.Proto != t.Proto, sa.Mode != t.Mode,
			sa.ID.Src != src, sa.ID.Dst != dst,
			t.SPI != 0 && t.SPI != sa.ID.SPI,
			sa.Dir == kernelops.DirIn,
			mark&sa.ID.Mark.Mask != sa.ID.Mark.Value,
			sa.IfID != pol.p.IfID,
			!sa.Selector.IsZero() && !sa.Selector.Matches(p.Src, p.Dst, p.Proto, p.SrcPort, p.DstPort):
			continue
		}
		if best == nil || (best.state == kernelops.SADying && e.state == kernelops.SAValid) ||
			(best.state == e.state && e.seq > best.seq) {
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
		mark: pol.p.Mark.Value & pol.p.Mark.Mask, ifid: pol.p.IfID}
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
		Seq: b.acqSeq, Src: src, Dst: dst, Proto: t.Proto, ReqID: t.ReqID, Policy: pol.p.ID(),
		Packet: kernelops.Selector{Src: host(p.Src), Dst: host(p.Dst), Proto: p.Proto, SrcPort: p.SrcPort, DstPort: p.DstPort},
	})
	return true
}

// clearAcquires drops the pending acquire an SA answers, as XFRM deletes
// the larval acquire state when the SA is added.
func (b *model) clearAcquires(sa *kernelops.SA) {
	k := acqKey{src: sa.ID.Src, dst: sa.ID.Dst, proto: sa.ID.Proto, mode: sa.Mode, reqid: sa.ReqID,
		mark: sa.ID.Mark.Value, ifid: sa.IfID}
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
		return drop("SA " + e.sa.ID.String() + " is larval")
	case e.sa.Dir == kernelops.DirOut:
		return drop("SA " + e.sa.ID.String() + " is outbound")
	}
	now := b.clk.Now()
	if e.sa.Encap != nil && p.From.IsValid() {
		peer := netip.AddrPortFrom(e.sa.ID.Src, e.sa.Encap.SrcPort)
		var seen netip.AddrPort
		if e.x != nil {
			seen = e.x.mapping
		}
		if p.From != peer && p.From != seen {
			e.extra().mapping = p.From
			b.env.Publish(&kernelops.MappingEvent{SA: e.sa.ID, ReqID: e.sa.ReqID, Old: peer, New: p.From})
		}
	}
	seq := p.Seq
	if seq == 0 {
		seq = e.c.Replay.Seq + 1
	}
	if !e.sa.ESN && seq > math.MaxUint32 {
		return drop(fmt.Sprintf("sequence number %d beyond 32 bits without ESN", seq))
	}
	if !replayAccept(&e.c.Replay, seq) {
		e.c.ReplayDrops++
		return drop(fmt.Sprintf("replayed or too old sequence number %d (highest %d, window %d)", seq, e.c.Replay.Seq, e.c.Replay.Window))
	}
	obs := []observed{e.count(p.Len, now)}
	b.syncTouched(e)
	res := Result{Verdict: Delivered, SAs: []kernelops.SAID{e.sa.ID}}
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
	sa := &e.sa
	if !sa.Selector.IsZero() && !sa.Selector.Matches(p.Src, p.Dst, p.Proto, p.SrcPort, p.DstPort) {
		return "inner packet outside the SA's selector"
	}
	pol := b.spd.lookup(kernelops.DirIn, p.Src, p.Dst, p.Proto, p.SrcPort, p.DstPort, p.Mark, sa.IfID)
	if pol == nil || pol.p.Action == kernelops.ActionPass {
		if sa.Mode == kernelops.ModeTunnel {
			return "no inbound ipsec policy expects tunnel-mode traffic"
		}
		return ""
	}
	id := pol.p.ID()
	res.Policy = &id
	pol.use = b.clk.Now()
	if pol.p.Action == kernelops.ActionBlock {
		return "blocked by policy"
	}
	for _, t := range pol.p.Templates {
		if t.Proto == sa.ID.Proto && t.Mode == sa.Mode && (t.ReqID == 0 || t.ReqID == sa.ReqID) &&
			(t.SPI == 0 || t.SPI == sa.ID.SPI) &&
			(t.Mode != kernelops.ModeTunnel || (t.Dst == sa.ID.Dst && (!t.Src.IsValid() || t.Src.IsUnspecified() || t.Src == sa.ID.Src))) {
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
