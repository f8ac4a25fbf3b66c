package ike

import (
	"bytes"
	"fmt"
	"log/slog"
	"strings"
	"testing"
	"time"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"

	"github.com/keyplane/keyplane/ike/config"
	"github.com/keyplane/keyplane/ike/message"
)

// folded is s with each rune folded by foldRune (an invalid byte read as
// U+FFFD): what partiesHash hashes of a name.
func folded(s string) string {
	var b strings.Builder
	for _, r := range s {
		b.WriteRune(foldRune(r))
	}
	return b.String()
}

// foldRune must agree with strings.EqualFold, which config.Identity uses
// to match names: the peer index relies on it to find every SA a pattern
// matches under the pattern's own hash. Names equal up to case hash
// alike; other identities' hashes differ (64 bits: a collision here
// would be a defect of the hash, not chance).
func TestFoldRune(t *testing.T) {
	local := config.Identity{Type: message.IDFQDN, Data: []byte("gw.example.org")}
	for _, tc := range []struct {
		a, b string
	}{
		{"gw.example.org", "GW.Example.ORG"},
		{"a@b.example", "A@B.EXAMPLE"},
		{"kelvin", "\u212aelvin"}, // KELVIN SIGN folds to k
		{"ſun", "SUN"},            // LONG S folds to s
		{"straße", "STRASSE"},     // not simple folding: different
		{"\xff", "\xfe"},          // both read as U+FFFD
		{"\xffa", "\uFFFDA"},      // ... and so is U+FFFD itself
		{"gw.example.org", "gw.example.or"},
		{"", ""},
		{strings.Repeat("ſa", 40), strings.Repeat("SA", 40)},       // longer than partiesHash's buffer
		{strings.Repeat("ſa", 40), strings.Repeat("SA", 40) + "x"}, // ... and different after it
	} {
		eq := strings.EqualFold(tc.a, tc.b)
		assert.Equal(t, eq, folded(tc.a) == folded(tc.b), "%q %q", tc.a, tc.b)
		for _, typ := range []message.IDType{message.IDFQDN, message.IDRFC822Addr} {
			assert.Equal(t, eq, partiesHash(typ, []byte(tc.a), local) == partiesHash(typ, []byte(tc.b), local), "%v %q %q", typ, tc.a, tc.b)
		}
		// Other types compare byte for byte, and so does our identity.
		assert.Equal(t, tc.a == tc.b, partiesHash(message.IDKeyID, []byte(tc.a), local) == partiesHash(message.IDKeyID, []byte(tc.b), local), "key ID %q %q", tc.a, tc.b)
		la, lb := config.Identity{Type: message.IDFQDN, Data: []byte(tc.a)}, config.Identity{Type: message.IDFQDN, Data: []byte(tc.b)}
		assert.Equal(t, tc.a == tc.b, partiesHash(message.IDFQDN, nil, la) == partiesHash(message.IDFQDN, nil, lb), "local %q %q", tc.a, tc.b)
	}
	assert.NotEqual(t, partiesHash(message.IDFQDN, []byte("a.example"), local), partiesHash(message.IDRFC822Addr, []byte("a.example"), local), "the type is hashed")
}

func FuzzFoldRune(f *testing.F) {
	f.Add("gw.example.org", "GW.EXAMPLE.ORG")
	f.Add("\u212a", "k")
	f.Add("ſ", "S")
	f.Add("\xff", "\xfe")
	local := config.Identity{Type: message.IDFQDN, Data: []byte("gw.example.org")}
	f.Fuzz(func(t *testing.T, a, b string) {
		if got, want := folded(a) == folded(b), strings.EqualFold(a, b); got != want {
			t.Fatalf("folded(%q) == folded(%q) is %v, EqualFold %v", a, b, got, want)
		}
		if strings.EqualFold(a, b) && partiesHash(message.IDFQDN, []byte(a), local) != partiesHash(message.IDFQDN, []byte(b), local) {
			t.Fatalf("%q and %q are equal up to case but hash differently", a, b)
		}
	})
}

