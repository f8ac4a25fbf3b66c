package ike

import (
	"cmp"
	"hash/maphash"
	"slices"
	"unicode"
	"unicode/utf8"

	"github.com/keyplane/keyplane/ike/config"
	"github.com/keyplane/keyplane/ike/message"
)

// The IKE SAs are kept by our SPI (Engine.sas) and indexed by connection
// name (Engine.byConn), so that initiating, terminating or reloading a
// connection looks at its own SAs, not at every SA: with 100,000 tunnels
// a scan per initiate made bringing them up quadratic. They are also
// indexed by the two identities they join (Engine.byPeer: the peer's
// authenticated identity, then our own as the connection has it), so
// that INITIAL_CONTACT and unique, checked on every IKE_AUTH, look at
// the SAs between the same two identities only: with every tunnel going
// to one peer, each from its own local identity, a look at all of that
// peer's SAs made a bring-up quadratic. Every change of Engine.sas, of
// an SA's connection or of its peer identity goes through these.
// Loop-owned.

// addSA adds sa under our SPI spi.
func (e *Engine) addSA(spi uint64, sa *ikeSA) {
	e.sas[spi] = sa
	e.index(sa)
	e.indexPeer(sa)
	e.listedSA(sa) // changes.go
}

// removeSA removes sa (kept under its local SPI).
func (e *Engine) removeSA(sa *ikeSA) {
	if e.sas[sa.localSPI()] == sa {
		delete(e.sas, sa.localSPI())
		e.unlistedSA(sa) // changes.go
	}
	e.unindex(sa)
	e.unindexPeer(sa)
	delete(e.moveWait, sa) // links.go
}

// setConn moves sa to connection c (a responder's choice at IKE_AUTH,
// or a reload's new settings: our identity may change with them).
func (e *Engine) setConn(sa *ikeSA, c *config.Connection) {
	kept := e.sas[sa.localSPI()] == sa
	if kept {
		e.unindex(sa)
		e.unindexPeer(sa)
	}
	sa.conn = c
	if kept {
		e.index(sa)
		e.indexPeer(sa)
		e.changed(sa) // changes.go: its name may change
	}
}

// setPeerID records id as the authenticated identity of sa's peer.
func (e *Engine) setPeerID(sa *ikeSA, id *message.ID) {
	kept := e.sas[sa.localSPI()] == sa
	if kept {
		e.unindexPeer(sa)
	}
	sa.rec.peerID = id
	if kept {
		e.indexPeer(sa)
	}
}

// byPeer is keyed by partiesHash: a hash of the peer's identity type
// and value, case-folded for the types config.Identity matches without
// regard to case (so that every identity a non-wildcard pattern matches
// is under the pattern's own hash: initialContact looks there), and of
// our identity as the connection has it, byte for byte (INITIAL_CONTACT
// and unique compare it so). The key is a hash, not the identities
// themselves: a map slot of 24 octets and no copy of two identity strings
// per SA (≈100 octets per tunnel at 100,000). SAs whose hashes collide
// share a set, so every reader compares the identities itself; all of
// them do anyway (sameParties, initialContact's other).
var partiesSeed = maphash.MakeSeed()

// partiesHash is byPeer's key for the peer identity (t, v) and our
// identity local.
func partiesHash(t message.IDType, v []byte, local config.Identity) uint64 {
	var h maphash.Hash
	h.SetSeed(partiesSeed)
	h.WriteByte(byte(t))
	if t == message.IDFQDN || t == message.IDRFC822Addr {
		var a [64]byte
		buf := a[:0]
		for _, r := range string(v) { // an invalid byte is U+FFFD, as strings.EqualFold reads it
			if len(buf) > len(a)-utf8.UTFMax {
				h.Write(buf)
				buf = buf[:0]
			}
			buf = utf8.AppendRune(buf, foldRune(r))
		}
		h.Write(buf)
	} else {
		h.Write(v)
	}
	h.WriteByte(0)
	h.WriteByte(byte(local.Type))
	h.Write(local.Data)
	return h.Sum64()
}

// foldRune is the smallest rune of r's Unicode simple-folding orbit:
// equal for two runes exactly when strings.EqualFold says they are.
func foldRune(r rune) rune {
	if r < utf8.RuneSelf {
		if 'a' <= r && r <= 'z' { // an ASCII letter's orbit's smallest rune is its upper case
			r -= 'a' - 'A'
		}
		return r
	}
	m := r
	for f := unicode.SimpleFold(r); f != r; f = unicode.SimpleFold(f) {
		m = min(m, f)
	}
	return m
}

// pairedSAs is the SAs under one key of byPeer or byConn: often one (a
// connection per tunnel), so without a map of its own until there are
// more.
type pairedSAs struct {
	one  *ikeSA
	more map[*ikeSA]struct{}
}

