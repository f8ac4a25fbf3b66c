package ike

import (
	"cmp"
	"context"
	"fmt"
	"iter"
	"net/netip"
	"slices"
	"sync"
	"time"

	"github.com/keyplane/keyplane/ike/ikecrypto"
	"github.com/keyplane/keyplane/kernelops"
)

// IKESAInfo is an IKE SA as `keyplane ike list` shows it.
type IKESAInfo struct {
	// ID is the IKE SA's unique ID (ids.go).
	ID        uint32   `json:"ike_id"`
	Name      string   `json:"name"`
	State     IKEState `json:"state"`
	Role      string   `json:"role"`
	SPIi      string   `json:"spi_i"`
	SPIr      string   `json:"spi_r"`
	Local     string   `json:"local"`
	Remote    string   `json:"remote"`
	Suite     string   `json:"suite,omitempty"`
	NATLocal  bool     `json:"nat_local"`
	NATRemote bool     `json:"nat_remote"`
	// Established is when the SA was established, as the engine's clock at its start
	// plus the monotonic time since (stamp.go): a later step of the wall
	// clock shifts it by the step.
	Established time.Time   `json:"established,omitzero"`
	Children    []ChildInfo `json:"children"`
}

// ChildInfo is a child SA with the dataplane's counters.
type ChildInfo struct {
	// ID is the CHILD SA's unique ID, IKEID its IKE SA's (ids.go).
	ID          uint32     `json:"child_id"`
	Name        string     `json:"name"`
	IKE         string     `json:"ike"`
	IKEID       uint32     `json:"ike_id"`
	State       ChildState `json:"state"`
	Mode        string     `json:"mode"`
	ReqID       uint32     `json:"reqid"`
	SPIIn       string     `json:"spi_in"`
	SPIOut      string     `json:"spi_out"`
	Suite       string     `json:"suite"`
	Encap       bool       `json:"encap"`
	Offload     string     `json:"offload"` // hardware offload installed: no, crypto, packet
	LocalTS     string     `json:"local_ts"`
	RemoteTS    string     `json:"remote_ts"`
	Local       string     `json:"local"`
	Remote      string     `json:"remote"`
	BytesIn     uint64     `json:"bytes_in"`
	PacketsIn   uint64     `json:"packets_in"`
	BytesOut    uint64     `json:"bytes_out"`
	PacketsOut  uint64     `json:"packets_out"`
	RekeyNeeded bool       `json:"rekey_needed"`
	Established time.Time  `json:"established,omitzero"` // as IKESAInfo's
	CounterErr  string     `json:"counter_error,omitempty"`
	// CountersOmitted: the listing did not read the dataplane (a listing
	// of changes without ChangeOptions.Counters), so the bytes and
	// packets are unknown, not zero.
	CountersOmitted bool `json:"counters_omitted,omitempty"`
}

// IKESAs lists the IKE SAs with their children, oldest first (all of
// ListIKESAs, collected).
func (e *Engine) IKESAs(ctx context.Context) ([]IKESAInfo, error) {
	var out []IKESAInfo
	for info, err := range e.ListIKESAs(ctx, ListOptions{}) {
		if err != nil {
			return nil, err
		}
		out = append(out, info)
	}
	if out == nil {
		out = []IKESAInfo{}
	}
	return out, nil
}

// ListOptions select a page of a listing: IKE SAs are listed in the
// order of their IDs, which is the order they were made in (ids.go).
type ListOptions struct {
	// After lists only the IKE SAs whose ID is larger (0: from the first).
	After uint32
	// Limit lists at most this many IKE SAs (0: all).
	Limit int
}

// A call on the loop for a listing copies at most listChunk IKE SAs and
// stops after listBudget: the loop is never held long, and handshakes get
// through between the calls, while a listing of 100,000 SAs needs few
// calls (each waits its turn behind the datagrams queued for the loop).
const (
	listChunk  = 4096
	listBudget = time.Millisecond
)

// listHold, when set (tests), is told how long each call of a listing
// held the loop.
var listHold func(time.Duration)

