package ike

import (
	"encoding/binary"
	"fmt"
	"log/slog"
	"slices"

	"github.com/keyplane/keyplane/ike/config"
	"github.com/keyplane/keyplane/internal/chainmap"
	"github.com/keyplane/keyplane/kernelops"
)

// Reqids tie a child's SAs to its policies' templates. Tunnel-mode SAs
// carry no selector, so the dataplane's outbound lookup (template: peer,
// protocol, mode, reqid) cannot tell apart two children that share a
// reqid: each distinct child name + selector set + marks + if_ids gets
// its own (as strongSwan allocates them), unless the child has a
// configured reqid, which is used as is. A reqid is counted while a trap
// or an installed child uses it and goes back with its last user.
// byReqID finds an acquire's child in O(1) however many trap children
// there are. Loop-owned.

// reqidKey is what a reqid is allocated for.
type reqidKey struct {
	child           string
	sels            string // selectorsKey of the child's selector set
	markIn, markOut kernelops.Mark
	ifIDIn, ifIDOut uint32
}

// reqidKeyOf is the key of a child of configuration cfg with selector
// set sels.
func reqidKeyOf(cfg *config.Child, sels []kernelops.Selector) reqidKey {
	return reqidKey{child: cfg.Name, sels: selectorsKey(sels), markIn: cfg.MarkIn, markOut: cfg.MarkOut,
		ifIDIn: cfg.IfIDIn, ifIDOut: cfg.IfIDOut}
}

// selectorsKey is a compact, order-independent encoding of a selector
// set (100,000 trap children each keep one).
func selectorsKey(sels []kernelops.Selector) string {
	enc := make([][]byte, 0, len(sels))
	for _, s := range sels {
		b, _ := s.Src.AppendBinary(nil)
		b, _ = s.Dst.AppendBinary(b)
		b = append(b, s.Proto)
		b = binary.BigEndian.AppendUint16(b, s.SrcPort)
		b = binary.BigEndian.AppendUint16(b, s.DstPort)
		enc = append(enc, b)
	}
	slices.SortFunc(enc, func(a, b []byte) int { return slices.Compare(a, b) })
	var out []byte
	for _, b := range enc {
		out = append(out, byte(len(b)))
		out = append(out, b...)
	}
	return string(out)
}

// reqidUser is a child name and how many of its traps and installed
// CHILD SAs use a reqid.
type reqidUser struct {
	name string
	n    int
}

// reqidEntry is one reqid in use.
type reqidEntry struct {
	key   reqidKey
	keyed bool        // allocated for key (a configured reqid is not)
	r     uint32      // the reqid
	users []reqidUser // the first is the child an acquire starts
	next  *reqidEntry // the next of the same hash (byKey)
}

func (x *reqidEntry) ChainKey() reqidKey      { return x.key }
func (x *reqidEntry) ChainNext() **reqidEntry { return &x.next }

// reqidTable holds the reqids in use. Every change goes through hold
// and drop.
type reqidTable struct {
	// byKey: the entry allocated for each key (the first, if several
	// were). Under a hash of the 56-octet key (internal/chainmap): a
	// 16-octet slot per child instead of a map slot holding a copy.
	byKey   chainmap.Map[reqidKey, reqidEntry, *reqidEntry]
	byReqID map[uint32]*reqidEntry
	// next is where the search for a free reqid starts; lo..hi the
	// range it searches (the dataplane's owned range but its first
	// reqid); inRange counts the reqids in use within it. Above hi
	// (over) only when every one in it is taken.
	next, lo, hi, over uint32
	inRange            int
	// traps is the reqid of each trap child's policies.
	traps map[string]uint32
}

func newReqIDTable(first, last uint32) reqidTable {
	if first == 0 && last == 0 {
		first, last = kernelops.DefaultReqIDMin, kernelops.DefaultReqIDMax
	}
	lo, max := first+1, last
	if lo > max || lo == 0 {
		lo = max
	}
	return reqidTable{byReqID: map[uint32]*reqidEntry{}, traps: map[string]uint32{},
		next: lo, lo: lo, hi: max, over: max}
}

// reqidSource says where chooseReqID took a reqid from.
type reqidSource uint8

