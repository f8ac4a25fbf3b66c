package ike

import (
	"net/netip"
	"strings"
	"testing"
	"time"

	"github.com/keyplane/keyplane/backends/nokernel"
	"github.com/keyplane/keyplane/ike/config"
	"github.com/keyplane/keyplane/kernelops"
	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"
)

func TestHolesFor(t *testing.T) {
	ts := func(ss ...string) []config.TS {
		var out []config.TS
		for _, s := range ss {
			if s == "dynamic" {
				out = append(out, config.TS{Dynamic: true})
				continue
			}
			out = append(out, config.TS{Prefix: netip.MustParsePrefix(s)})
		}
		return out
	}
	conn := func(local, remote string, lts, rts []config.TS) *config.Connection {
		c := config.DefaultConnection("c")
		if local != "" {
			c.LocalAddr = netip.MustParseAddr(local)
		}
		if remote != "" {
			c.RemoteAddr = netip.MustParseAddr(remote)
		}
		ch := config.DefaultChild("c-net")
		ch.LocalTS, ch.RemoteTS = lts, rts
		c.Children = []*config.Child{ch}
		return c
	}
	for _, c := range []struct {
		name string
		conn *config.Connection
		want kernelops.HoleSet
	}{
		{"site to site", conn("192.0.2.1", "198.51.100.1", ts("10.1.0.0/16"), ts("10.2.0.0/16")), kernelops.HoleSet{}},
		{"everything", conn("192.0.2.1", "198.51.100.1", ts("0.0.0.0/0"), ts("0.0.0.0/0")), kernelops.HoleSet{IKEPorts: []uint16{500, 4500}}},
		{"only the remote side", conn("192.0.2.1", "198.51.100.1", ts("10.1.0.0/16"), ts("0.0.0.0/0")), kernelops.HoleSet{}},
		{"host to host (dynamic)", conn("192.0.2.1", "198.51.100.1", ts("dynamic"), ts("dynamic")), kernelops.HoleSet{IKEPorts: []uint16{500, 4500}}},
		{"any peer, any remote", conn("192.0.2.1", "", ts("192.0.2.0/24"), ts("0.0.0.0/0")), kernelops.HoleSet{IKEPorts: []uint16{500, 4500}}},
		{"any peer, a remote subnet", conn("192.0.2.1", "", ts("192.0.2.0/24"), ts("10.2.0.0/16")), kernelops.HoleSet{}},
		{"IPv6 everything", conn("2001:db8::1", "2001:db8:1::1", ts("::/0"), ts("::/0")), kernelops.HoleSet{IKEPorts: []uint16{500, 4500}, IPv6ND: true}},
		{"IPv6 subnets", conn("2001:db8::1", "2001:db8:1::1", ts("2001:db8:a::/48"), ts("2001:db8:b::/48")), kernelops.HoleSet{}},
		{"IPv6 inner, IPv4 outer", conn("192.0.2.1", "198.51.100.1", ts("::/0"), ts("fe80::/10")), kernelops.HoleSet{IPv6ND: true}},
	} {
		t.Run(c.name, func(t *testing.T) {
			cfg := config.Defaults()
			cfg.Connections = []*config.Connection{c.conn}
			assert.Equal(t, c.want, holesFor(cfg))
		})
	}
	// A TCP-only or one-ICMP-type selector catches neither.
	cfg := config.Defaults()
	cn := conn("2001:db8::1", "2001:db8:1::1", []config.TS{{Prefix: netip.MustParsePrefix("::/0"), Proto: 6}},
		[]config.TS{{Prefix: netip.MustParsePrefix("::/0"), Proto: 6}})
	cfg.Connections = []*config.Connection{cn}
	assert.Equal(t, kernelops.HoleSet{}, holesFor(cfg))
}

// passPolicies returns the pass policies in the peer's model.
func (p *peer) passPolicies(t *testing.T) []kernelops.Policy {
	t.Helper()
	var out []kernelops.Policy
	for pol, err := range p.b.Policies(t.Context()) {
		require.NoError(t, err)
		if pol.Action == kernelops.ActionPass {
			out = append(out, pol.Policy) // the entry is reused
		}
	}
	return out
}

// A child whose selectors hold both IKE addresses (127.0.0.1 here) makes
// the engine open holes for its IKE ports at start; the tunnel still
// comes up; a reload to narrow selectors closes them, another reload
// opens them again, and the engine's end closes them.
func TestHolesOpenAndClose(t *testing.T) {
	noLeaks(t)
	sa, sb := pairSides(t)
	sa.localTS, sa.remoteTS = "0.0.0.0/0", "0.0.0.0/0"
	sb.localTS, sb.remoteTS = "0.0.0.0/0", "0.0.0.0/0"
	a := newPeer(t, "a", sa.config(t, "a"))
	b := newPeer(t, "b", sb.config(t, "b"))
	ports := func(pols []kernelops.Policy) []uint16 {
		var out []uint16
		for _, p := range pols {
			if p.Dir == kernelops.DirIn {
				out = append(out, p.Selector.DstPort)
			}
		}
		return out
	}
	assert.ElementsMatch(t, []uint16{sa.port, sa.natPort}, ports(a.passPolicies(t)))
	assert.Contains(t, a.logText(), "holes open")
	require.NoError(t, a.e.Initiate(ctxT(t, 5*time.Second), "a-net"))
	kids, err := a.e.Children(t.Context())
	require.NoError(t, err)
	require.Len(t, kids, 1)

	narrow := sa
	narrow.localTS, narrow.remoteTS = "10.1.0.0/16", "10.2.0.0/16"
	require.NoError(t, a.e.Reload(t.Context(), narrow.config(t, "a")))
	assert.Empty(t, a.passPolicies(t))
	require.NoError(t, a.e.Reload(t.Context(), sa.config(t, "a")))
	assert.Len(t, a.passPolicies(t), 4)

	a.e.Close()
	b.e.Close()
	assert.Empty(t, a.passPolicies(t), "the engine's end closes the holes")
	assert.Empty(t, b.passPolicies(t))
}

const noHolesNote = "this test's dataplane cannot open holes"

// Selectors that would catch IKE on a dataplane without holes: refused
// at load, quoting the backend's note.
func TestHolesNeedTheCapability(t *testing.T) {
	noLeaks(t)
	sa, _ := pairSides(t)
	sa.localTS, sa.remoteTS = "0.0.0.0/0", "0.0.0.0/0"
	b, err := nokernel.Open(t.Context(), kernelops.Options{})
	require.NoError(t, err)
	defer b.Close()
	_, err = New(t.Context(), Options{Backend: lacking{b, kernelops.CapHoles, noHolesNote}, Config: sa.config(t, "a")})
	require.ErrorIs(t, err, ErrFacetMissing)
	assert.ErrorIs(t, err, kernelops.ErrNotSupported)
	assert.True(t, strings.Contains(err.Error(), noHolesNote), err.Error())
}