// ListIKESAs streams the IKE SAs with their children, oldest first. The
// loop only copies fields (no formatting, no dataplane call), a chunk of
// SAs per call: the first call takes the SAs' IDs, each further one
// copies the next SAs still kept (at most listChunk, for at most
// listBudget), so an SA deleted meanwhile is
// left out and one made meanwhile is not listed. The children's counters
// come from one bulk usage read of the dataplane, made outside the loop;
// the text of each entry is made outside the loop as it is yielded, so
// the listing holds a chunk of entries at a time, not all of them.
func (e *Engine) ListIKESAs(ctx context.Context, opts ListOptions) iter.Seq2[IKESAInfo, error] {
	return ikeInfos(ctx, func(ctx context.Context, each snapFunc) error { return e.walkSAs(ctx, opts, true, each) })
}

// snapFunc takes one copied IKE SA of a walk; false stops the walk.
type snapFunc = func(*saSnap, *usageView) bool

// ikeInfos streams the IKE SAs a walk (walkSAs, walkRefs) copies, with
// their children; childInfos streams their children. The text of each
// entry is made as it is yielded, outside the loop.
func ikeInfos(ctx context.Context, walk func(context.Context, snapFunc) error) iter.Seq2[IKESAInfo, error] {
	return func(yield func(IKESAInfo, error) bool) {
		tc := newTextCache()
		err := walk(ctx, func(s *saSnap, u *usageView) bool {
			return yield(s.info(u, &tc), nil)
		})
		if err != nil {
			yield(IKESAInfo{}, err)
		}
	}
}

func childInfos(ctx context.Context, walk func(context.Context, snapFunc) error) iter.Seq2[ChildInfo, error] {
	return func(yield func(ChildInfo, error) bool) {
		tc := newTextCache()
		err := walk(ctx, func(s *saSnap, u *usageView) bool {
			for i := range s.children {
				if !yield(s.children[i].info(s.name, s.id, u, &tc), nil) {
					return false
				}
			}
			return true
		})
		if err != nil {
			yield(ChildInfo{}, err)
		}
	}
}

// ListChildren streams the children of the IKE SAs opts selects, in the
// order of ListIKESAs.
func (e *Engine) ListChildren(ctx context.Context, opts ListOptions) iter.Seq2[ChildInfo, error] {
	return childInfos(ctx, func(ctx context.Context, each snapFunc) error { return e.walkSAs(ctx, opts, true, each) })
}

// saRef is an IKE SA a listing is to copy.
type saRef struct {
	id uint32
	sa *ikeSA
}

// walkSAs hands each of the IKE SAs opts selects, copied on the loop a
// chunk at a time, to each, until each returns false; withUsage reads
// the dataplane's counters for them first.
func (e *Engine) walkSAs(ctx context.Context, opts ListOptions, withUsage bool, each func(*saSnap, *usageView) bool) error {
	var refs []saRef
	var u usageView
	if err := e.listCall(ctx, func() {
		refs = make([]saRef, 0, len(e.sas))
		for _, sa := range e.sas {
			if sa.id > opts.After {
				refs = append(refs, saRef{sa.id, sa})
			}
		}
		u.readAt, u.lastChild = e.clk.Now(), e.ids.child
	}); err != nil {
		return err
	}
	slices.SortFunc(refs, func(a, b saRef) int { return cmp.Compare(a.id, b.id) })
	if opts.Limit > 0 && len(refs) > opts.Limit {
		refs = refs[:opts.Limit]
	}
	return e.walkRefs(ctx, refs, u, withUsage, each)
}

