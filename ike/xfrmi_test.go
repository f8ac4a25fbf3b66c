package ike

import (
	"context"
	"errors"
	"testing"
	"time"

	"github.com/keyplane/keyplane/backends/nokernel"
	"github.com/keyplane/keyplane/ike/config"
	"github.com/keyplane/keyplane/kernelops"
	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"
)

const xfrmi42 = "if_id_in = 42\nif_id_out = 42\nxfrm_interface = xfrm42"

// xfrmIfIDs lists the dataplane's xfrm interfaces: name -> if_id.
func xfrmIfIDs(t *testing.T, b kernelops.Backend) map[string]uint32 {
	t.Helper()
	as, err := kernelops.As[kernelops.AddrSelector](b)
	require.NoError(t, err)
	ifs, err := as.Interfaces(t.Context())
	require.NoError(t, err)
	out := map[string]uint32{}
	for _, i := range ifs {
		if i.XfrmIfID != 0 {
			out[i.Name] = i.XfrmIfID
		}
	}
	return out
}

// withSecondChild adds child name to cfg's connection, a copy of the
// first with the selectors given.
func withSecondChild(t *testing.T, cfg *config.Config, name, local, remote string) *config.Config {
	t.Helper()
	ch := *cfg.Connections[0].Children[0]
	ch.Name = name
	var err error
	ch.LocalTS, err = config.ParseTSList(local)
	require.NoError(t, err)
	ch.RemoteTS, err = config.ParseTSList(remote)
	require.NoError(t, err)
	cfg.Connections[0].Children = append(cfg.Connections[0].Children, &ch)
	require.NoError(t, cfg.Validate())
	return cfg
}

// Two children naming xfrm42 share it: created with the first install,
// there while either is up, removed with the last; an interface with the
// same if_id found in place is used and left at the end.
func TestXfrmInterfaceShared(t *testing.T) {
	noLeaks(t)
	sa, sb := pairSides(t)
	sa.extraChild = xfrmi42
	a := newPeer(t, "a", withSecondChild(t, sa.config(t, "a"), "a-net2", "10.3.0.0/16", "10.4.0.0/16"))
	b := newPeer(t, "b", withSecondChild(t, sb.config(t, "b"), "b-net2", "10.4.0.0/16", "10.3.0.0/16"))
	assert.Empty(t, xfrmIfIDs(t, a.b), "nothing before the first child")
	ctx := ctxT(t, 5*time.Second)
	require.NoError(t, a.e.Initiate(ctx, "a-net"))
	assert.Equal(t, map[string]uint32{"xfrm42": 42}, xfrmIfIDs(t, a.b))
	require.NoError(t, a.e.Initiate(ctx, "a-net2"))
	kids, err := a.e.Children(t.Context())
	require.NoError(t, err)
	require.Len(t, kids, 2)
	require.NoError(t, a.e.TerminateChildSA(ctx, kids[0].ID))
	assert.Equal(t, map[string]uint32{"xfrm42": 42}, xfrmIfIDs(t, a.b), "one child still uses it")
	require.NoError(t, a.e.TerminateChildSA(ctx, kids[1].ID))
	assert.Empty(t, xfrmIfIDs(t, a.b), "removed with the last child")
	assert.Contains(t, a.logs.String(), `msg="xfrm interface created" peer=a interface=xfrm42 if_id=42`)
	assert.Contains(t, a.logs.String(), `msg="xfrm interface removed" peer=a interface=xfrm42 if_id=42`)
	require.NoError(t, a.e.Terminate(ctx, "a"))
	a.expectEmpty(t)
	b.expectEmpty(t)

	// Adopted: there before keyplane with the same if_id, left after.
	sc, sd := pairSides(t)
	sc.extraChild = xfrmi42
	c := newPeer(t, "c", sc.config(t, "c"))
	newPeer(t, "d", sd.config(t, "d"))
	cb := c.b
	require.NoError(t, cb.AddXfrmInterface(t.Context(), kernelops.XfrmInterface{Name: "xfrm42", IfID: 42}))
	require.NoError(t, c.e.Initiate(ctx, "c-net"))
	require.NoError(t, c.e.Terminate(ctx, "c"))
	c.expectEmpty(t)
	require.NoError(t, c.e.Close())
	assert.Equal(t, map[string]uint32{"xfrm42": 42}, xfrmIfIDs(t, cb), "an adopted interface stays")
	assert.Contains(t, c.logs.String(), "xfrm interface already there: used, and left in place at the end")
}