// TestInitialContactCaseInsensitive: a's remote identity is b's in other
// letter case (it matches: names compare without case). With an IKE SA
// up, a's second IKE SA must find it through the peer index and send no
// INITIAL_CONTACT, so b (unique = no) keeps both; had the index missed
// the first SA, b would have dropped it.
func TestInitialContactCaseInsensitive(t *testing.T) {
	noLeaks(t)
	sa, sb := pairSides(t)
	sa.remoteID = "B.Example.ORG"
	a := newPeer(t, "a", sa.config(t, "a"))
	b := newPeer(t, "b", sb.config(t, "b"))
	establish(t, a, b, "a-net")
	require.NoError(t, secondIKE(t, a, "a-net"))
	time.Sleep(100 * time.Millisecond)
	assert.Len(t, a.sas(t), 2)
	assert.Len(t, b.sas(t), 2)
	assert.NotContains(t, b.logText(), "INITIAL_CONTACT: removed")
}

// BenchmarkPeerLookup: what INITIAL_CONTACT and unique cost on each
// IKE_AUTH with -sas IKE SAs of other peers up: the scan of every SA they
// did before the peer index (how=scan), against the index (how=index).
func BenchmarkPeerLookup(b *testing.B) {
	for _, n := range []int{1000, 10000, 100000} {
		e := &Engine{sas: map[uint64]*ikeSA{}, byConn: map[string]pairedSAs{}, byPeer: map[uint64]pairedSAs{}}
		c := &config.Connection{Name: "gw", LocalID: config.Identity{Type: message.IDFQDN, Data: []byte("gw.example.org")}}
		for i := range n {
			sa := &ikeSA{e: e, conn: c, initiator: true, spii: uint64(i + 1), state: ikeEstablished, created: stamp(i + 1)}
			sa.rec.peerID = &message.ID{IDType: message.IDFQDN, Data: fmt.Appendf(nil, "peer%d.example.org", i)}
			e.addSA(sa.localSPI(), sa)
		}
		me := &ikeSA{e: e, conn: c, spii: uint64(n + 1)}
		peer := &message.ID{IDType: message.IDFQDN, Data: fmt.Appendf(nil, "peer%d.example.org", n/2)}
		keep := func(o *ikeSA) bool { return me.sameParties(o, peer) }
		for _, how := range []string{"scan", "index"} {
			b.Run(fmt.Sprintf("sas=%d/how=%s", n, how), func(b *testing.B) {
				found := 0
				for b.Loop() {
					if how == "scan" {
						found = len(e.sortedSAsWhere(keep))
					} else {
						found = len(e.partiesSAs(peer.IDType, peer.Data, c.LocalID, keep))
					}
				}
				if found != 1 {
					b.Fatalf("found %d SAs of the peer, want 1", found)
				}
			})
		}
	}
}

// partiesEngine is an engine (no loop) holding n established IKE SAs to
// one peer, b.example.org, each from its own local identity tI.a.example.org.
func partiesEngine(n int) (*Engine, func(local string) *ikeSA) {
	e := &Engine{sas: map[uint64]*ikeSA{}, byConn: map[string]pairedSAs{}, byPeer: map[uint64]pairedSAs{}, log: slog.New(slog.DiscardHandler)}
	conn := func(local string) *config.Connection {
		return &config.Connection{Name: local, Unique: config.UniqueNo,
			LocalID:  config.Identity{Type: message.IDFQDN, Data: []byte(local)},
			RemoteID: config.Identity{Type: message.IDFQDN, Data: []byte("b.example.org")}}
	}
	spi := uint64(0)
	mk := func(local string) *ikeSA {
		spi++
		return &ikeSA{e: e, conn: conn(local), initiator: true, spii: spi}
	}
	for i := range n {
		sa := mk(fmt.Sprintf("t%d.a.example.org", i))
		sa.state = ikeEstablished
		e.addSA(sa.localSPI(), sa)
		e.setPeerID(sa, &message.ID{IDType: message.IDFQDN, Data: []byte("B.example.org")})
	}
	return e, mk
}