// walkRefs hands each of the IKE SAs of refs still kept, copied on the
// loop a chunk at a time, to each (walkSAs); u has the time and last
// child ID of the call that took refs. Without withUsage the children
// carry no counters (CountersOmitted).
func (e *Engine) walkRefs(ctx context.Context, refs []saRef, u usageView, withUsage bool, each func(*saSnap, *usageView) bool) error {
	u.omit = !withUsage
	if withUsage && len(refs) > 0 {
		u.m = usageMaps.Get().(map[usageKey]counters)
		defer func() {
			clear(u.m)
			usageMaps.Put(u.m)
		}()
		u.err = e.readUsage(ctx, u.m)
	}
	// The chunk's copies, and its children's, in buffers reused from
	// chunk to chunk and from listing to listing: the loop allocates
	// nothing for them once they are sized.
	bufs := snapBufs.Get().(*snapBuf)
	defer func() {
		// Copies left in them would keep what they point to alive.
		clear(bufs.snap[:cap(bufs.snap)])
		clear(bufs.kids[:cap(bufs.kids)])
		snapBufs.Put(bufs)
	}()
	snap, kids := bufs.snap[:0], bufs.kids[:0]
	defer func() { bufs.snap, bufs.kids = snap, kids }()
	for len(refs) > 0 {
		chunk := refs[:min(len(refs), listChunk)]
		done := 0
		snap, kids = snap[:0], kids[:0]
		if err := e.listCall(ctx, func() {
			t0 := time.Now()
			for i, r := range chunk {
				if i%64 == 63 && time.Since(t0) > listBudget {
					break
				}
				done++
				if e.sas[r.sa.localSPI()] == r.sa {
					var s saSnap
					kids = r.sa.snap(&s, kids)
					snap = append(snap, s)
				}
			}
		}); err != nil {
			return err
		}
		refs = refs[done:]
		// The children's slices are set once kids has stopped growing.
		k := 0
		for i := range snap {
			n := snap[i].nkids
			snap[i].children = kids[k : k+n : k+n]
			k += n
		}
		for i := range snap {
			if !each(&snap[i], &u) {
				return nil
			}
		}
	}
	return nil
}

// snapBuf holds a listing's copies of a chunk of SAs and their children.
type snapBuf struct {
	snap []saSnap
	kids []childSnap
}

// snapBufs keeps the buffers of finished listings for the next ones.
var snapBufs = sync.Pool{New: func() any { return &snapBuf{} }}

// listCall runs f on the loop for a listing (timed for listHold).
func (e *Engine) listCall(ctx context.Context, f func()) error {
	if listHold == nil {
		return e.call(ctx, f)
	}
	return e.call(ctx, func() {
		t0 := time.Now()
		f()
		listHold(time.Since(t0))
	})
}

// usageView is the counters of one bulk usage read, for a listing.
type usageView struct {
	m   map[usageKey]counters
	err error
	// omit: no counters were read (a listing of changes not asking for
	// them, StateCounts).
	omit bool
	// The read began after readAt and after child lastChild was made: a
	// child installed later may be missing from it without being gone
	// from the dataplane.
	readAt    time.Time
	lastChild uint32
}

// counters are an SA's bytes and packets.
type counters struct{ bytes, packets uint64 }

// textCache keeps the text of the suites a listing has printed: a few
// suites serve many thousands of SAs.
type textCache struct {
	ike   map[ikecrypto.IKESuite]string
	child map[ikecrypto.ChildSuite]string
	// buf is where an entry's text is put together (listtext.go).
	buf []byte
}

func newTextCache() textCache {
	return textCache{ike: map[ikecrypto.IKESuite]string{}, child: map[ikecrypto.ChildSuite]string{}}
}

func (tc *textCache) ikeSuite(s ikecrypto.IKESuite) string {
	t, ok := tc.ike[s]
	if !ok {
		t = s.String()
		tc.ike[s] = t
	}
	return t
}

func (tc *textCache) childSuite(s ikecrypto.ChildSuite) string {
	t, ok := tc.child[s]
	if !ok {
		t = childSuiteText(s)
		tc.child[s] = t
	}
	return t
}

// hexSPI prints an SPI as digits hex digits, zero-padded (%0*x without
// fmt's cost per call).
func hexSPI(v uint64, digits int) string {
	var b [16]byte
	return string(appendHex(b[:0], v, digits))
}

// saSnap is what the loop copies of an IKE SA for a listing.
type saSnap struct {
	id                  uint32
	name                string
	state               IKEState
	initiator           bool
	spii, spir          uint64
	local, remote       netip.AddrPort
	natLocal, natRemote bool
	keyed               bool
	suite               ikecrypto.IKESuite
	estAt, created      time.Time
	nkids               int
	children            []childSnap
}

// childSnap is what the loop copies of a child. The traffic selector
// slices are shared: the engine replaces them, never edits them.
type childSnap struct {
	id                    uint32
	name                  string
	state                 childState
	mode                  kernelops.Mode
	reqid, inSPI, outSPI  uint32
	suite                 ikecrypto.ChildSuite
	encap, rekey          bool
	localTS, remoteTS     []tsRange
	localAddr, remoteAddr netip.Addr
	estAt                 time.Time
	in, out               kernelops.SAID
	offIn, offOut         kernelops.OffloadMode
}

