package ike

import (
	"fmt"
	"strings"
	"testing"
	"time"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"

	"github.com/keyplane/keyplane/ike/config"
	"github.com/keyplane/keyplane/ike/message"
)

// foldKey must agree with strings.EqualFold, which config.Identity uses to
// match names: the peer index relies on it to find every SA a pattern
// matches under the pattern's own key.
func TestFoldKey(t *testing.T) {
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
	} {
		assert.Equal(t, strings.EqualFold(tc.a, tc.b), foldKey(tc.a) == foldKey(tc.b), "%q %q", tc.a, tc.b)
	}
}

func FuzzFoldKey(f *testing.F) {
	f.Add("gw.example.org", "GW.EXAMPLE.ORG")
	f.Add("\u212a", "k")
	f.Add("ſ", "S")
	f.Add("\xff", "\xfe")
	f.Fuzz(func(t *testing.T, a, b string) {
		if got, want := foldKey(a) == foldKey(b), strings.EqualFold(a, b); got != want {
			t.Fatalf("foldKey(%q) == foldKey(%q) is %v, EqualFold %v", a, b, got, want)
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
		e := &Engine{sas: map[uint64]*ikeSA{}, byConn: map[string]map[*ikeSA]struct{}{}, byPeer: map[peerKey]map[*ikeSA]struct{}{}}
		c := &config.Connection{Name: "gw", LocalID: config.Identity{Type: message.IDFQDN, Data: []byte("gw.example.org")}}
		t0 := time.Unix(0, 0)
		for i := range n {
			sa := &ikeSA{e: e, conn: c, initiator: true, spii: uint64(i + 1), state: ikeEstablished, created: t0.Add(time.Duration(i))}
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
						found = len(e.peerSAs(keyOf(peer.IDType, peer.Data), keep))
					}
				}
				if found != 1 {
					b.Fatalf("found %d SAs of the peer, want 1", found)
				}
			})
		}
	}
}
