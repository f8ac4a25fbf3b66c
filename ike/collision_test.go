package ike

import (
	"crypto/rand"
	"regexp"
	"strings"
	"testing"
	"time"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"

	"github.com/keyplane/keyplane/ike/ikecrypto"
	"github.com/keyplane/keyplane/kernelops"
)

func TestOurExchangeLoses(t *testing.T) {
	n := func(b ...byte) []byte { return b }
	for _, tc := range []struct {
		name                           string
		ourNi, ourNr, theirNi, theirNr []byte
		loses                          bool
	}{
		{"our Ni lowest", n(1), n(9), n(5), n(6), true},
		{"our Nr lowest", n(9), n(1), n(5), n(6), true},
		{"their Ni lowest", n(5), n(6), n(1), n(9), false},
		{"their Nr lowest", n(5), n(6), n(9), n(1), false},
		// Octet by octet, not as integers: 0x01 0xff < 0x02.
		{"octet order", n(1, 0xff), n(9), n(2), n(9), true},
		// A prefix is the lower.
		{"prefix lower", n(3, 4), n(9), n(3, 4, 0), n(9), true},
		{"prefix lower, theirs", n(3, 4, 0), n(9), n(3, 4), n(9), false},
	} {
		t.Run(tc.name, func(t *testing.T) {
			assert.Equal(t, tc.loses, ourExchangeLoses(tc.ourNi, tc.ourNr, tc.theirNi, tc.theirNr))
			// The peer computes the same with the roles swapped: exactly
			// one exchange loses.
			assert.Equal(t, !tc.loses, ourExchangeLoses(tc.theirNi, tc.theirNr, tc.ourNi, tc.ourNr))
		})
	}
}

// nonces sets p's CREATE_CHILD_SA nonces: those of its requests start
// with octet req, those of its answers with resp.
func nonces(t *testing.T, p *peer, req, resp byte) {
	t.Helper()
	require.NoError(t, p.e.call(t.Context(), func() {
		p.e.nonceHook = func(forRequest bool) []byte {
			n := make([]byte, 32)
			rand.Read(n)
			n[0] = resp
			if forRequest {
				n[0] = req
			}
			return n
		}
	}))
}

// simultaneously runs fa on a's loop and fb on b's so that both
// requests are out before either end reads the other's: b's loop is held
// until a's request has had time to land in b's queue.
func simultaneously(t *testing.T, a, b *peer, fa, fb func(*ikeSA)) {
	t.Helper()
	aSent := make(chan struct{})
	bDone := make(chan struct{})
	b.e.post(func() {
		defer close(bDone)
		<-aSent
		time.Sleep(100 * time.Millisecond)
		for _, sa := range b.e.sas {
			if sa.state == ikeEstablished {
				fb(sa)
				return
			}
		}
		t.Errorf("b has no established IKE SA")
	})
	onLoop(t, a, fa)
	close(aSent)
	<-bDone
}

func firstChild(sa *ikeSA) *childSA {
	for _, ch := range sa.children {
		if ch.state == childInstalled {
			return ch
		}
	}
	return nil
}

var survivingSPI = regexp.MustCompile(`surviving-spi-in=([0-9a-f]{8})`)