// A trap child holds its interface from start (routed traffic raises the
// acquire) until the engine closes.
func TestXfrmInterfaceTrap(t *testing.T) {
	noLeaks(t)
	st, _ := pairSides(t)
	st.extraChild, st.start = xfrmi42, "trap"
	c := newPeer(t, "c", st.config(t, "c"))
	assert.Equal(t, map[string]uint32{"xfrm42": 42}, xfrmIfIDs(t, c.b))
	require.NoError(t, c.e.Close())
	assert.Empty(t, xfrmIfIDs(t, c.b))
}

// An interface of that name with another if_id, or another interface
// with that if_id, is not used: the child fails, nothing is installed,
// the other interface stays.
func TestXfrmInterfaceTaken(t *testing.T) {
	noLeaks(t)
	for _, pre := range []kernelops.XfrmInterface{{Name: "xfrm42", IfID: 7}, {Name: "other", IfID: 42}} {
		sa, sb := pairSides(t)
		// The mark also checks that the unmarked larval SA goes back.
		sa.extraChild = xfrmi42 + "\nmark_in = 5"
		a := newPeer(t, "a", sa.config(t, "a"))
		newPeer(t, "b", sb.config(t, "b"))
		ab := a.b
		require.NoError(t, ab.AddXfrmInterface(t.Context(), pre))
		err := a.e.Initiate(ctxT(t, 5*time.Second), "a-net")
		require.Error(t, err, "%+v", pre)
		assert.Contains(t, err.Error(), "xfrm interface", "%+v", pre)
		assert.Contains(t, a.logs.String(), ErrXfrmInterfaceTaken.Error(), "%+v", pre)
		a.expectEmpty(t)
		assert.Equal(t, map[string]uint32{pre.Name: pre.IfID}, xfrmIfIDs(t, ab))
	}
}

func TestAdoptDecision(t *testing.T) {
	x := kernelops.XfrmInterface{Name: "xfrm42", IfID: 42}
	for _, tc := range []struct {
		name string
		ifs  []kernelops.Interface
		ok   bool
		msg  string
	}{
		{"same", []kernelops.Interface{{Name: "eth0"}, {Name: "xfrm42", XfrmIfID: 42}}, true, ""},
		{"other if_id", []kernelops.Interface{{Name: "xfrm42", XfrmIfID: 7}}, false, "exists with if_id 7"},
		{"not xfrm", []kernelops.Interface{{Name: "xfrm42"}}, false, "no if_id (not an xfrm interface)"},
		{"if_id elsewhere", []kernelops.Interface{{Name: "ipsec0", XfrmIfID: 42}}, false, "belongs to interface ipsec0"},
		{"not listed", []kernelops.Interface{{Name: "eth0"}}, false, "no such interface is listed"},
	} {
		err := adoptDecision(tc.ifs, x)
		if tc.ok {
			assert.NoError(t, err, tc.name)
			continue
		}
		assert.ErrorIs(t, err, ErrXfrmInterfaceTaken, tc.name)
		assert.ErrorContains(t, err, tc.msg, tc.name)
	}
}

const noXfrmiNote = "this test's dataplane makes no xfrm interfaces"

func TestXfrmInterfaceNeedsTheFacet(t *testing.T) {
	noLeaks(t)
	sa, _ := pairSides(t)
	sa.extraChild = xfrmi42
	b, err := nokernel.Open(t.Context(), kernelops.Options{})
	require.NoError(t, err)
	defer b.Close()
	_, err = New(t.Context(), Options{Backend: lacking{b, kernelops.CapXfrmInterfaces, noXfrmiNote}, Config: sa.config(t, "a")})
	require.ErrorIs(t, err, ErrFacetMissing)
	assert.ErrorIs(t, err, kernelops.ErrNotSupported)
	assert.Contains(t, err.Error(), noXfrmiNote)
	assert.Contains(t, err.Error(), "child a-net: xfrm_interface = xfrm42")
	assert.False(t, errors.Is(err, context.Canceled))
}
