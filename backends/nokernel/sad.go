package nokernel

import (
	"bytes"
	"context"
	"iter"
	"net/netip"
	"syscall"
	"time"

	"github.com/keyplane/keyplane/kernelops"
	"github.com/keyplane/keyplane/kernelops/clock"
	"github.com/keyplane/keyplane/kernelops/spialloc"
)

// spiKey is how XFRM finds an SA by SPI: destination, SPI and protocol.
// The source address is not part of it, and SAs differing only in their
// mark share a key (the entries' marks tell them apart).
type spiKey struct {
	dst   netip.Addr
	spi   uint32
	proto kernelops.Proto
}

// allocKey scopes SPI allocation: an SPI is unique per destination and
// protocol, as XFRM's xfrm_alloc_spi checks.
type allocKey struct {
	dst   netip.Addr
	proto kernelops.Proto
}

type sad struct {
	bySPI   map[spiKey][]*saEntry
	byReqID map[uint32][]*saEntry // for outbound template lookups
	alloc   map[allocKey]*spialloc.Allocator
	n       int
	seq     uint64
}

// saEntry is an SA in the model. Its fields are laid out to fill a
// 512-octet allocation exactly; what only a few SAs need is apart in x.
type saEntry struct {
	sa    kernelops.SA // the model's own copy
	state kernelops.SAState
	dead  bool // removed; a snapshot holding it skips it
	c     kernelops.Counters
	seq   uint64 // insertion order: newer SAs win outbound lookups

	x *saExtra // nil: none of it
}

// saExtra is what an SA needs only as a reservation (larval), with sync
// thresholds set (HA), or behind a NAT whose mapping moved.
type saExtra struct {
	larval  clock.Timer
	sync    syncState
	mapping netip.AddrPort // last NAT mapping change reported
}

// extra returns e.x, made when first needed.
func (e *saEntry) extra() *saExtra {
	if e.x == nil {
		e.x = &saExtra{}
	}
	return e.x
}

func (s *sad) init() {
	s.bySPI = map[spiKey][]*saEntry{}
	s.byReqID = map[uint32][]*saEntry{}
	s.alloc = map[allocKey]*spialloc.Allocator{}
}

func keyOf(id kernelops.SAID) spiKey { return spiKey{id.Dst, id.SPI, id.Proto} }

// find returns the SA with exactly this id's key and mark.
func (s *sad) find(id kernelops.SAID) *saEntry {
	for _, e := range s.bySPI[keyOf(id)] {
		if e.sa.ID.Mark == id.Mark {
			return e
		}
	}
	return nil
}

// findByMark returns the SA an inbound packet with mark reaches: XFRM's
// (mark & m) == v rule.
func (s *sad) findByMark(k spiKey, mark uint32) *saEntry {
	for _, e := range s.bySPI[k] {
		if mark&e.sa.ID.Mark.Mask == e.sa.ID.Mark.Value {
			return e
		}
	}
	return nil
}

func (s *sad) allocator(dst netip.Addr, proto kernelops.Proto) *spialloc.Allocator {
	k := allocKey{dst, proto}
	a := s.alloc[k]
	if a == nil {
		a = spialloc.New()
		s.alloc[k] = a
	}
	return a
}

// insert indexes e; reserved says its SPI was taken by AllocSPI already.
func (s *sad) insert(e *saEntry, reserved bool) {
	k := keyOf(e.sa.ID)
	if len(s.bySPI[k]) == 0 && !reserved {
		s.allocator(k.dst, k.proto).Reserve(k.spi)
	}
	s.bySPI[k] = append(s.bySPI[k], e)
	s.byReqID[e.sa.ReqID] = append(s.byReqID[e.sa.ReqID], e)
	s.seq++
	e.seq = s.seq
	s.n++
}

func removePtr(list []*saEntry, e *saEntry) []*saEntry {
	for i, x := range list {
		if x == e {
			last := len(list) - 1
			list[i] = list[last]
			list[last] = nil
			return list[:last]
		}
	}
	return list
}

// unlink removes e from the indexes and frees its SPI when no other SA
// (of another mark) holds it.
func (s *sad) unlink(e *saEntry) {
	k := keyOf(e.sa.ID)
	if l := removePtr(s.bySPI[k], e); len(l) == 0 {
		delete(s.bySPI, k)
		if a := s.alloc[allocKey{k.dst, k.proto}]; a != nil {
			a.Release(k.spi)
			if a.InUse() == 0 {
				delete(s.alloc, allocKey{k.dst, k.proto})
			}
		}
	} else {
		s.bySPI[k] = l
	}
	if l := removePtr(s.byReqID[e.sa.ReqID], e); len(l) == 0 {
		delete(s.byReqID, e.sa.ReqID)
	} else {
		s.byReqID[e.sa.ReqID] = l
	}
	s.n--
}