// snap copies sa into s for a listing, its children appended to kids
// (s.nkids of them). Runs on the loop.
func (sa *ikeSA) snap(s *saSnap, kids []childSnap) []childSnap {
	*s = saSnap{id: sa.id, name: sa.name(), state: sa.state.public(), initiator: sa.initiator, spii: sa.spii, spir: sa.spir,
		local: sa.local, remote: sa.remote, natLocal: sa.natLocal, natRemote: sa.natRemote,
		keyed: sa.keys != nil, estAt: sa.e.timeOf(sa.estAt), created: sa.e.timeOf(sa.created), nkids: len(sa.children)}
	if s.keyed {
		s.suite = sa.suite
	}
	for _, ch := range sa.children {
		kids = append(kids, childSnap{id: ch.id, name: ch.cfg.Name, state: ch.state, mode: ch.mode, reqid: ch.reqid,
			inSPI: ch.inSPI, outSPI: ch.outSPI, suite: ch.suite, encap: ch.encap != nil, rekey: ch.rekey,
			localTS: ch.localTS, remoteTS: ch.remoteTS, localAddr: ch.localAddr, remoteAddr: ch.remoteAddr,
			estAt: sa.e.timeOf(ch.estAt), in: ch.inID(), out: ch.outID(), offIn: ch.offIn, offOut: ch.offOut})
	}
	return kids
}

// sortedSAs is the IKE SAs oldest first. Runs on the loop.
func (e *Engine) sortedSAs() []*ikeSA { return e.sortedSAsWhere(nil) }

// sortedSAsWhere is sortedSAs of the SAs keep says to keep (nil: all).
// Filtering first sorts only what is kept: the same SAs in the same
// order, without sorting all of them for a few (an IKE_AUTH's
// INITIAL_CONTACT sorted every SA: quadratic over a bring-up).
func (e *Engine) sortedSAsWhere(keep func(*ikeSA) bool) []*ikeSA {
	var out []*ikeSA
	if keep == nil {
		out = make([]*ikeSA, 0, len(e.sas))
	}
	for _, sa := range e.sas {
		if keep == nil || keep(sa) {
			out = append(out, sa)
		}
	}
	slices.SortStableFunc(out, func(a, b *ikeSA) int { return cmp.Compare(a.created, b.created) })
	return out
}

// readUsage reads the counters of the dataplane's SAs in one bulk pass
// (the dataplane's UsageReader, else its SA dump) into m. Runs outside
// the loop.
func (e *Engine) readUsage(ctx context.Context, m map[usageKey]counters) error {
	var read iter.Seq2[kernelops.Usage, error]
	if e.usage != nil {
		read = e.usage.Usage(ctx)
	} else {
		read = kernelops.ReadUsage(ctx, e.b)
	}
	for u, err := range read {
		if err != nil {
			return err
		}
		m[keyOfSA(u.ID)] = counters{u.Bytes, u.Packets}
	}
	return nil
}

// usageKey finds an SA's counters: what the dataplane keys SAs by
// (XFRM: destination, SPI, protocol and mark; not the source), as plain
// bytes, which hash and compare several times faster than a SAID (a
// listing of 100,000 children fills and reads 200,000 of them).
type usageKey struct {
	dst   [16]byte
	spi   uint32
	mark  kernelops.Mark
	proto kernelops.Proto
	v4    bool
}

func keyOfSA(id kernelops.SAID) usageKey {
	return usageKey{dst: id.Dst.As16(), spi: id.SPI, mark: id.Mark, proto: id.Proto, v4: id.Dst.Is4()}
}

// usageMaps keeps the maps of finished listings: a listing every 0.2 s
// of 100,000 children reuses one map instead of making (and collecting)
// a table of 200,000 entries each time.
var usageMaps = sync.Pool{New: func() any { return map[usageKey]counters{} }}

