package ike

import (
	"errors"
	"net/netip"
	"testing"
	"time"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"

	"github.com/keyplane/keyplane/ike/config"
	"github.com/keyplane/keyplane/ike/message"
)

func TestAuthChangedTable(t *testing.T) {
	id := func(s string) config.Identity {
		i, err := config.ParseIdentity(s)
		require.NoError(t, err)
		return i
	}
	conn := func(psk, local, remote string) *config.Connection {
		return &config.Connection{PSK: []byte(psk), LocalID: id(local), RemoteID: id(remote)}
	}
	peer := &message.ID{IDType: message.IDFQDN, Data: []byte("a.example.org")}
	base := conn("k1", "b.example.org", "%any")
	for _, tc := range []struct {
		name string
		nc   *config.Connection
		peer *message.ID
		want string // "" kept; else a word of the reason
	}{
		{"same", conn("k1", "b.example.org", "%any"), peer, ""},
		{"pre-shared key rotated", conn("k2", "b.example.org", "%any"), peer, "pre-shared key"},
		{"key of another length", conn("k1x", "b.example.org", "%any"), peer, "pre-shared key"},
		{"local.id changed", conn("k1", "c.example.org", "%any"), peer, "local.id"},
		{"remote.id narrowed, peer still matches", conn("k1", "b.example.org", "a.example.org"), peer, ""},
		{"remote.id narrowed to another peer", conn("k1", "b.example.org", "z.example.org"), peer, "does not match"},
		{"not yet authenticated, remote.id changed", conn("k1", "b.example.org", "a.example.org"), nil, "remote.id changed"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			got := authChanged(base, tc.nc, tc.peer)
			if tc.want == "" {
				assert.Empty(t, got)
			} else {
				assert.Contains(t, got, tc.want)
			}
		})
	}
}

// oldConfigUnused fails if an SA still in use points at a connection of
// old: after a reload, old's keys may be wiped.
func oldConfigUnused(t *testing.T, p *peer, old *config.Config) {
	t.Helper()
	require.NoError(t, p.e.call(t.Context(), func() {
		for _, sa := range p.e.sas {
			if sa.state == ikeDeleting || sa.state == ikeDead {
				continue
			}
			for _, oc := range old.Connections {
				assert.NotSame(t, oc, sa.conn, "SA %s still on the old configuration", sa.spis())
				for _, c := range orZero(sa.hs).cands {
					assert.NotSame(t, oc, c, "half-open SA %s still has an old candidate", sa.spis())
				}
			}
		}
	}))
}

// The probe "reload that rotates a PSK or narrows remote.id: the revoked
// peer's IKE SA stays up". Now b, the responder, closes the IKE SAs whose
// authentication settings changed, tells the peer, and says which in
// its result; the others stay, moved to the new configuration.
func TestReloadClosesChangedAuth(t *testing.T) {
	noLeaks(t)
	for _, tc := range []struct {
		name   string
		change func(b *side)
		closed string // "" kept; else a word of the reason
	}{
		{"unchanged", func(*side) {}, ""},
		{"pre-shared key rotated", func(b *side) { b.psk = "a new secret" }, "pre-shared key changed"},
		{"remote.id narrowed to another peer", func(b *side) { b.remoteID = "z.example.org" }, "does not match remote.id"},
		{"remote.id widened", func(b *side) { b.remoteID = "%any" }, ""},
		{"local.id changed", func(b *side) { b.id = "c.example.org" }, "local.id changed"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			sa, sb := pairSides(t)
			a := newPeer(t, "a", sa.config(t, "a"))
			oldCfg := sb.config(t, "b")
			b := newPeer(t, "b", oldCfg)
			establish(t, a, b, "a-net")
			before := b.sas(t)[0]
			nb := sb
			tc.change(&nb)
			res, err := b.e.Reconfigure(t.Context(), nb.config(t, "b"))
			require.NoError(t, err)
			if tc.closed == "" {
				assert.Empty(t, res.Closed)
				assert.Equal(t, 1, installed(b.sas(t)))
				time.Sleep(100 * time.Millisecond)
				assert.Equal(t, 1, installed(a.sas(t)), "a's SA stays up")
				oldConfigUnused(t, b, oldCfg)
				return
			}
			require.Len(t, res.Closed, 1)
			c := res.Closed[0]
			assert.Equal(t, "b", c.Name)
			assert.Equal(t, before.SPIi+"_i "+before.SPIr+"_r", c.SPIs)
			assert.Equal(t, "established", c.State)
			assert.Contains(t, c.Reason, tc.closed)
			// The peer is told: its SA goes too.
			waitFor(t, "both sides' SAs gone", 3*time.Second, func() bool { return len(a.sas(t)) == 0 && len(b.sas(t)) == 0 })
			a.expectEmpty(t)
			b.expectEmpty(t)
			oldConfigUnused(t, b, oldCfg)
			// The revoked peer cannot come back with its old settings.
			err = a.e.Initiate(ctxT(t, 5*time.Second), "a-net")
			var ne *NotifyError
			require.True(t, errors.As(err, &ne), "initiate after the reload: %v", err)
			assert.Equal(t, message.AUTHENTICATION_FAILED, ne.Type)
		})
	}
}