// TestChildRekeyCollision: both ends rekey the same child at once
// (RFC 7296 §2.8.1). Both answer the other's request; the exchange with
// the lowest of the four nonces made the redundant child, which its
// initiator deletes, and the other initiator deletes the old child. Each
// end ends with exactly one child, the same one, made by the winner's
// exchange; nothing is left in either dataplane. Both ways: a wins, b
// wins (the nonces decide, set by the test).
func TestChildRekeyCollision(t *testing.T) {
	noLeaks(t)
	for _, tc := range []struct {
		name                     string
		aReq, aResp, bReq, bResp byte
		winner                   string
	}{
		// Exchange 1 (a's): Ni from a, Nr from b. Exchange 2 (b's): Ni
		// from b, Nr from a. The lowest nonce is in b's exchange: b loses.
		{"a wins", 0xc0, 0xc0, 0x10, 0x20, "a"},
		{"b wins", 0x10, 0x20, 0xc0, 0xc0, "b"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			for _, esp := range []string{"aes128gcm16", "aes128gcm16-x25519"} {
				t.Run(esp, func(t *testing.T) {
					sa, sb := pairSides(t)
					sa.esp, sb.esp = esp, esp
					a := newPeer(t, "a", sa.config(t, "a"))
					b := newPeer(t, "b", sb.config(t, "b"))
					establish(t, a, b, "a-net")
					before, _, _ := steady(t, a, b)
					nonces(t, a, tc.aReq, tc.aResp)
					nonces(t, b, tc.bReq, tc.bResp)
					simultaneously(t, a, b,
						func(sa *ikeSA) { sa.rekeyChild(firstChild(sa)) },
						func(sa *ikeSA) { sa.rekeyChild(firstChild(sa)) })
					var after IKESAInfo
					waitFor(t, "one child each side, crosswise, a new one", 5*time.Second, func() bool {
						ia, _, ok := steady(t, a, b)
						after = ia
						return ok && ia.Children[0].SPIIn != before.Children[0].SPIIn
					})
					for _, p := range []*peer{a, b} {
						waitFor(t, p.name+": 2 SAs and 3 policies", 3*time.Second, func() bool {
							s, pol := p.counts(t)
							return s == 2 && pol == 3
						})
					}
					winner, loser := a, b
					if tc.winner == "b" {
						winner, loser = b, a
					}
					require.Contains(t, winner.logText(), "child rekey collision won")
					require.Contains(t, loser.logText(), "child rekey collision lost")
					assert.NotContains(t, winner.logText(), "child rekey collision lost")
					assert.NotContains(t, loser.logText(), "child rekey collision won")
					// The survivor is the child of the winner's exchange.
					m := survivingSPI.FindStringSubmatch(winner.logText())
					require.NotNil(t, m)
					wc := winner.sas(t)[0].Children[0]
					assert.Equal(t, m[1], wc.SPIIn, "winner's child is not the one its own exchange made")
					assert.Equal(t, m[1], loser.sas(t)[0].Children[0].SPIOut)
					if strings.Contains(esp, "x25519") {
						assert.Contains(t, after.Children[0].Suite, "ENCR_AES_GCM_16")
					}
					for _, p := range []*peer{a, b} {
						assert.NotContains(t, p.logText(), "level=ERROR")
						assert.NotContains(t, p.logText(), "did not delete", "%s fell back on its own delete", p.name)
					}
					// The survivor works: a delete over it empties both.
					require.NoError(t, a.e.Terminate(ctxT(t, 5*time.Second), "a"))
					a.expectEmpty(t)
					b.expectEmpty(t)
				})
			}
		})
	}
}

// TestIKERekeyCollision: both ends rekey the IKE SA at once (RFC 7296
// §2.8.2). The new SA made by the exchange with the lowest nonce is
// deleted by its initiator, the children move to the other, whose
// initiator deletes the old SA: one IKE SA each side, the same, holding
// the child unchanged. Both ways.
func TestIKERekeyCollision(t *testing.T) {
	noLeaks(t)
	for _, tc := range []struct {
		name                     string
		aReq, aResp, bReq, bResp byte
		winner                   string
	}{
		{"a wins", 0xc0, 0xc0, 0x10, 0x20, "a"},
		{"b wins", 0x10, 0x20, 0xc0, 0xc0, "b"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			sa, sb := pairSides(t)
			sa.extraConn, sb.extraConn = "rekey_time = 0", "rekey_time = 0"
			a := newPeer(t, "a", sa.config(t, "a"))
			b := newPeer(t, "b", sb.config(t, "b"))
			rekA, rekB := countRekeyed(t, a), countRekeyed(t, b)
			establish(t, a, b, "a-net")
			before, _, _ := steady(t, a, b)
			nonces(t, a, tc.aReq, tc.aResp)
			nonces(t, b, tc.bReq, tc.bResp)
			simultaneously(t, a, b, func(sa *ikeSA) { sa.rekeyIKE() }, func(sa *ikeSA) { sa.rekeyIKE() })
			var ia, ib IKESAInfo
			waitFor(t, "one IKE SA each side, new SPIs", 5*time.Second, func() bool {
				var ok bool
				ia, ib, ok = steady(t, a, b)
				return ok && ia.SPIi != before.SPIi && rekA() == 1 && rekB() == 1
			})
			winner, wi, loser := a, ia, b
			if tc.winner == "b" {
				winner, wi, loser = b, ib, a
			}
			assert.Equal(t, "initiator", wi.Role, "the survivor's initiator is the winner")
			require.Contains(t, winner.logText(), "IKE SA rekey collision won")
			require.Contains(t, loser.logText(), "IKE SA rekey collision lost")
			assert.Equal(t, before.Children[0].SPIIn, ia.Children[0].SPIIn, "the child changed with the IKE SA")
			assert.Equal(t, before.Children[0].SPIOut, ia.Children[0].SPIOut)
			for _, p := range []*peer{a, b} {
				s, pol := p.counts(t)
				assert.Equal(t, 2, s, "%s SAs", p.name)
				assert.Equal(t, 3, pol, "%s policies", p.name)
				assert.NotContains(t, p.logText(), "level=ERROR")
				assert.NotContains(t, p.logText(), "did not delete", "%s fell back on its own delete", p.name)
				assert.NotContains(t, p.logText(), "TEMPORARY_FAILURE")
			}
			// The survivor carries on: a child rekey, then the delete.
			onLoop(t, loser, func(sa *ikeSA) { sa.rekeyChild(firstChild(sa)) })
			waitFor(t, "a child rekey over the surviving SA", 5*time.Second, func() bool {
				x, _, ok := steady(t, a, b)
				return ok && x.Children[0].SPIIn != before.Children[0].SPIIn && x.SPIi == ia.SPIi
			})
			require.NoError(t, b.e.Terminate(ctxT(t, 5*time.Second), "b"))
			waitFor(t, "IKE SAs gone", 3*time.Second, func() bool { return len(a.sas(t)) == 0 && len(b.sas(t)) == 0 })
			a.expectEmpty(t)
			b.expectEmpty(t)
		})
	}
}

