package ike

import (
	"encoding/binary"
	"errors"
	"fmt"
	"log/slog"
	"net"
	"net/netip"
	"strings"
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

// TestRestoreRollsBack: a child that cannot be restored (no such child
// here; its inbound SPI taken by another) is rolled back alone — nothing
// of it stays in the dataplane — and named in a *ChildrenError; the IKE
// SA and the other child resume, the outbound SA past the margin and
// dated from the first install. An IKE SA that cannot be restored (its
// SPI taken, an unknown connection) leaves nothing.
func TestRestoreRollsBack(t *testing.T) {
	sa, sb := pairSides(t)
	p := newPeer(t, "b", sb.config(t, "b"))
	lo := netip.MustParseAddr("127.0.0.1")
	// The peer's address: the Delete for the children not restored.
	pc, err := net.ListenUDP("udp4", net.UDPAddrFromAddrPort(netip.AddrPortFrom(lo, sa.port)))
	require.NoError(t, err)
	defer pc.Close()
	st := haTestIKE(sb, sa)
	c := haTestChild("b-net", 0xc0000001, 0xc0000002)
	c.Est = time.Now().Add(-time.Minute).Truncate(time.Second)
	err = p.e.Restore(ctxT(t, 5*time.Second), st, []*HAChild{c, haTestChild("nope", 0xc0000003, 0xc0000004),
		haTestChild("b-net", 0xc0000001, 0xc0000005)}, RestoreOptions{SeqMargin: 100})
	require.ErrorIs(t, err, ErrRestore)
	var ce *ChildrenError
	require.True(t, errors.As(err, &ce), "%v", err)
	require.Len(t, ce.Errs, 2)
	assert.Equal(t, "nope", ce.Errs[0].Child)
	assert.Equal(t, "b-net", ce.Errs[1].Child)
	assert.ErrorIs(t, ce.Errs[1], kernelops.ErrExists)
	require.NoError(t, pc.SetReadDeadline(time.Now().Add(5*time.Second)))
	buf := make([]byte, 2048)
	nr, _, err := pc.ReadFromUDPAddrPort(buf)
	require.NoError(t, err, "the peer is told about the children not restored")
	require.GreaterOrEqual(t, nr, 28)
	assert.Equal(t, uint64(0x1111111111111111), binary.BigEndian.Uint64(buf[0:]))
	assert.Equal(t, byte(message.INFORMATIONAL), buf[18], "exchange type")
	assert.Equal(t, uint32(3), binary.BigEndian.Uint32(buf[20:]), "at the synced message ID")
	assert.Contains(t, p.logs.String(), "INFORMATIONAL request #3 from responder, SPIs 1111111111111111_i 2222222222222222_r [ D ]")
	var spis []uint32
	for e, err := range p.b.SAs(ctxT(t, 5*time.Second)) {
		require.NoError(t, err)
		spis = append(spis, e.SA.ID.SPI)
	}
	assert.ElementsMatch(t, []uint32{0xc0000001, 0xc0000002}, spis, "only the restored child's SAs are installed")
	sas, err := p.e.IKESAs(ctxT(t, 5*time.Second))
	require.NoError(t, err)
	require.Len(t, sas, 1)
	assert.Equal(t, IKEEstablished, sas[0].State)
	require.Len(t, sas[0].Children, 1)
	peers := 0
	require.NoError(t, p.e.call(t.Context(), func() { peers = p.e.peerIndexed(message.IDFQDN, "A.example.org") }))
	assert.Equal(t, 1, peers, "the restored SA is indexed by its peer's identity (unique, INITIAL_CONTACT)")
	out, err := p.b.GetSyncState(ctxT(t, 5*time.Second), kernelops.SAID{Src: lo, Dst: lo, SPI: 0xc0000002, Proto: kernelops.ProtoESP})
	require.NoError(t, err)
	assert.Equal(t, uint64(100), out.Replay.OSeq)
	assert.True(t, c.Est.Equal(out.AddTime), "the outbound SA dates from %v, not the first install %v", out.AddTime, c.Est)
	// The same IKE SA again: the SPI is taken.
	err = p.e.Restore(ctxT(t, 5*time.Second), st, nil, RestoreOptions{})
	require.ErrorIs(t, err, ErrRestore)
	var re *RestoreError
	require.True(t, errors.As(err, &re))
	assert.Empty(t, re.Child)
	// An unknown connection.
	st.Conn = "nope"
	st.SPIr++
	require.ErrorIs(t, p.e.Restore(ctxT(t, 5*time.Second), st, []*HAChild{haTestChild("b-net", 0xc0000011, 0xc0000012)}, RestoreOptions{}), ErrRestore)
	n := 0
	for _, err := range p.b.SAs(ctxT(t, 5*time.Second)) {
		require.NoError(t, err)
		n++
	}
	assert.Equal(t, 2, n, "SAs left installed after a refused IKE SA")
}

// TestRestoreBatches: a takeover of more children than one batch holds,
// each with its own selectors, some failing at each step (an unknown
// child, an SA that exists, no selector the dataplane can express after
// its SAs went in): the others are all installed with their policies
// and advanced sequence numbers, each failed one is gone whole.
func TestRestoreBatches(t *testing.T) {
	sa, sb := pairSides(t)
	p := newPeer(t, "b", sb.config(t, "b"), withLogLevel(slog.LevelInfo))
	lo := netip.MustParseAddr("127.0.0.1")
	const n = 2*restoreBatch + 44
	var children []*HAChild
	for i := range n {
		c := haTestChild("b-net", 0xc1000000+uint32(i), 0xc2000000+uint32(i))
		a := netip.AddrFrom4([4]byte{10, 2, byte(i >> 8), byte(i)})
		r := netip.AddrFrom4([4]byte{10, 1, byte(i >> 8), byte(i)})
		c.LocalTS, c.RemoteTS = []HATS{{Start: a, End: a}}, []HATS{{Start: r, End: r}}
		c.Est = time.Now().Add(-time.Minute)
		children = append(children, c)
	}
	children[10].Name = "nope"
	children[restoreBatch+3].InSPI = children[restoreBatch+2].InSPI // exists by then
	children[2*restoreBatch+1].LocalTS = nil
	// The last synced replay state of two children: their SAs are
	// added with it (SA.Sync).
	synced := map[kernelops.SAID]kernelops.ReplayState{
		{Src: lo, Dst: lo, SPI: children[1].OutSPI, Proto: kernelops.ProtoESP}:             {OSeq: 5000},
		{Src: lo, Dst: lo, SPI: children[1].InSPI, Proto: kernelops.ProtoESP}:              {Seq: 7000, Bitmap: []uint32{0x3}},
		{Src: lo, Dst: lo, SPI: children[restoreBatch+7].InSPI, Proto: kernelops.ProtoESP}: {Seq: 12, Bitmap: []uint32{0x1}},
	}
	replay := func(id kernelops.SAID) (kernelops.ReplayState, bool) { r, ok := synced[id]; return r, ok }
	var stats RestoreStats
	err := p.e.Restore(ctxT(t, 30*time.Second), haTestIKE(sb, sa), children, RestoreOptions{SeqMargin: 1000, Replay: replay, Stats: &stats})
	var ce *ChildrenError
	require.True(t, errors.As(err, &ce), "%v", err)
	require.Len(t, ce.Errs, 3)
	assert.Equal(t, RestoreStats{IKESAs: 1, Children: n - 3, Failed: 3, Batches: 3}, RestoreStats{
		IKESAs: stats.IKESAs, Children: stats.Children, Failed: stats.Failed, Batches: stats.Batches})
	assert.Positive(t, stats.Total)
	assert.Positive(t, stats.Last)
	assert.LessOrEqual(t, stats.Last, stats.Total)
	// One log line for the children at info, not one each.
	logs := p.logs.String()
	assert.Equal(t, 0, strings.Count(logs, "CHILD SA installed"), "per-child lines at info")
	assert.Contains(t, logs, fmt.Sprintf("CHILD SAs taken over (HA)\" peer=b ike=b"))
	assert.Contains(t, logs, fmt.Sprintf("children=%d failed=3", n-3))
	sas := 0
	for e, err := range p.b.SAs(ctxT(t, 5*time.Second)) {
		require.NoError(t, err)
		sas++
		if e.SA.ID.SPI == children[restoreBatch+3].OutSPI || e.SA.ID.SPI == children[2*restoreBatch+1].InSPI ||
			e.SA.ID.SPI == children[2*restoreBatch+1].OutSPI {
			t.Errorf("SA %s of a failed child left installed", e.SA.ID)
		}
	}
	assert.Equal(t, 2*(n-3), sas)
	pols := 0
	for _, err := range p.b.Policies(ctxT(t, 5*time.Second)) {
		require.NoError(t, err)
		pols++
	}
	assert.Equal(t, 3*(n-3), pols, "out, in and fwd policies of each restored child")
	for _, i := range []int{0, restoreBatch, n - 1} {
		out, err := p.b.GetSyncState(ctxT(t, 5*time.Second), kernelops.SAID{Src: lo, Dst: lo, SPI: children[i].OutSPI, Proto: kernelops.ProtoESP})
		require.NoError(t, err)
		assert.Equal(t, uint64(1000), out.Replay.OSeq, "child %d", i)
		assert.True(t, children[i].Est.Truncate(time.Second).Equal(out.AddTime.Truncate(time.Second)), "child %d dates from %v, not its first install %v", i, out.AddTime, children[i].Est)
	}
	for id, want := range synced {
		got, err := p.b.GetSyncState(ctxT(t, 5*time.Second), id)
		require.NoError(t, err)
		if want.OSeq > 0 {
			assert.Equal(t, want.OSeq+1000, got.Replay.OSeq, "%s: the synced sequence number and the margin", id)
			continue
		}
		assert.Equal(t, want.Seq, got.Replay.Seq, "%s: inbound replay state", id)
		assert.Equal(t, want.Bitmap[0], got.Replay.Bitmap[0], "%s: inbound replay window", id)
	}
	got, err := p.e.IKESAs(ctxT(t, 5*time.Second))
	require.NoError(t, err)
	require.Len(t, got, 1)
	assert.Len(t, got[0].Children, n-3)
	// Each restored child holds its reqid in the table, as an installed
	// one does (reqidindex.go), and the table agrees with them.
	held, ierr := 0, ""
	require.NoError(t, p.e.call(t.Context(), func() {
		for _, sa := range p.e.sas {
			for _, ch := range sa.children {
				if ch.reqidHeld {
					held++
				}
			}
		}
		ierr = p.e.reqidIndexErr()
	}))
	assert.Equal(t, n-3, held, "restored children holding their reqid")
	assert.Empty(t, ierr)
}

func haTestIKE(sb, sa side) *HAIKE {
	lo := netip.MustParseAddr("127.0.0.1")
	return &HAIKE{Conn: "b", SPIi: 0x1111111111111111, SPIr: 0x2222222222222222,
		Local: netip.AddrPortFrom(lo, sb.port), Remote: netip.AddrPortFrom(lo, sa.port),
		Suite:  ikecrypto.IKESuite{Encr: message.EncrAESGCM16, EncrKeyBits: 128, PRF: message.PRFHMACSHA2256, DH: message.DHCurve25519},
		Keys:   HAIKEKeys{SKd: make([]byte, 32), SKei: make([]byte, 20), SKer: make([]byte, 20), SKpi: make([]byte, 32), SKpr: make([]byte, 32)},
		NextID: 3, PeerNext: 4, PeerIDType: uint8(message.IDFQDN), PeerID: []byte("a.example.org")}
}

func haTestChild(name string, in, out uint32) *HAChild {
	lo := netip.MustParseAddr("127.0.0.1")
	return &HAChild{Name: name, ReqID: kernelops.DefaultReqIDMin + 1, Mode: kernelops.ModeTunnel, InSPI: in, OutSPI: out,
		Local: lo, Remote: lo,
		LocalTS:  []HATS{{Start: netip.MustParseAddr("10.2.0.0"), End: netip.MustParseAddr("10.2.255.255")}},
		RemoteTS: []HATS{{Start: netip.MustParseAddr("10.1.0.0"), End: netip.MustParseAddr("10.1.255.255")}},
		Suite:    ikecrypto.ChildSuite{Encr: message.EncrAESGCM16, EncrKeyBits: 128},
		Keys:     HAChildKeys{EncrI: make([]byte, 20), EncrR: make([]byte, 20)}}
}

// sinkCalls records what a takeover tells a state sink.
type sinkCalls struct {
	changed  []uint32 // ChildChanged, by inbound SPI
	restored []uint32 // ChildRestored
	ike      int
}

func (s *sinkCalls) IKEChanged(*HAIKE)        { s.ike++ }
func (s *sinkCalls) IKEGone(uint64)           {}
func (s *sinkCalls) ChildChanged(st *HAChild) { s.changed = append(s.changed, st.InSPI) }
func (s *sinkCalls) ChildGone(uint32)         {}
func (s *restoreSinkCalls) ChildRestored(spi uint32, in, out kernelops.SAID) {
	s.restored = append(s.restored, spi)
	if in.SPI != spi || out.Proto != kernelops.ProtoESP {
		s.bad = append(s.bad, fmt.Sprintf("child %08x: SAs %s, %s", spi, in, out))
	}
}

// restoreSinkCalls is sinkCalls with ChildRestored (a RestoreSink).
type restoreSinkCalls struct {
	sinkCalls
	bad []string
}

// TestRestoreSink: a RestoreSink is told of each child restored from its
// record as it stands (ChildRestored: nothing to write again) and gets
// the record of one that changed here (no first install time: dated
// now; other selectors than the record's reqid holder: another reqid);
// a plain StateSink gets every child's record; a child that failed is
// reported to neither.
func TestRestoreSink(t *testing.T) {
	for _, withRestore := range []bool{true, false} {
		t.Run(fmt.Sprintf("RestoreSink=%v", withRestore), func(t *testing.T) {
			sa, sb := pairSides(t)
			p := newPeer(t, "b", sb.config(t, "b"))
			var calls *sinkCalls
			var rsink *restoreSinkCalls
			var sink StateSink
			if withRestore {
				rsink = &restoreSinkCalls{}
				calls, sink = &rsink.sinkCalls, rsink
			} else {
				calls = &sinkCalls{}
				sink = calls
			}
			require.NoError(t, p.e.SetStateSink(t.Context(), sink))
			est := time.Now().Add(-time.Minute)
			a := haTestChild("b-net", 0xc0000001, 0xc0000002)
			b := haTestChild("b-net", 0xc0000003, 0xc0000004) // no first install time
			c := haTestChild("nope", 0xc0000005, 0xc0000006)
			d := haTestChild("b-net", 0xc0000007, 0xc0000008) // the same reqid as a, other selectors
			a.Est, d.Est = est, est
			d.LocalTS = []HATS{{Start: netip.MustParseAddr("10.2.1.0"), End: netip.MustParseAddr("10.2.1.255")}}
			err := p.e.Restore(ctxT(t, 5*time.Second), haTestIKE(sb, sa), []*HAChild{a, b, c, d}, RestoreOptions{SeqMargin: 10})
			var ce *ChildrenError
			require.True(t, errors.As(err, &ce), "%v", err)
			require.Len(t, ce.Errs, 1)
			if withRestore {
				assert.Equal(t, []uint32{0xc0000001}, calls.restored, "restored as recorded")
				assert.Equal(t, []uint32{0xc0000003, 0xc0000007}, calls.changed, "changed here")
				assert.Empty(t, rsink.bad)
			} else {
				assert.Equal(t, []uint32{0xc0000001, 0xc0000003, 0xc0000007}, calls.changed)
			}
			assert.Positive(t, calls.ike)
			require.NoError(t, p.e.SetStateSink(t.Context(), nil))
		})
	}
}