const (
	reqidConfigured reqidSource = iota + 1 // the child's reqid setting
	reqidKept                              // the child it replaces (a rekey)
	reqidShared                            // another user of the same key (a trap, a sibling, the old SA of a reauthentication)
	reqidReused                            // the child's own, free (provisional, or restored from an HA record)
	reqidFresh                             // a new one
)

func (s reqidSource) String() string {
	return [...]string{"?", "configured", "kept", "shared", "reused", "fresh"}[min(int(s), 5)]
}

// reqidAsk is what a child brings to its reqid choice.
type reqidAsk struct {
	configured uint32 // the child's reqid setting (0: none)
	pre        uint32 // the reqid the child has so far (0: none)
	keep       bool   // pre is the reqid of the child this one replaces
	key        reqidKey
}

// chooseReqID decides a child's reqid at installation, when its
// selectors are known: configured wins; a rekey keeps its child's while
// that child's name still holds it; then the reqid of the same key; then
// the child's own if nobody uses it; else a fresh one (0: allocate).
// byKey finds a key's reqid, users a reqid's child names (nil: free).
func chooseReqID(a reqidAsk, byKey func(reqidKey) (uint32, bool), users func(uint32) []reqidUser) (uint32, reqidSource) {
	if a.configured != 0 {
		return a.configured, reqidConfigured
	}
	if a.keep && a.pre != 0 && slices.ContainsFunc(users(a.pre), func(u reqidUser) bool { return u.name == a.key.child }) {
		return a.pre, reqidKept
	}
	if r, ok := byKey(a.key); ok {
		return r, reqidShared
	}
	if a.pre != 0 && users(a.pre) == nil {
		return a.pre, reqidReused
	}
	return 0, reqidFresh
}

// take chooses and holds the reqid of a child (or trap) named a.key.child.
func (t *reqidTable) take(a reqidAsk) (uint32, reqidSource) {
	r, src := chooseReqID(a,
		func(k reqidKey) (uint32, bool) {
			if x := t.byKey.Get(k); x != nil {
				return x.r, true
			}
			return 0, false
		},
		func(r uint32) []reqidUser {
			if ent := t.byReqID[r]; ent != nil {
				return ent.users
			}
			return nil
		})
	if src == reqidFresh {
		r = t.fresh()
	}
	t.hold(r, a.key, src == reqidFresh || src == reqidReused)
	return r, src
}

// provisional is a reqid for a child whose selectors are not settled (its
// SPI allocation), held by nobody: take usually makes it the child's.
func (t *reqidTable) provisional() uint32 { return t.fresh() }

// fresh is an unused reqid: the next free one in lo..hi, or above hi
// when all of those are in use.
func (t *reqidTable) fresh() uint32 {
	if uint64(t.inRange) < uint64(t.hi)-uint64(t.lo)+1 {
		for {
			r := t.next
			if t.next++; t.next > t.hi || t.next < t.lo {
				t.next = t.lo
			}
			if _, used := t.byReqID[r]; !used {
				return r
			}
		}
	}
	for {
		if t.over++; t.over <= t.hi {
			t.over = t.hi + 1
		}
		if _, used := t.byReqID[t.over]; !used {
			return t.over
		}
	}
}

// hold counts one more user (key.child) of r; keyed: r was allocated
// for key.
func (t *reqidTable) hold(r uint32, key reqidKey, keyed bool) {
	ent := t.byReqID[r]
	if ent == nil {
		ent = &reqidEntry{key: key, keyed: keyed, r: r}
		t.byReqID[r] = ent
		if keyed && t.byKey.Get(key) == nil {
			t.byKey.Put(ent)
		}
		if r >= t.lo && r <= t.hi {
			t.inRange++
		}
	}
	for i := range ent.users {
		if ent.users[i].name == key.child {
			ent.users[i].n++
			return
		}
	}
	ent.users = append(ent.users, reqidUser{name: key.child, n: 1})
}

// drop counts one user (name) of r less; the last one frees r.
func (t *reqidTable) drop(r uint32, name string) {
	ent := t.byReqID[r]
	if ent == nil {
		return
	}
	i := slices.IndexFunc(ent.users, func(u reqidUser) bool { return u.name == name })
	if i < 0 {
		return
	}
	if ent.users[i].n--; ent.users[i].n > 0 {
		return
	}
	ent.users = slices.Delete(ent.users, i, i+1)
	if len(ent.users) > 0 {
		return
	}
	delete(t.byReqID, r)
	if ent.keyed && t.byKey.Get(ent.key) == ent {
		t.byKey.Delete(ent.key)
	}
	if r >= t.lo && r <= t.hi {
		t.inRange--
	}
}