func (s *sad) all() []*saEntry {
	out := make([]*saEntry, 0, s.n)
	for _, l := range s.bySPI {
		out = append(out, l...)
	}
	return out
}

func (s *sad) stopTimers() {
	for _, l := range s.bySPI {
		for _, e := range l {
			e.stopTimers()
		}
	}
}

func (e *saEntry) stopTimers() {
	if e.x == nil {
		return
	}
	if e.x.larval != nil {
		e.x.larval.Stop()
		e.x.larval = nil
	}
	e.x.sync.stop()
}

// removeLocked deletes e from the model: indexes, timers, lifetime
// tracking, idle watch. Called with b.mu held.
func (b *model) removeLocked(e *saEntry) {
	e.dead = true
	e.stopTimers()
	b.sad.unlink(e)
}

// AllocSPI reserves an inbound SPI as a larval SA, in the request's range
// or the configured one. Like XFRM's, the reservation lives for
// acquire-expires (30s) unless an AddSA or UpdateSA fills it; then it is
// removed with a hard expire.
func (b *model) AllocSPI(ctx context.Context, req kernelops.SPIRequest) (uint32, error) {
	lo, hi := req.Min, req.Max
	b.mu.Lock()
	defer b.mu.Unlock()
	if err := b.checkLocked(); err != nil {
		return 0, err
	}
	spi, err := b.sad.allocator(req.Dst, req.Proto).Alloc(lo, hi)
	if err != nil {
		return 0, &kernelops.Error{Err: kernelops.ErrNoSpace, Errno: syscall.ENOENT, Detail: err.Error()}
	}
	now := b.clk.Now()
	e := &saEntry{
		sa:    kernelops.SA{ID: kernelops.SAID{Src: req.Src, Dst: req.Dst, SPI: spi, Proto: req.Proto}, ReqID: req.ReqID},
		state: kernelops.SALarval,
		c:     kernelops.Counters{AddTime: now},
	}
	b.sad.insert(e, true)
	e.extra().larval = b.clk.AfterFunc(b.acqExpires, func() { b.expireLarval(e) })
	return spi, nil
}

func (b *model) expireLarval(e *saEntry) {
	b.mu.Lock()
	defer b.mu.Unlock()
	if e.dead || e.state != kernelops.SALarval || b.closed {
		return
	}
	e.x.larval = nil
	b.removeLocked(e)
	b.env.Publish(&kernelops.ExpireEvent{SA: e.sa.ID, ReqID: e.sa.ReqID, Hard: true, Limit: kernelops.LimitAddTime})
}

// AddSA installs an SA, or fills the larval SA AllocSPI left on its SPI.
// A taken id is ErrExists (EEXIST).
func (b *model) AddSA(ctx context.Context, sa *kernelops.SA) error {
	return b.putSA(ctx, sa, false)
}

// UpdateSA changes an installed SA's lifetimes, selector, encapsulation
// ports and offload, or fills a larval SA; a missing id is ErrNotFound
// (ESRCH). As on XFRM, the rest of an SA cannot change: a different key,
// algorithm, mode, reqid, window, ESN, if_id or direction is ErrInvalid
// naming the field (XFRM would silently keep the old value), and so is
// adding or removing UDP encapsulation (XFRM: EINVAL). Counters and
// replay state carry over; a soft expire already raised is not raised
// again.
func (b *model) UpdateSA(ctx context.Context, sa *kernelops.SA) error {
	return b.putSA(ctx, sa, true)
}