func (s pairedSAs) add(sa *ikeSA) pairedSAs {
	switch {
	case s.more != nil:
		s.more[sa] = struct{}{}
	case s.one == nil || s.one == sa:
		s.one = sa
	default:
		s.more = map[*ikeSA]struct{}{s.one: {}, sa: {}}
		s.one = nil
	}
	return s
}

// remove removes sa; ok is false when s is then empty.
func (s pairedSAs) remove(sa *ikeSA) (_ pairedSAs, ok bool) {
	if s.one == sa {
		s.one = nil
	}
	delete(s.more, sa)
	if len(s.more) == 1 {
		for o := range s.more {
			s.one = o
		}
	}
	if len(s.more) <= 1 {
		s.more = nil
	}
	return s, s.one != nil || s.more != nil
}

func (s pairedSAs) all(yield func(*ikeSA) bool) {
	if s.one != nil && !yield(s.one) {
		return
	}
	for sa := range s.more {
		if !yield(sa) {
			return
		}
	}
}

func (s pairedSAs) len() int {
	if s.one != nil {
		return 1
	}
	return len(s.more)
}

// partiesSAs is the SAs between the two identities we present as local
// and the peer authenticated as (t, v), oldest first, of those keep
// keeps. keep must compare the identities: the hash's set may hold SAs
// of others.
func (e *Engine) partiesSAs(t message.IDType, v []byte, local config.Identity, keep func(*ikeSA) bool) []*ikeSA {
	var out []*ikeSA
	for sa := range e.byPeer[partiesHash(t, v, local)].all {
		if keep(sa) {
			out = append(out, sa)
		}
	}
	slices.SortStableFunc(out, func(a, b *ikeSA) int { return cmp.Compare(a.created, b.created) })
	return out
}

// partiesOf is where byPeer holds sa, if it does (an SA with a
// connection and an authenticated peer).
func partiesOf(sa *ikeSA) (uint64, bool) {
	id := sa.rec.peerID
	if id == nil || sa.conn == nil {
		return 0, false
	}
	return partiesHash(id.IDType, id.Data, sa.conn.LocalID), true
}

func (e *Engine) indexPeer(sa *ikeSA) {
	if k, ok := partiesOf(sa); ok {
		e.byPeer[k] = e.byPeer[k].add(sa)
	}
}

func (e *Engine) unindexPeer(sa *ikeSA) {
	if k, ok := partiesOf(sa); ok {
		if s, ok := e.byPeer[k].remove(sa); ok {
			e.byPeer[k] = s
		} else {
			delete(e.byPeer, k)
		}
	}
}

func (e *Engine) index(sa *ikeSA) {
	if sa.conn != nil {
		e.byConn[sa.conn.Name] = e.byConn[sa.conn.Name].add(sa)
	}
}

func (e *Engine) unindex(sa *ikeSA) {
	if sa.conn == nil {
		return
	}
	if s, ok := e.byConn[sa.conn.Name].remove(sa); ok {
		e.byConn[sa.conn.Name] = s
	} else {
		delete(e.byConn, sa.conn.Name)
	}
}

// indexErr reports where byConn or byPeer and sas disagree ("" when
// they agree), for tests.
func (e *Engine) indexErr() string {
	peers := 0
	for k, s := range e.byPeer {
		if s.len() == 0 || (s.more != nil && (s.one != nil || len(s.more) < 2)) {
			return "the peer index holds an empty or malformed set"
		}
		for sa := range s.all {
			peers++
			if sk, ok := partiesOf(sa); !ok || sk != k {
				return "an SA is indexed under identities it does not join"
			}
			if e.sas[sa.localSPI()] != sa {
				return "an SA is indexed by its peer but not kept"
			}
		}
	}
	withPeer := 0
	for _, sa := range e.sas {
		if _, ok := partiesOf(sa); ok {
			withPeer++
		}
	}
	if peers != withPeer {
		return "the peer index holds a different number of SAs than are kept with a peer identity"
	}
	n := 0
	for name, m := range e.byConn {
		if m.len() == 0 || (m.more != nil && (m.one != nil || len(m.more) < 2)) {
			return "the connection index holds an empty or malformed set"
		}
		for sa := range m.all {
			n++
			if sa.conn == nil || sa.conn.Name != name {
				return "an SA indexed under " + name + " is of another connection"
			}
			if e.sas[sa.localSPI()] != sa {
				return "an SA of " + name + " is indexed but not kept"
			}
		}
	}
	kept := 0
	for _, sa := range e.sas {
		if sa.conn != nil {
			kept++
		}
	}
	if n != kept {
		return "the index holds a different number of SAs than are kept"
	}
	if s := e.cryptoIndexErr(); s != "" { // workers.go
		return s
	}
	return e.reqidIndexErr() // reqidindex.go
}
