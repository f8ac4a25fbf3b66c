package ike

import (
	"errors"
	"net/netip"
	"testing"
	"time"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"

	"github.com/keyplane/keyplane/ike/ikecrypto"
	"github.com/keyplane/keyplane/ike/message"
	"github.com/keyplane/keyplane/kernelops"
)

// TestWindowResync: a window taken over (HA) at synced peerNext 5
// takes, until it answers one, a request from ID 4 (answered by the old
// node, answer lost with it) to 5+resyncSpan-1 as the next; then the
// usual rules hold again.
func TestWindowResync(t *testing.T) {
	w := window{peerNext: 5, resync: true}
	for _, tc := range []struct {
		id   uint32
		want reqKind
	}{
		{3, reqOutside},
		{4, reqNew},
		{5, reqNew},
		{9, reqNew},
		{5 + resyncSpan - 1, reqNew},
		{5 + resyncSpan, reqOutside},
		{^uint32(0), reqOutside},
	} {
		assert.Equal(t, tc.want, w.classify(tc.id), "resyncing window at 5, request %d", tc.id)
	}
	w.answered(9, []byte("answer 9"))
	assert.False(t, w.resync)
	for _, tc := range []struct {
		id   uint32
		want reqKind
	}{{9, reqRetransmit}, {10, reqNew}, {11, reqOutside}, {4, reqOutside}} {
		assert.Equal(t, tc.want, w.classify(tc.id), "after answering 9, request %d", tc.id)
	}
}

// TestRestoreRollsBack: a takeover whose second child cannot be restored
// (no such child here) leaves nothing installed and no IKE SA, with a
// *RestoreError naming the child; the same state without it resumes,
// the outbound SA past the margin.
func TestRestoreRollsBack(t *testing.T) {
	sa, sb := pairSides(t)
	p := newPeer(t, "b", sb.config(t, "b"))
	lo := netip.MustParseAddr("127.0.0.1")
	st := &HAIKE{Conn: "b", SPIi: 0x1111111111111111, SPIr: 0x2222222222222222,
		Local: netip.AddrPortFrom(lo, sb.port), Remote: netip.AddrPortFrom(lo, sa.port),
		Suite:  ikecrypto.IKESuite{Encr: message.EncrAESGCM16, EncrKeyBits: 128, PRF: message.PRFHMACSHA2256, DH: message.DHCurve25519},
		Keys:   HAIKEKeys{SKd: make([]byte, 32), SKei: make([]byte, 20), SKer: make([]byte, 20), SKpi: make([]byte, 32), SKpr: make([]byte, 32)},
		NextID: 3, PeerNext: 4, PeerIDType: uint8(message.IDFQDN), PeerID: []byte("a.example.org")}
	child := func(name string, in, out uint32) *HAChild {
		return &HAChild{Name: name, ReqID: kernelops.DefaultReqIDMin + 1, Mode: kernelops.ModeTunnel, InSPI: in, OutSPI: out,
			Local: lo, Remote: lo,
			LocalTS:  []HATS{{Start: netip.MustParseAddr("10.2.0.0"), End: netip.MustParseAddr("10.2.255.255")}},
			RemoteTS: []HATS{{Start: netip.MustParseAddr("10.1.0.0"), End: netip.MustParseAddr("10.1.255.255")}},
			Suite:    ikecrypto.ChildSuite{Encr: message.EncrAESGCM16, EncrKeyBits: 128},
			Keys:     HAChildKeys{EncrI: make([]byte, 20), EncrR: make([]byte, 20)}}
	}
	err := p.e.Restore(ctxT(t, 5*time.Second), st, []*HAChild{child("b-net", 0xc0000001, 0xc0000002), child("nope", 0xc0000003, 0xc0000004)},
		RestoreOptions{SeqMargin: 100})
	require.ErrorIs(t, err, ErrRestore)
	var re *RestoreError
	require.True(t, errors.As(err, &re))
	assert.Equal(t, "nope", re.Child)
	n := 0
	for _, err := range p.b.SAs(ctxT(t, 5*time.Second)) {
		require.NoError(t, err)
		n++
	}
	assert.Zero(t, n, "SAs left installed after a failed restore")
	sas, err := p.e.IKESAs(ctxT(t, 5*time.Second))
	require.NoError(t, err)
	assert.Empty(t, sas)

	c := child("b-net", 0xc0000001, 0xc0000002)
	c.Est = time.Now().Add(-time.Minute).Truncate(time.Second)
	require.NoError(t, p.e.Restore(ctxT(t, 5*time.Second), st, []*HAChild{c}, RestoreOptions{SeqMargin: 100}))
	sas, err = p.e.IKESAs(ctxT(t, 5*time.Second))
	require.NoError(t, err)
	require.Len(t, sas, 1)
	assert.Equal(t, IKEEstablished, sas[0].State)
	peers := 0
	require.NoError(t, p.e.call(t.Context(), func() { peers = len(p.e.byPeer[keyOf(message.IDFQDN, []byte("A.example.org"))]) }))
	assert.Equal(t, 1, peers, "the restored SA is indexed by its peer's identity (unique, INITIAL_CONTACT)")
	require.Len(t, sas[0].Children, 1)
	out, err := p.b.GetSyncState(ctxT(t, 5*time.Second), kernelops.SAID{Src: lo, Dst: lo, SPI: 0xc0000002, Proto: kernelops.ProtoESP})
	require.NoError(t, err)
	assert.Equal(t, uint64(100), out.Replay.OSeq)
	assert.True(t, c.Est.Equal(out.AddTime), "the outbound SA dates from %v, not the first install %v", out.AddTime, c.Est)
	// The same SAs again: the SPI is taken.
	require.ErrorIs(t, p.e.Restore(ctxT(t, 5*time.Second), st, nil, RestoreOptions{}), ErrRestore)
	// An unknown connection.
	st.Conn = "nope"
	st.SPIr++
	require.ErrorIs(t, p.e.Restore(ctxT(t, 5*time.Second), st, nil, RestoreOptions{}), ErrRestore)
}