// childNameOf is the name of the child that reqid belongs to ("" for
// none of ours).
func (e *Engine) childNameOf(reqid uint32) string {
	if ent := e.reqids.byReqID[reqid]; ent != nil && len(ent.users) > 0 {
		return ent.users[0].name
	}
	return ""
}

// takeChildReqID gives ch, about to be installed, its reqid and holds it
// until releaseChildReqID.
func (e *Engine) takeChildReqID(ch *childSA) {
	if ch.reqidHeld {
		return
	}
	old := ch.reqid
	r, src := e.reqids.take(reqidAsk{configured: ch.cfg.ReqID, pre: ch.reqid, keep: ch.keepReqID,
		key: reqidKeyOf(ch.cfg, selectors(ch.localTS, ch.remoteTS))})
	ch.reqid, ch.reqidHeld = r, true
	if old != r && old != 0 && e.log.Enabled(e.ctx, slog.LevelDebug) {
		ch.logger().Debug("reqid chosen for the negotiated selectors", "was", reqidText(old), "from", src.String())
	}
}

// releaseChildReqID gives back what takeChildReqID held (the child keeps
// the number for its listing and down hook).
func (e *Engine) releaseChildReqID(ch *childSA) {
	if ch.reqidHeld {
		ch.reqidHeld = false
		e.reqids.drop(ch.reqid, ch.cfg.Name)
	}
}

// takeTrapReqID gives the trap policies of child cfg (selectors sels)
// their reqid, held until releaseTrapReqID.
func (e *Engine) takeTrapReqID(cfg *config.Child, sels []kernelops.Selector) uint32 {
	e.releaseTrapReqID(cfg.Name) // a trap put in again
	r, _ := e.reqids.take(reqidAsk{configured: cfg.ReqID, key: reqidKeyOf(cfg, sels)})
	e.reqids.traps[cfg.Name] = r
	return r
}

func (e *Engine) releaseTrapReqID(name string) {
	if r, ok := e.reqids.traps[name]; ok {
		delete(e.reqids.traps, name)
		e.reqids.drop(r, name)
	}
}

// reqidIndexErr reports where the reqid table disagrees with itself or
// with the traps and installed children that hold reqids ("" when it
// agrees), for tests.
func (e *Engine) reqidIndexErr() string {
	t := &e.reqids
	want := map[uint32]map[string]int{}
	add := func(r uint32, name string) {
		if want[r] == nil {
			want[r] = map[string]int{}
		}
		want[r][name]++
	}
	for name, r := range t.traps {
		add(r, name)
	}
	for _, sa := range e.sas {
		for _, ch := range sa.children {
			if ch.reqidHeld {
				add(ch.reqid, ch.cfg.Name)
			}
		}
	}
	inRange := 0
	for r, ent := range t.byReqID {
		if len(ent.users) == 0 {
			return fmt.Sprintf("reqid %#x is kept without users", r)
		}
		for _, u := range ent.users {
			if u.n <= 0 || want[r][u.name] != u.n {
				return fmt.Sprintf("reqid %#x counts %d users named %s, %d hold it", r, u.n, u.name, want[r][u.name])
			}
		}
		if len(ent.users) != len(want[r]) {
			return fmt.Sprintf("reqid %#x has %d user names, %d hold it", r, len(ent.users), len(want[r]))
		}
		if r >= t.lo && r <= t.hi {
			inRange++
		}
	}
	for r := range want {
		if t.byReqID[r] == nil {
			return fmt.Sprintf("reqid %#x is held but not indexed", r)
		}
	}
	for x := range t.byKey.All() {
		if ent := t.byReqID[x.r]; ent != x || !ent.keyed {
			return fmt.Sprintf("the key of child %s points at reqid %#x, not allocated for it", x.key.child, x.r)
		}
	}
	if inRange != t.inRange {
		return fmt.Sprintf("%d reqids in use in the range, counted %d", inRange, t.inRange)
	}
	return ""
}