// TestChildKeysFollowTheExchange: KEYMAT's first keys protect the
// traffic from the initiator of the exchange that made the child (RFC
// 7296 §2.17), which is not the IKE SA's initiator when the IKE
// responder creates or rekeys a child. Two keyplanes would agree on
// either rule; this checks the installed keys against KEYMAT itself.
func TestChildKeysFollowTheExchange(t *testing.T) {
	noLeaks(t)
	sa, sb := pairSides(t)
	a := newPeer(t, "a", sa.config(t, "a"))
	b := newPeer(t, "b", sb.config(t, "b"))
	establish(t, a, b, "a-net")
	fixed := func(p *peer, v byte) []byte {
		n := make([]byte, 32)
		for i := range n {
			n[i] = v
		}
		require.NoError(t, p.e.call(t.Context(), func() { p.e.nonceHook = func(bool) []byte { return n } }))
		return n
	}
	ni, nr := fixed(b, 0x11), fixed(a, 0x22)
	before, _, _ := steady(t, a, b)
	// b, the IKE SA's responder, rekeys: it initiates this exchange.
	require.NoError(t, b.e.Rekey(ctxT(t, 5*time.Second), "b-net"))
	waitFor(t, "the rekey through", 5*time.Second, func() bool {
		x, _, ok := steady(t, a, b)
		return ok && x.Children[0].SPIIn != before.Children[0].SPIIn
	})
	var want *ikecrypto.ChildKeys
	var bOut, aOut kernelops.SAID
	require.NoError(t, b.e.call(t.Context(), func() {
		for _, sa := range b.e.sas {
			ch := firstChild(sa)
			var err error
			want, err = ikecrypto.DeriveChildKeys(sa.suite.PRF, sa.keys.SKd(), ch.suite, nil, ni, nr)
			require.NoError(t, err)
			bOut = ch.outID()
			aOut = ch.inID()
		}
	}))
	got := func(p *peer, id kernelops.SAID) []byte {
		e, err := p.b.GetSA(t.Context(), id)
		require.NoError(t, err)
		return e.Encryption.Key
	}
	// b's outbound (the exchange initiator's) carries EncrI, at b and at a.
	assert.Equal(t, []byte(want.EncrI), got(b, bOut), "b's outbound key")
	assert.Equal(t, []byte(want.EncrI), got(a, bOut), "a's inbound key from b")
	assert.Equal(t, []byte(want.EncrR), got(a, aOut), "a's outbound key")
	assert.Equal(t, []byte(want.EncrR), got(b, aOut), "b's inbound key from a")
}
