package ike

import (
	"strings"
	"testing"
	"time"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"

	"github.com/keyplane/keyplane/ike/message"
)

// restartA closes a without telling b (a crash: b keeps its SAs) and
// starts a again with the same configuration and ports; the new a
// initiates.
func restartA(t *testing.T, a *peer, sa side) *peer {
	t.Helper()
	require.NoError(t, a.e.Close())
	a2 := newPeer(t, "a2", sa.config(t, "a"))
	require.NoError(t, a2.e.Initiate(ctxT(t, 5*time.Second), "a-net"))
	return a2
}

// TestInitialContact: a restarts and initiates again. Its IKE_AUTH
// carries INITIAL_CONTACT (it has no IKE SA with b), and b drops the IKE
// SA and children the old a left, at once — unless either end has
// unique = never.
func TestInitialContact(t *testing.T) {
	noLeaks(t)
	for _, tc := range []struct {
		name         string
		aConn, bConn string
		stale        bool // b keeps the old SA
	}{
		{"sent and honoured", "", "", false},
		{"b unique=never ignores it", "", "unique = never", true},
		{"a unique=never sends none", "unique = never", "", true},
		{"b unique=keep yields to it", "", "unique = keep", false},
	} {
		t.Run(tc.name, func(t *testing.T) {
			sa, sb := pairSides(t)
			sa.extraConn, sb.extraConn = tc.aConn, tc.bConn
			a := newPeer(t, "a", sa.config(t, "a"))
			b := newPeer(t, "b", sb.config(t, "b"))
			establish(t, a, b, "a-net")
			old := b.sas(t)[0]
			a2 := restartA(t, a, sa)
			want := 1
			if tc.stale {
				want = 2
			}
			waitFor(t, "b's IKE SAs", 3*time.Second, func() bool { return len(b.sas(t)) == want && installed(b.sas(t)) == want })
			time.Sleep(100 * time.Millisecond)
			sas := b.sas(t)
			require.Len(t, sas, want)
			s, _ := b.counts(t)
			assert.Equal(t, 2*want, s, "b's dataplane SAs")
			if !tc.stale {
				assert.NotEqual(t, old.SPIi, sas[0].SPIi, "the old IKE SA is gone")
				assert.Contains(t, b.logText(), "INITIAL_CONTACT: removed the peer's other IKE SAs")
			}
			_ = a2
		})
	}
}

// secondIKE makes p start another IKE SA of its connection with child,
// beside the one it has (so without INITIAL_CONTACT), and returns the
// outcome.
func secondIKE(t *testing.T, p *peer, child string) error {
	t.Helper()
	done := make(chan error, 1)
	require.NoError(t, p.e.call(t.Context(), func() {
		c, ch := p.e.cfg.Child(child)
		nc := p.e.newChild(ch)
		nr := made(&nc.rec)
		nr.newIKE = true
		nr.waiters = append(nr.waiters, done)
		p.e.initiateChild(c, nc)
	}))
	select {
	case err := <-done:
		return err
	case <-time.After(5 * time.Second):
		t.Fatal("no outcome")
	}
	return nil
}

// TestUnique: a second IKE SA between the same identities (no
// INITIAL_CONTACT: the first is still there). b, responder: unique = no
// keeps both; replace deletes the old one, telling a; keep refuses the
// new one with AUTHENTICATION_FAILED.
func TestUnique(t *testing.T) {
	noLeaks(t)
	for _, tc := range []struct {
		unique string
		check  func(t *testing.T, a, b *peer, first IKESAInfo, err error)
	}{
		{"no", func(t *testing.T, a, b *peer, first IKESAInfo, err error) {
			require.NoError(t, err)
			time.Sleep(100 * time.Millisecond)
			assert.Len(t, a.sas(t), 2)
			assert.Len(t, b.sas(t), 2)
		}},
		{"replace", func(t *testing.T, a, b *peer, first IKESAInfo, err error) {
			require.NoError(t, err)
			waitFor(t, "the old IKE SA deleted on both sides", 3*time.Second, func() bool {
				x, _, ok := steady(t, a, b)
				return ok && x.SPIi != first.SPIi
			})
			assert.Contains(t, b.logText(), "unique = replace")
		}},
		{"keep", func(t *testing.T, a, b *peer, first IKESAInfo, err error) {
			wantNotify(t, err, message.AUTHENTICATION_FAILED, true)
			waitFor(t, "the first IKE SA alone", 3*time.Second, func() bool {
				x, _, ok := steady(t, a, b)
				return ok && x.SPIi == first.SPIi
			})
			assert.True(t, strings.Contains(b.logText(), "unique = keep"))
		}},
	} {
		t.Run(tc.unique, func(t *testing.T) {
			sa, sb := pairSides(t)
			sb.extraConn = "unique = " + tc.unique
			a := newPeer(t, "a", sa.config(t, "a"))
			b := newPeer(t, "b", sb.config(t, "b"))
			establish(t, a, b, "a-net")
			first := a.sas(t)[0]
			err := secondIKE(t, a, "a-net")
			tc.check(t, a, b, first, err)
		})
	}
}