func (b *model) putSA(ctx context.Context, sa *kernelops.SA, update bool) error {
	active, err := b.net.resolveOffload(sa.Offload)
	if err != nil {
		return err
	}

	b.mu.Lock()
	if err := b.checkLocked(); err != nil {
		b.mu.Unlock()
		return err
	}
	now := b.clk.Now()
	e := b.sad.find(sa.ID)
	if e == nil {
		// A larval SA (mark 0/0) is found by a marked NEWSA/UPDSA too: XFRM
		// looks states up with (mark & m) == v.
		if l := b.sad.findByMark(keyOf(sa.ID), sa.ID.Mark.Value&sa.ID.Mark.Mask); l != nil && l.state == kernelops.SALarval {
			e = l
		}
	}
	switch {
	case e == nil && update:
		b.mu.Unlock()
		return errno(syscall.ESRCH, "no such SA")
	case e == nil:
		e = &saEntry{}
		b.fill(e, sa, active, now)
		b.sad.insert(e, false)
	case e.state == kernelops.SALarval:
		// The reservation is filled: same SPI, now a real SA.
		if e.x != nil && e.x.larval != nil {
			e.x.larval.Stop()
			e.x.larval = nil
		}
		b.sad.unlink(e)
		e.dead = true
		e = &saEntry{}
		b.fill(e, sa, active, now)
		b.sad.insert(e, false)
	case !update:
		b.mu.Unlock()
		return errno(syscall.EEXIST, "SA exists")
	default:
		if err := immutable(&e.sa, sa); err != nil {
			b.mu.Unlock()
			return err
		}
		e.sa.Lifetime = sa.Lifetime
		e.sa.Selector = sa.Selector
		if sa.Encap != nil {
			enc := *sa.Encap
			e.sa.Encap = &enc
		}
		e.sa.Offload = sa.Offload
		e.sa.Offload.Active = active
	}
	b.clearAcquires(&e.sa)
	b.mu.Unlock()

	sa.Offload.Active = active
	return nil
}

func (b *model) fill(e *saEntry, sa *kernelops.SA, active kernelops.OffloadMode, now time.Time) {
	e.sa = *sa.Clone()
	e.sa.Offload.Active = active
	e.state = kernelops.SAValid
	e.c = kernelops.Counters{AddTime: now}
	e.c.Replay.Window = sa.ReplayWindow
	e.c.Replay.Bitmap = make([]uint32, (sa.ReplayWindow+31)/32)
	if st := sa.Sync; st != nil {
		// Added with its sync state (validated by the front end), as
		// SetSyncState writes it: XFRM takes it with NEWSA.
		e.sa.Sync = nil
		e.c.Replay.OSeq, e.c.Replay.Seq = st.Replay.OSeq, st.Replay.Seq
		copy(e.c.Replay.Bitmap, st.Replay.Bitmap)
		if w := uint64(e.c.Replay.Window); w%32 != 0 && len(e.c.Replay.Bitmap) > 0 {
			e.c.Replay.Bitmap[len(e.c.Replay.Bitmap)-1] &= 1<<(w%32) - 1
		}
		e.c.Bytes, e.c.Packets = st.Bytes, st.Packets
		if !st.AddTime.IsZero() {
			e.c.AddTime = st.AddTime
		}
		e.c.FirstUse = st.UseTime
	}
}

// immutable rejects an update that would change what XFRM keeps.
func immutable(old, nu *kernelops.SA) error {
	bad := func(field string) error {
		return kernelops.Invalid("", "", "", field, "cannot change on update (delete and add the SA instead)")
	}
	switch {
	case old.Mode != nu.Mode:
		return bad("Mode")
	case old.ReqID != nu.ReqID:
		return bad("ReqID")
	case old.Encryption.ID != nu.Encryption.ID || old.Encryption.KeyBits != nu.Encryption.KeyBits:
		return bad("Encryption.ID")
	case !bytes.Equal(old.Encryption.Key, nu.Encryption.Key):
		return bad("Encryption.Key")
	case old.Integrity.ID != nu.Integrity.ID:
		return bad("Integrity.ID")
	case !bytes.Equal(old.Integrity.Key, nu.Integrity.Key):
		return bad("Integrity.Key")
	case old.ReplayWindow != nu.ReplayWindow:
		return bad("ReplayWindow")
	case old.ESN != nu.ESN:
		return bad("ESN")
	case old.IfID != nu.IfID:
		return bad("IfID")
	case old.Dir != nu.Dir:
		return bad("Dir")
	case (old.Encap == nil) != (nu.Encap == nil):
		return kernelops.Invalid("", "", "", "Encap", "update cannot add or remove UDP encapsulation (use Migrate)")
	}
	return nil
}

// DeleteSA removes an SA (larval ones too); a missing one is ErrNotFound
// (ESRCH). A delete raises no event, as on XFRM.
func (b *model) DeleteSA(ctx context.Context, id kernelops.SAID) error {
	b.mu.Lock()
	defer b.mu.Unlock()
	if err := b.checkLocked(); err != nil {
		return err
	}
	e := b.sad.find(id)
	if e == nil {
		return errno(syscall.ESRCH, "no such SA")
	}
	b.removeLocked(e)
	return nil
}

// GetSA returns a copy of an SA with its keys and counters.
func (b *model) GetSA(ctx context.Context, id kernelops.SAID) (*kernelops.SAEntry, error) {
	b.mu.Lock()
	defer b.mu.Unlock()
	if err := b.checkLocked(); err != nil {
		return nil, err
	}
	e := b.sad.find(id)
	if e == nil {
		return nil, errno(syscall.ESRCH, "no such SA")
	}
	out := &kernelops.SAEntry{}
	copyEntry(out, e)
	return out, nil
}