func (s *saSnap) info(u *usageView, tc *textCache) IKESAInfo {
	role := "responder"
	if s.initiator {
		role = "initiator"
	}
	b := appendHex(tc.buf[:0], s.spii, 16)
	b = appendHex(b, s.spir, 16)
	b = appendAddrPort(b, s.local)
	o := len(b)
	b = appendAddrPort(b, s.remote)
	tc.buf = b
	t := string(b)
	info := IKESAInfo{ID: s.id, Name: s.name, State: s.state, Role: role,
		SPIi: t[:16], SPIr: t[16:32], Local: t[32:o], Remote: t[o:], NATLocal: s.natLocal, NATRemote: s.natRemote,
		Established: s.estAt, Children: make([]ChildInfo, 0, len(s.children))}
	if s.keyed {
		info.Suite = tc.ikeSuite(s.suite)
	}
	for i := range s.children {
		info.Children = append(info.Children, s.children[i].info(s.name, s.id, u, tc))
	}
	return info
}

func (ch *childSnap) info(ike string, ikeID uint32, u *usageView, tc *textCache) ChildInfo {
	// The text fields are slices of one string (listtext.go).
	b := appendHex(tc.buf[:0], uint64(ch.inSPI), 8)
	b = appendHex(b, uint64(ch.outSPI), 8)
	b = appendRanges(b, ch.localTS)
	lts := len(b)
	b = appendRanges(b, ch.remoteTS)
	rts := len(b)
	b = appendAddr(b, ch.localAddr)
	la := len(b)
	b = appendAddr(b, ch.remoteAddr)
	tc.buf = b
	t := string(b)
	ci := ChildInfo{ID: ch.id, Name: ch.name, IKE: ike, IKEID: ikeID, State: ch.state.public(), Mode: ch.mode.String(), ReqID: ch.reqid,
		SPIIn: t[:8], SPIOut: t[8:16], Suite: tc.childSuite(ch.suite),
		Encap: ch.encap, Offload: offloadText(ch.offIn, ch.offOut), LocalTS: t[16:lts], RemoteTS: t[lts:rts],
		Local: t[rts:la], Remote: t[la:], RekeyNeeded: ch.rekey, Established: ch.estAt}
	if ch.state != childInstalled {
		return ci
	}
	if u.omit {
		ci.CountersOmitted = true
		return ci
	}
	if u.err != nil {
		ci.CounterErr = u.err.Error()
		return ci
	}
	// Installed after the read began: not counted yet, not gone.
	fresh := ch.id > u.lastChild || ch.estAt.After(u.readAt)
	if c, ok := u.m[keyOfSA(ch.in)]; ok {
		ci.BytesIn, ci.PacketsIn = c.bytes, c.packets
	} else if !fresh {
		ci.CounterErr = fmt.Sprintf("SA %s: %v", ch.in, kernelops.ErrNotFound)
	}
	if c, ok := u.m[keyOfSA(ch.out)]; ok {
		ci.BytesOut, ci.PacketsOut = c.bytes, c.packets
	} else if !fresh {
		ci.CounterErr = fmt.Sprintf("SA %s: %v", ch.out, kernelops.ErrNotFound)
	}
	return ci
}

// StateCounts counts the IKE SAs and their children by state, as a
// listing sees them but without their text or counters (no dataplane
// read): what a metrics scrape needs of 100,000 SAs.
func (e *Engine) StateCounts(ctx context.Context) (ikes map[IKEState]int, children map[ChildState]int, err error) {
	ikes, children = map[IKEState]int{}, map[ChildState]int{}
	err = e.walkSAs(ctx, ListOptions{}, false, func(s *saSnap, _ *usageView) bool {
		ikes[s.state]++
		for i := range s.children {
			children[s.children[i].state.public()]++
		}
		return true
	})
	if err != nil {
		return nil, nil, err
	}
	return ikes, children, nil
}

// Children lists the children of every IKE SA (all of ListChildren,
// collected).
func (e *Engine) Children(ctx context.Context) ([]ChildInfo, error) {
	out := []ChildInfo{}
	for ch, err := range e.ListChildren(ctx, ListOptions{}) {
		if err != nil {
			return nil, err
		}
		out = append(out, ch)
	}
	return out, nil
}

// Handshakes returns the measured handshake times (IKE_SA_INIT sent to
// first child installed) of the IKE SAs this engine initiated.
func (e *Engine) Handshakes(ctx context.Context) ([]time.Duration, error) {
	var out []time.Duration
	err := e.call(ctx, func() { out = append(out, e.handshakes...) })
	return out, err
}

// Backend returns the dataplane the engine drives.
func (e *Engine) Backend() kernelops.Backend { return e.b }
