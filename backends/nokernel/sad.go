package nokernel

import (
	"context"
	"hash/maphash"
	"iter"
	"net/netip"
	"strings"
	"syscall"
	"time"

	"github.com/keyplane/keyplane/internal/caddr"
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

// sad indexes the SAs through links in the entries themselves, so an SA
// costs its entry and its share of two 16-octet map slots, not slices
// and slots holding a copy of its key.
type sad struct {
	seed    maphash.Seed
	bySPI   map[uint64]*saEntry // by hash of spiKey, chained through spiNext: the SAs of one key are on one chain, oldest first
	byReqID map[uint32]*saEntry // chained through reqNext, for outbound template lookups
	alloc   map[allocKey]*spialloc.Allocator
	n       int
	seq     uint64
	collide bool // every key hashes alike, for tests of the chains
}

// saEntry is an SA in the model, kept compactly: the keys in one string,
// the addresses in compact form (internal/caddr), the times as stamps,
// the replay bitmap of a window up to 32 (IKE's default) inline, and what few SAs have (a
// selector, NAT-OA, an output mark, offload, a larger window, sync
// thresholds, a larval timer, zones) apart in x. Its lifetimes are not
// kept: the front end tracks them and fills them in what GetSA and the
// dump return (CapSoftwareLifetimes). Its fields fill a 192-octet
// allocation (TestSAEntrySize).
type saEntry struct {
	keys string // the encryption key, then the integrity key

	bytes, packets uint64
	drops          uint64
	oseq, seq      uint64   // replay state: last sent, highest seen
	t              [3]stamp // tAdd, tFirstUse, tLastUsed
	order          uint64   // insertion order: newer SAs win outbound lookups

	spiNext, reqNext *saEntry
	x                *saExtra // nil: none of it

	mark                kernelops.Mark // the SA's ID: spi, mark, proto, src, dst
	spi                 uint32
	bm                  [1]uint32 // the replay bitmap when window <= 32
	reqID, ifID, window uint32
	keyBits             uint16 // checked by the front end against the cipher's sizes
	encID               kernelops.EncrID
	integID             kernelops.IntegID
	encapPorts          [2]uint16 // source, destination; when encap
	encLen              uint8     // the encryption key's length in keys
	proto               kernelops.Proto
	src, dst            caddr.Addr
	mode                kernelops.Mode
	state               kernelops.SAState
	dir                 kernelops.Direction
	esn                 bool
	encap               bool
	dead                bool // removed; a snapshot holding it skips it
}

// The times of an saEntry, by index in t.
const (
	tAdd = iota
	tFirstUse
	tLastUsed
)

// saExtra is what an SA needs only as a reservation (larval), with sync
// thresholds set (HA), behind a NAT whose mapping moved, or with a rarely
// set field.
type saExtra struct {
	larval  clock.Timer
	sync    syncState
	mapping netip.AddrPort // last NAT mapping change reported

	sel      kernelops.Selector
	origAddr netip.Addr // Encap.OrigAddr
	mark     kernelops.Mark
	offload  kernelops.Offload
	bitmap   []uint32     // the replay bitmap when window > 32
	zones    [2]string    // the zones of src and dst when caddr.Zoned
	times    [3]time.Time // the times whose stamp is stampApart
}

func (e *saEntry) srcAddr() netip.Addr {
	if e.src.Kind() == caddr.Zoned {
		return e.src.Unpack(e.x.zones[0])
	}
	return e.src.Unpack("")
}

func (e *saEntry) dstAddr() netip.Addr {
	if e.dst.Kind() == caddr.Zoned {
		return e.dst.Unpack(e.x.zones[1])
	}
	return e.dst.Unpack("")
}

func (e *saEntry) said() kernelops.SAID {
	return kernelops.SAID{Src: e.srcAddr(), Dst: e.dstAddr(), SPI: e.spi, Proto: e.proto, Mark: e.mark}
}

func (e *saEntry) key() spiKey { return spiKey{e.dstAddr(), e.spi, e.proto} }

// setID sets e's ID.
func (e *saEntry) setID(id kernelops.SAID) {
	e.src, e.dst = caddr.Pack(id.Src), caddr.Pack(id.Dst)
	e.spi, e.proto, e.mark = id.SPI, id.Proto, id.Mark
	if e.src.Kind() == caddr.Zoned || e.dst.Kind() == caddr.Zoned || e.x != nil {
		e.extra().zones = [2]string{id.Src.Zone(), id.Dst.Zone()}
	}
}

// extra returns e.x, made when first needed.
func (e *saEntry) extra() *saExtra {
	if e.x == nil {
		e.x = &saExtra{}
	}
	return e.x
}

// time returns one of e's times.
func (b *model) saTime(e *saEntry, i int) time.Time {
	if e.t[i] == stampApart {
		return e.x.times[i]
	}
	return b.fromStamp(e.t[i])
}

// setSATime sets one of e's times.
func (b *model) setSATime(e *saEntry, i int, t time.Time) {
	s, ok := b.toStamp(t)
	if !ok {
		s = stampApart
		e.extra().times[i] = t.Round(0)
	}
	e.t[i] = s
}

// bitmap is e's replay bitmap: one bit per packet of the window.
func (e *saEntry) bitmap() []uint32 {
	n := (e.window + 31) / 32
	if n <= uint32(len(e.bm)) {
		return e.bm[:n]
	}
	return e.x.bitmap
}

func (e *saEntry) encKey() string   { return e.keys[:e.encLen] }
func (e *saEntry) integKey() string { return e.keys[e.encLen:] }

func (e *saEntry) selector() kernelops.Selector {
	if e.x == nil {
		return kernelops.Selector{}
	}
	return e.x.sel
}

// encapOf returns e's UDP encapsulation; false: none.
func (e *saEntry) encapOf() (kernelops.Encap, bool) {
	if !e.encap {
		return kernelops.Encap{}, false
	}
	enc := kernelops.Encap{SrcPort: e.encapPorts[0], DstPort: e.encapPorts[1]}
	if e.x != nil {
		enc.OrigAddr = e.x.origAddr
	}
	return enc, true
}

// setEncap sets e's UDP encapsulation; nil removes it.
func (e *saEntry) setEncap(enc *kernelops.Encap) {
	e.encap = enc != nil
	if enc == nil {
		e.encapPorts = [2]uint16{}
		if e.x != nil {
			e.x.origAddr = netip.Addr{}
		}
		return
	}
	e.encapPorts = [2]uint16{enc.SrcPort, enc.DstPort}
	if enc.OrigAddr.IsValid() || e.x != nil {
		e.extra().origAddr = enc.OrigAddr
	}
}

// setSelector sets e's selector.
func (e *saEntry) setSelector(sel kernelops.Selector) {
	if !sel.IsZero() || e.x != nil {
		e.extra().sel = sel
	}
}

// setOffload sets e's offload request and result.
func (e *saEntry) setOffload(o kernelops.Offload) {
	if o != (kernelops.Offload{}) || e.x != nil {
		e.extra().offload = o
	}
}

func (s *sad) init() {
	s.seed = maphash.MakeSeed()
	s.bySPI = map[uint64]*saEntry{}
	s.byReqID = map[uint32]*saEntry{}
	s.alloc = map[allocKey]*spialloc.Allocator{}
}

func keyOf(id kernelops.SAID) spiKey { return spiKey{id.Dst, id.SPI, id.Proto} }

func (s *sad) hash(k spiKey) uint64 {
	if s.collide {
		return 0
	}
	return maphash.Comparable(s.seed, k)
}

// byKey yields the SAs of key k, oldest first.
func (s *sad) byKey(k spiKey) iter.Seq[*saEntry] {
	return func(yield func(*saEntry) bool) {
		for e := s.bySPI[s.hash(k)]; e != nil; e = e.spiNext {
			if e.key() == k && !yield(e) {
				return
			}
		}
	}
}

// byReq yields the SAs of reqid r.
func (s *sad) byReq(r uint32) iter.Seq[*saEntry] {
	return func(yield func(*saEntry) bool) {
		for e := s.byReqID[r]; e != nil; e = e.reqNext {
			if !yield(e) {
				return
			}
		}
	}
}

// find returns the SA with exactly this id's key and mark.
func (s *sad) find(id kernelops.SAID) *saEntry {
	for e := range s.byKey(keyOf(id)) {
		if e.mark == id.Mark {
			return e
		}
	}
	return nil
}

// findByMark returns the SA an inbound packet with mark reaches: XFRM's
// (mark & m) == v rule.
func (s *sad) findByMark(k spiKey, mark uint32) *saEntry {
	for e := range s.byKey(k) {
		if mark&e.mark.Mask == e.mark.Value {
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
	k := e.key()
	h := s.hash(k)
	held := false
	if last := s.bySPI[h]; last == nil {
		s.bySPI[h] = e
	} else {
		for ; ; last = last.spiNext {
			held = held || last.key() == k
			if last.spiNext == nil {
				break
			}
		}
		last.spiNext = e
	}
	if !held && !reserved {
		s.allocator(k.dst, k.proto).Reserve(k.spi)
	}
	e.spiNext = nil
	e.reqNext = s.byReqID[e.reqID]
	s.byReqID[e.reqID] = e
	s.seq++
	e.order = s.seq
	s.n++
}

// unlink removes e from the indexes and frees its SPI when no other SA
// (of another mark) holds it.
func (s *sad) unlink(e *saEntry) {
	k := e.key()
	h := s.hash(k)
	held := false
	var prev *saEntry
	for x := s.bySPI[h]; x != nil; prev, x = x, x.spiNext {
		if x != e {
			held = held || x.key() == k
			continue
		}
		switch {
		case prev != nil:
			prev.spiNext = e.spiNext
		case e.spiNext == nil:
			delete(s.bySPI, h)
		default:
			s.bySPI[h] = e.spiNext
		}
		for y := e.spiNext; y != nil && !held; y = y.spiNext {
			held = y.key() == k
		}
		break
	}
	e.spiNext = nil
	if !held {
		if a := s.alloc[allocKey{k.dst, k.proto}]; a != nil {
			a.Release(k.spi)
			if a.InUse() == 0 {
				delete(s.alloc, allocKey{k.dst, k.proto})
			}
		}
	}
	prev = nil
	for x := s.byReqID[e.reqID]; x != nil; prev, x = x, x.reqNext {
		if x != e {
			continue
		}
		switch {
		case prev != nil:
			prev.reqNext = e.reqNext
		case e.reqNext == nil:
			delete(s.byReqID, e.reqID)
		default:
			s.byReqID[e.reqID] = e.reqNext
		}
		break
	}
	e.reqNext = nil
	s.n--
}

func (s *sad) all() []*saEntry {
	out := make([]*saEntry, 0, s.n)
	for _, e := range s.bySPI {
		for ; e != nil; e = e.spiNext {
			out = append(out, e)
		}
	}
	return out
}

func (s *sad) stopTimers() {
	for _, e := range s.bySPI {
		for ; e != nil; e = e.spiNext {
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
	e := &saEntry{reqID: req.ReqID, state: kernelops.SALarval}
	e.setID(kernelops.SAID{Src: req.Src, Dst: req.Dst, SPI: spi, Proto: req.Proto})
	b.setSATime(e, tAdd, now)
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
	b.env.Publish(&kernelops.ExpireEvent{SA: e.said(), ReqID: e.reqID, Hard: true, Limit: kernelops.LimitAddTime})
}

// AddSA installs an SA, or fills the larval SA AllocSPI left on its SPI.
// A taken id is ErrExists (EEXIST).
func (b *model) AddSA(ctx context.Context, sa *kernelops.SA) error {
	return b.putSA(ctx, sa, false)
}

// UpdateSA changes an installed SA's selector, encapsulation ports and
// offload (its lifetimes are the front end's), or fills a larval SA; a
// missing id is ErrNotFound (ESRCH). As on XFRM, the rest of an SA
// cannot change: a different key, algorithm, mode, reqid, window, ESN,
// if_id or direction is ErrInvalid naming the field (XFRM would silently
// keep the old value), and so is adding or removing UDP encapsulation
// (XFRM: EINVAL). Counters and replay state carry over; a soft expire
// already raised is not raised again.
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
		if err := immutable(e, sa); err != nil {
			b.mu.Unlock()
			return err
		}
		e.setSelector(sa.Selector)
		if sa.Encap != nil {
			e.setEncap(sa.Encap)
		}
		o := sa.Offload
		o.Active = active
		e.setOffload(o)
	}
	b.clearAcquires(e)
	b.mu.Unlock()

	sa.Offload.Active = active
	return nil
}

func (b *model) fill(e *saEntry, sa *kernelops.SA, active kernelops.OffloadMode, now time.Time) {
	e.setID(sa.ID)
	var keys strings.Builder // one allocation, never aliasing the caller's keys
	keys.Grow(len(sa.Encryption.Key) + len(sa.Integrity.Key))
	keys.Write(sa.Encryption.Key)
	keys.Write(sa.Integrity.Key)
	e.keys = keys.String()
	e.encLen = uint8(len(sa.Encryption.Key)) // at most 36: the front end checked it against the cipher
	e.reqID, e.ifID, e.window = sa.ReqID, sa.IfID, sa.ReplayWindow
	e.keyBits = uint16(sa.Encryption.KeyBits)
	e.encID, e.integID = sa.Encryption.ID, sa.Integrity.ID
	e.mode, e.dir, e.esn = sa.Mode, sa.Dir, sa.ESN
	e.setEncap(sa.Encap)
	e.setSelector(sa.Selector)
	o := sa.Offload
	o.Active = active
	e.setOffload(o)
	if !sa.Mark.IsZero() {
		e.extra().mark = sa.Mark
	}
	e.state = kernelops.SAValid
	if n := (sa.ReplayWindow + 31) / 32; n > uint32(len(e.bm)) {
		e.extra().bitmap = make([]uint32, n)
	}
	b.setSATime(e, tAdd, now)
	if st := sa.Sync; st != nil {
		// Added with its sync state (validated by the front end), as
		// SetSyncState writes it: XFRM takes it with NEWSA.
		e.oseq, e.seq = st.Replay.OSeq, st.Replay.Seq
		bm := e.bitmap()
		copy(bm, st.Replay.Bitmap)
		if w := uint64(e.window); w%32 != 0 && len(bm) > 0 {
			bm[len(bm)-1] &= 1<<(w%32) - 1
		}
		e.bytes, e.packets = st.Bytes, st.Packets
		if !st.AddTime.IsZero() {
			b.setSATime(e, tAdd, st.AddTime)
		}
		b.setSATime(e, tFirstUse, st.UseTime)
	}
}

// immutable rejects an update that would change what XFRM keeps.
func immutable(old *saEntry, nu *kernelops.SA) error {
	bad := func(field string) error {
		return kernelops.Invalid("", "", "", field, "cannot change on update (delete and add the SA instead)")
	}
	switch {
	case old.mode != nu.Mode:
		return bad("Mode")
	case old.reqID != nu.ReqID:
		return bad("ReqID")
	case old.encID != nu.Encryption.ID || int(old.keyBits) != nu.Encryption.KeyBits:
		return bad("Encryption.ID")
	case old.encKey() != string(nu.Encryption.Key):
		return bad("Encryption.Key")
	case old.integID != nu.Integrity.ID:
		return bad("Integrity.ID")
	case old.integKey() != string(nu.Integrity.Key):
		return bad("Integrity.Key")
	case old.window != nu.ReplayWindow:
		return bad("ReplayWindow")
	case old.esn != nu.ESN:
		return bad("ESN")
	case old.ifID != nu.IfID:
		return bad("IfID")
	case old.dir != nu.Dir:
		return bad("Dir")
	case old.encap != (nu.Encap != nil):
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

// GetSA returns a copy of an SA with its keys and counters; the front
// end adds its lifetimes.
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
	b.copyEntry(out, e)
	return out, nil
}

// copyEntry copies e into dst, reusing dst's key, bitmap and Encap
// storage. It leaves Lifetime zero: the front end fills it.
func (b *model) copyEntry(dst *kernelops.SAEntry, e *saEntry) {
	ek, ik, bm, enc := dst.Encryption.Key, dst.Integrity.Key, dst.Counters.Replay.Bitmap, dst.Encap
	dst.SA = kernelops.SA{
		ID:           e.said(),
		Mode:         e.mode,
		ReqID:        e.reqID,
		Selector:     e.selector(),
		Encryption:   kernelops.Encryption{ID: e.encID, KeyBits: int(e.keyBits), Key: append(ek[:0], e.encKey()...)},
		Integrity:    kernelops.Integrity{ID: e.integID, Key: append(ik[:0], e.integKey()...)},
		ReplayWindow: e.window,
		ESN:          e.esn,
		IfID:         e.ifID,
		Dir:          e.dir,
	}
	if e.x != nil {
		dst.Mark, dst.Offload = e.x.mark, e.x.offload
	}
	if v, ok := e.encapOf(); ok {
		if enc == nil {
			enc = new(kernelops.Encap)
		}
		*enc = v
		dst.Encap = enc
	}
	dst.State = e.state
	dst.Counters = kernelops.Counters{
		Bytes: e.bytes, Packets: e.packets,
		AddTime: b.saTime(e, tAdd), FirstUse: b.saTime(e, tFirstUse), LastUsed: b.saTime(e, tLastUsed),
		ReplayDrops: e.drops, // no cryptography, no integrity errors
		Replay:      kernelops.ReplayState{OSeq: e.oseq, Seq: e.seq, Window: e.window, Bitmap: append(bm[:0], e.bitmap()...)},
	}
}

// dumpBatch is how many entries a dump copies per lock hold.
const dumpBatch = 256

// SAs streams every SA, larval ones included, with the snapshot rules of
// dumpSnapshot; the yielded entry is reused.
func (b *model) SAs(ctx context.Context) iter.Seq2[*kernelops.SAEntry, error] {
	return dumpSnapshot(b, ctx, b.sad.all, func(e *saEntry) bool { return e.dead }, b.copyEntry)
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
				buf = append(buf, kernelops.Usage{ID: e.said(), ReqID: e.reqID, Bytes: e.bytes,
					Packets: e.packets, AddTime: b.saTime(e, tAdd), LastUsed: b.saTime(e, tLastUsed)})
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
		if b.opts.Owns(e.reqID) {
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