// TestInitialContactParties: INITIAL_CONTACT goes when no SA joins the
// same two identities — with many SAs to the same peer from other local
// identities — and not when one does; the index follows an SA whose
// connection changes our identity (a reload) and one that goes.
func TestInitialContactParties(t *testing.T) {
	e, mk := partiesEngine(100)
	require.Empty(t, e.indexErr())
	fresh := mk("t100.a.example.org")
	assert.Len(t, fresh.initialContact(), 1, "no SA from t100: INITIAL_CONTACT")
	assert.Empty(t, mk("t7.a.example.org").initialContact(), "t7 has an SA with the peer")
	// t7's SA moves to t100's identity (reload): now t100 has one, t7 none.
	var t7 *ikeSA
	for sa := range e.byPeer[partiesHash(message.IDFQDN, []byte("b.example.org"), config.Identity{Type: message.IDFQDN, Data: []byte("t7.a.example.org")})].all {
		t7 = sa
	}
	require.NotNil(t, t7)
	e.setConn(t7, fresh.conn)
	require.Empty(t, e.indexErr())
	assert.Empty(t, fresh.initialContact())
	assert.Len(t, mk("t7.a.example.org").initialContact(), 1)
	// Two SAs under one pair of identities, then both gone.
	other := mk("t100.a.example.org")
	e.addSA(other.localSPI(), other)
	e.setPeerID(other, &message.ID{IDType: message.IDFQDN, Data: []byte("b.example.org")})
	require.Empty(t, e.indexErr())
	assert.Equal(t, 2, e.byPeer[partiesHash(message.IDFQDN, []byte("b.example.org"), fresh.conn.LocalID)].len())
	e.removeSA(t7)
	require.Empty(t, e.indexErr())
	assert.Equal(t, 1, e.byPeer[partiesHash(message.IDFQDN, []byte("b.example.org"), fresh.conn.LocalID)].len())
	e.removeSA(other)
	require.Empty(t, e.indexErr())
	assert.Len(t, fresh.initialContact(), 1)
	e.removeSA(other) // twice: no change
	require.Empty(t, e.indexErr())
}

// BenchmarkInitialContact: what deciding on INITIAL_CONTACT costs on each
// IKE_AUTH with -sas IKE SAs up to the same peer, each from its own local
// identity (one gateway, many tunnels): a scan of the peer's SAs before
// the index by both identities (how=peer-scan), against it (how=index).
func BenchmarkInitialContact(b *testing.B) {
	for _, n := range []int{1000, 10000, 100000} {
		e, mk := partiesEngine(n)
		sa := mk("new.a.example.org")
		for _, how := range []string{"peer-scan", "index"} {
			b.Run(fmt.Sprintf("sas=%d/how=%s", n, how), func(b *testing.B) {
				sent := 0
				for b.Loop() {
					if how == "index" {
						sent = len(sa.initialContact())
						continue
					}
					sent = 1
					c := sa.conn
					for _, o := range e.sas { // every SA is the peer's
						if o != sa && o.state != ikeDead && o.rec.peerID != nil && o.conn != nil &&
							o.conn.LocalID.Type == c.LocalID.Type && bytes.Equal(o.conn.LocalID.Data, c.LocalID.Data) &&
							c.RemoteID.Matches(o.rec.peerID.IDType, o.rec.peerID.Data) {
							sent = 0
						}
					}
				}
				if sent != 1 {
					b.Fatal("INITIAL_CONTACT not sent")
				}
			})
		}
	}
}

// peerIndexed is how many SAs byPeer holds with a peer whose identity
// is (t, v) up to case.
func (e *Engine) peerIndexed(t message.IDType, v string) int {
	n := 0
	for _, s := range e.byPeer {
		for sa := range s.all {
			if id := sa.rec.peerID; id.IDType == t && strings.EqualFold(string(id.Data), v) {
				n++
			}
		}
	}
	return n
}