// A connection removed by a reload is listed with its SAs; a connection
// with start_action = start whose SA the reload closed is initiated again
// under the new settings.
func TestReloadRemovedAndRestarted(t *testing.T) {
	noLeaks(t)
	t.Run("removed", func(t *testing.T) {
		sa, sb := pairSides(t)
		a := newPeer(t, "a", sa.config(t, "a"))
		b := newPeer(t, "b", sb.config(t, "b"))
		establish(t, a, b, "a-net")
		res, err := b.e.Reconfigure(t.Context(), sb.config(t, "renamed"))
		require.NoError(t, err)
		require.Len(t, res.Closed, 1)
		assert.Equal(t, "b", res.Closed[0].Name)
		assert.Contains(t, res.Closed[0].Reason, "connection removed")
		waitFor(t, "a's SA gone", 3*time.Second, func() bool { return len(a.sas(t)) == 0 })
	})
	t.Run("start_action = start", func(t *testing.T) {
		sa, sb := pairSides(t)
		sb.remoteID = "%any"
		sa.start = "start"
		a := newPeer(t, "a", sa.config(t, "a"))
		b := newPeer(t, "b", sb.config(t, "b"))
		waitFor(t, "started", 5*time.Second, func() bool { return installed(a.sas(t)) == 1 && installed(b.sas(t)) == 1 })
		old := a.sas(t)[0]
		na := sa
		na.id = "a2.example.org"
		res, err := a.e.Reconfigure(t.Context(), na.config(t, "a"))
		require.NoError(t, err)
		require.Len(t, res.Closed, 1)
		assert.Contains(t, res.Closed[0].Reason, "local.id changed")
		waitFor(t, "the child back on a new IKE SA", 5*time.Second, func() bool {
			sas := a.sas(t)
			return len(sas) == 1 && sas[0].SPIi != old.SPIi && installed(sas) == 1 && installed(b.sas(t)) == 1 && len(b.sas(t)) == 1
		})
	})
}

// Half-open SAs take the new configuration's candidates, or go when none
// is left for them.
func TestReloadHalfOpen(t *testing.T) {
	noLeaks(t)
	b, _, sb := responder(t, "")
	oldCfg := b.e.cfg
	_, ans := newRawInit(t, "127.0.0.1", sb.port).initEchoing(2 * time.Second)
	require.NotNil(t, ans)
	res, err := b.e.Reconfigure(t.Context(), sb.config(t, "b"))
	require.NoError(t, err)
	assert.Empty(t, res.Closed)
	assert.Equal(t, 1, checkHalfOpenBooks(t, b))
	oldConfigUnused(t, b, oldCfg)
	nc := sb.config(t, "b")
	nc.Connections[0].RemoteAddr = netip.MustParseAddr("127.0.0.9")
	res, err = b.e.Reconfigure(t.Context(), nc)
	require.NoError(t, err)
	require.Len(t, res.Closed, 1)
	assert.Equal(t, "(half-open)", res.Closed[0].Name)
	assert.Equal(t, 0, checkHalfOpenBooks(t, b))
}