// copyEntry copies e into dst, reusing dst's key and bitmap storage.
func copyEntry(dst *kernelops.SAEntry, e *saEntry) {
	ek, ik, bm, enc := dst.Encryption.Key, dst.Integrity.Key, dst.Counters.Replay.Bitmap, dst.Encap
	dst.SA = e.sa
	dst.Encryption.Key = append(ek[:0], e.sa.Encryption.Key...)
	dst.Integrity.Key = append(ik[:0], e.sa.Integrity.Key...)
	if e.sa.Encap != nil {
		if enc == nil {
			enc = new(kernelops.Encap)
		}
		*enc = *e.sa.Encap
		dst.Encap = enc
	}
	dst.State = e.state
	dst.Counters = e.c
	dst.Counters.Replay.Bitmap = append(bm[:0], e.c.Replay.Bitmap...)
}

// dumpBatch is how many entries a dump copies per lock hold.
const dumpBatch = 256

// SAs streams every SA, larval ones included, with the snapshot rules of
// dumpSnapshot; the yielded entry is reused.
func (b *model) SAs(ctx context.Context) iter.Seq2[*kernelops.SAEntry, error] {
	return dumpSnapshot(b, ctx, b.sad.all, func(e *saEntry) bool { return e.dead }, copyEntry)
}

// dumpSnapshot streams a table the way a netlink dump does: it walks a
// snapshot taken at its start, reading each entry as it is when reached;
// entries deleted meanwhile are skipped, entries added meanwhile are not
// seen. One Out is reused for every yield, and the lock is held only to
// copy an entry, never across a yield.
func dumpSnapshot[E any, Out any](b *model, ctx context.Context, all func() []*E,
	dead func(*E) bool, fill func(*Out, *E)) iter.Seq2[*Out, error] {
	return func(yield func(*Out, error) bool) {
		b.mu.Lock()
		if err := b.checkLocked(); err != nil {
			b.mu.Unlock()
			yield(nil, err)
			return
		}
		snap := all()
		b.mu.Unlock()
		var out Out
		for i, e := range snap {
			if i%dumpBatch == 0 {
				if err := ctx.Err(); err != nil {
					yield(nil, err)
					return
				}
			}
			b.mu.Lock()
			if dead(e) {
				b.mu.Unlock()
				continue
			}
			fill(&out, e)
			b.mu.Unlock()
			if !yield(&out, nil) {
				return
			}
		}
	}
}

// Usage streams every non-larval SA's counters (UsageReader): a snapshot
// copied a batch at a time, far cheaper than a GetSA per SA.
func (b *model) Usage(ctx context.Context) iter.Seq2[kernelops.Usage, error] {
	return func(yield func(kernelops.Usage, error) bool) {
		b.mu.Lock()
		if err := b.checkLocked(); err != nil {
			b.mu.Unlock()
			yield(kernelops.Usage{}, err)
			return
		}
		snap := b.sad.all()
		b.mu.Unlock()
		buf := make([]kernelops.Usage, 0, dumpBatch)
		for len(snap) > 0 {
			if err := ctx.Err(); err != nil {
				yield(kernelops.Usage{}, err)
				return
			}
			n := min(len(snap), dumpBatch)
			buf = buf[:0]
			b.mu.Lock()
			for _, e := range snap[:n] {
				if e.dead || e.state == kernelops.SALarval {
					continue
				}
				buf = append(buf, kernelops.Usage{ID: e.sa.ID, ReqID: e.sa.ReqID, Bytes: e.c.Bytes,
					Packets: e.c.Packets, AddTime: e.c.AddTime, LastUsed: e.c.LastUsed})
			}
			b.mu.Unlock()
			snap = snap[n:]
			for _, u := range buf {
				if !yield(u, nil) {
					return
				}
			}
		}
	}
}

// FlushSAs removes every SA whose reqid keyplane owns (larval ones too)
// and the pending acquires of owned reqids; other SAs stay.
func (b *model) FlushSAs(ctx context.Context) error {
	b.mu.Lock()
	defer b.mu.Unlock()
	if err := b.checkLocked(); err != nil {
		return err
	}
	for _, e := range b.sad.all() {
		if b.opts.Owns(e.sa.ReqID) {
			b.removeLocked(e)
		}
	}
	for k, a := range b.acquires {
		if b.opts.Owns(k.reqid) {
			a.timer.Stop()
			delete(b.acquires, k)
		}
	}
	return nil
}
