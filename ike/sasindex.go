package ike

import (
	"slices"
	"strings"
	"unicode"

	"github.com/keyplane/keyplane/ike/config"
	"github.com/keyplane/keyplane/ike/message"
)

// The IKE SAs are kept by our SPI (Engine.sas) and indexed by connection
// name (Engine.byConn), so that initiating, terminating or reloading a
// connection looks at its own SAs, not at every SA: with 100,000 tunnels
// a scan per initiate made bringing them up quadratic. They are also
// indexed by the peer's authenticated identity (Engine.byPeer), so that
// INITIAL_CONTACT and unique, checked on every IKE_AUTH, look at that
// peer's SAs only. Every change of Engine.sas, of an SA's connection or
// of its peer identity goes through these. Loop-owned.

// addSA adds sa under our SPI spi.
func (e *Engine) addSA(spi uint64, sa *ikeSA) {
	e.sas[spi] = sa
	e.index(sa)
	e.indexPeer(sa)
}

// removeSA removes sa (kept under its local SPI).
func (e *Engine) removeSA(sa *ikeSA) {
	if e.sas[sa.localSPI()] == sa {
		delete(e.sas, sa.localSPI())
	}
	e.unindex(sa)
	e.unindexPeer(sa)
}

// setConn moves sa to connection c (a responder's choice at IKE_AUTH).
func (e *Engine) setConn(sa *ikeSA, c *config.Connection) {
	e.unindex(sa)
	sa.conn = c
	e.index(sa)
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

// peerKey is what byPeer is keyed by: an identity's type and its value,
// case-folded for the types config.Identity matches without regard to
// case, so that every identity a non-wildcard pattern matches is under
// the pattern's own key (initialContact looks there).
type peerKey struct {
	t message.IDType
	v string
}

func keyOf(t message.IDType, data []byte) peerKey {
	if t == message.IDFQDN || t == message.IDRFC822Addr {
		return peerKey{t, foldKey(string(data))}
	}
	return peerKey{t, string(data)}
}

// foldKey maps s to a string that is equal for two strings exactly when
// strings.EqualFold says they are: each rune (U+FFFD for a byte that is
// not UTF-8, as EqualFold reads it) becomes the smallest rune of its
// Unicode simple-folding orbit.
func foldKey(s string) string {
	ascii := true
	for i := 0; i < len(s); i++ {
		if s[i] >= 0x80 || ('a' <= s[i] && s[i] <= 'z') {
			ascii = false
			break
		}
	}
	if ascii { // ASCII without lower-case letters (an orbit's smallest rune is its upper-case letter): its own key
		return s
	}
	var b strings.Builder
	b.Grow(len(s))
	for _, r := range s {
		m := r
		for f := unicode.SimpleFold(r); f != r; f = unicode.SimpleFold(f) {
			m = min(m, f)
		}
		b.WriteRune(m)
	}
	return b.String()
}

// peerSAs is the SAs whose peer authenticated with an identity under
// key k, oldest first, of those keep keeps.
func (e *Engine) peerSAs(k peerKey, keep func(*ikeSA) bool) []*ikeSA {
	var out []*ikeSA
	for sa := range e.byPeer[k] {
		if keep(sa) {
			out = append(out, sa)
		}
	}
	slices.SortStableFunc(out, func(a, b *ikeSA) int { return a.created.Compare(b.created) })
	return out
}

func (e *Engine) indexPeer(sa *ikeSA) {
	if id := sa.rec.peerID; id != nil {
		k := keyOf(id.IDType, id.Data)
		m := e.byPeer[k]
		if m == nil {
			m = map[*ikeSA]struct{}{}
			e.byPeer[k] = m
		}
		m[sa] = struct{}{}
	}
}

func (e *Engine) unindexPeer(sa *ikeSA) {
	if id := sa.rec.peerID; id != nil {
		k := keyOf(id.IDType, id.Data)
		if m := e.byPeer[k]; m != nil {
			delete(m, sa)
			if len(m) == 0 {
				delete(e.byPeer, k)
			}
		}
	}
}

func (e *Engine) index(sa *ikeSA) {
	if sa.conn == nil {
		return
	}
	m := e.byConn[sa.conn.Name]
	if m == nil {
		m = map[*ikeSA]struct{}{}
		e.byConn[sa.conn.Name] = m
	}
	m[sa] = struct{}{}
}

func (e *Engine) unindex(sa *ikeSA) {
	if sa.conn == nil {
		return
	}
	if m := e.byConn[sa.conn.Name]; m != nil {
		delete(m, sa)
		if len(m) == 0 {
			delete(e.byConn, sa.conn.Name)
		}
	}
}

// indexErr reports where byConn or byPeer and sas disagree ("" when
// they agree), for tests.
func (e *Engine) indexErr() string {
	peers := 0
	for k, m := range e.byPeer {
		for sa := range m {
			peers++
			if id := sa.rec.peerID; id == nil || keyOf(id.IDType, id.Data) != k {
				return "an SA is indexed under a peer identity it does not have"
			}
			if e.sas[sa.localSPI()] != sa {
				return "an SA is indexed by its peer but not kept"
			}
		}
	}
	withPeer := 0
	for _, sa := range e.sas {
		if sa.rec.peerID != nil {
			withPeer++
		}
	}
	if peers != withPeer {
		return "the peer index holds a different number of SAs than are kept with a peer identity"
	}
	n := 0
	for name, m := range e.byConn {
		for sa := range m {
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
