package ike

import (
	"bytes"
	"net"
	"net/netip"
	"strings"
	"testing"
	"time"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"

	"github.com/keyplane/keyplane/ike/message"
	"github.com/keyplane/keyplane/kernelops"
	"github.com/keyplane/keyplane/kernelops/clock"
)

var (
	mobOld  = netip.MustParseAddr("127.0.0.2")
	mobNew  = netip.MustParseAddr("127.0.0.3")
	mobResp = netip.MustParseAddr("127.0.0.1")
)

// mobikePair is an initiator a listening on every address, whose model
// routes the responder b (127.0.0.1) through eth1 with addrs (the first
// is its source), and b. bConn is extra connection settings for b.
type mobikePair struct {
	clk      *clock.Fake
	a, b     *peer
	ta, tb   *tapBackend
	as, bs   side
	evA, evB *Subscription
}

func newMobikePair(t *testing.T, eth1, bConn string) *mobikePair {
	t.Helper()
	return newMobikePairHiding(t, eth1, bConn, 0, 0)
}

// newMobikePairHiding is newMobikePair with the capabilities hideA and
// hideB taken from a's and b's dataplanes.
func newMobikePairHiding(t *testing.T, eth1, bConn string, hideA, hideB kernelops.Cap) *mobikePair {
	t.Helper()
	return newMobikePairNet(t, "eth1="+eth1, "127.0.0.1/32 dev eth1", bConn, hideA, hideB)
}

// newMobikePairNet is newMobikePairHiding with a's interfaces and routes
// as the nokernel model's parameters.
func newMobikePairNet(t *testing.T, ifaces, routes, bConn string, hideA, hideB kernelops.Cap) *mobikePair {
	t.Helper()
	as, bs := pairSides(t)
	as.addr, as.remoteAddr = "%any", mobResp.String()
	bs.addr, bs.remoteAddr = mobResp.String(), "%any"
	bs.extraConn = bConn
	mp := &mobikePair{clk: clock.NewFake(epoch), as: as, bs: bs}
	var tapA, tapB peerOpt
	mp.ta, tapA = tap(mp.clk, hideA)
	mp.tb, tapB = tap(mp.clk, hideB)
	mp.a = newPeer(t, "a", as.config(t, "a"), withClock(mp.clk), tapA, withOptions(kernelops.Options{
		Params: map[string]string{"interfaces": ifaces, "routes": routes}}))
	// The model routes addresses of lo via lo: without 127.0.0.1/8 there,
	// the responder is reached through eth1, from eth1's address.
	require.NoError(t, mp.a.b.Net().RemoveAddress("lo", netip.MustParsePrefix("127.0.0.1/8")))
	mp.b = newPeer(t, "b", bs.config(t, "b"), withClock(mp.clk), tapB)
	mp.evA, mp.evB = mp.a.e.Subscribe(), mp.b.e.Subscribe()
	t.Cleanup(func() { mp.evA.Close(); mp.evB.Close() })
	require.NoError(t, mp.a.e.Initiate(ctxT(t, 10*time.Second), "a-net"))
	return mp
}

// waitState waits for an event of kind "ike" in state on sub.
func waitState(t *testing.T, sub *Subscription, state string) Event {
	t.Helper()
	deadline := time.After(5 * time.Second)
	for {
		select {
		case ev := <-sub.C:
			if ev.Kind == "ike" && ev.State == state {
				return ev
			}
		case <-deadline:
			t.Fatalf("no ike %s event", state)
			return Event{}
		}
	}
}

// endpoints are what a peer's listing and dataplane say about its one
// IKE SA and child.
type endpoints struct {
	ikeLocal, ikeRemote netip.AddrPort
	spis                string
	spiIn, spiOut       string
	localTS, remoteTS   string
	childLocal          string
	childRemote         string
}

func endpointsOf(t *testing.T, p *peer) endpoints {
	t.Helper()
	sas := p.sas(t)
	require.Len(t, sas, 1)
	s := sas[0]
	require.Len(t, s.Children, 1)
	c := s.Children[0]
	return endpoints{ikeLocal: netip.MustParseAddrPort(s.Local), ikeRemote: netip.MustParseAddrPort(s.Remote),
		spis: s.SPIi + " " + s.SPIr, spiIn: c.SPIIn, spiOut: c.SPIOut, localTS: c.LocalTS, remoteTS: c.RemoteTS,
		childLocal: c.Local, childRemote: c.Remote}
}

// dataplaneBetween checks that every SA and every template of the peer's
// model joins local and remote, and counts them.
func dataplaneBetween(t *testing.T, p *peer, local, remote netip.Addr) (sas, tmpls int) {
	t.Helper()
	pair := func(a, b netip.Addr) bool { return (a == local && b == remote) || (a == remote && b == local) }
	for s, err := range p.b.SAs(t.Context()) {
		require.NoError(t, err)
		assert.True(t, pair(s.ID.Src, s.ID.Dst), "%s: SA %s not between %s and %s", p.name, s.ID, local, remote)
		sas++
	}
	for pol, err := range p.b.Policies(t.Context()) {
		require.NoError(t, err)
		for _, tm := range pol.Templates {
			assert.True(t, pair(tm.Src, tm.Dst), "%s: template %s -> %s not between %s and %s", p.name, tm.Src, tm.Dst, local, remote)
			tmpls++
		}
	}
	return sas, tmpls
}

// TestMOBIKEMove: the initiator's address is removed while another
// address of its routes the peer: the IKE SA moves there with
// UPDATE_SA_ADDRESSES sent from the new address, the responder follows
// and answers there, and both ends' children migrate — same SPIs, same
// selectors, SAs and policy templates on the new addresses.
func TestMOBIKEMove(t *testing.T) {
	noLeaks(t)
	mp := newMobikePair(t, "127.0.0.2/32+127.0.0.3/32", "")
	beforeA, beforeB := endpointsOf(t, mp.a), endpointsOf(t, mp.b)
	require.Equal(t, mobOld, beforeA.ikeLocal.Addr())
	// RFC 4555 §3.2: on the NAT-T ports, without a NAT.
	require.Equal(t, mp.bs.natPort, beforeA.ikeRemote.Port())
	require.Equal(t, mobOld, beforeB.ikeRemote.Addr())
	sasA, tmplA := dataplaneBetween(t, mp.a, mobOld, mobResp)
	sasB, tmplB := dataplaneBetween(t, mp.b, mobResp, mobOld)
	require.Equal(t, [4]int{2, 3, 2, 3}, [4]int{sasA, tmplA, sasB, tmplB})
	for _, p := range []*peer{mp.a, mp.b} {
		require.NoError(t, p.e.call(t.Context(), func() {
			for _, sa := range p.e.sas {
				assert.True(t, sa.mob.active, "%s: MOBIKE not active", p.name)
				assert.False(t, sa.natAny(), "%s: a NAT seen on loopback", p.name)
			}
		}))
	}

	markA, markB := mp.ta.mark(), mp.tb.mark()
	require.NoError(t, mp.a.b.Net().RemoveAddress("eth1", netip.MustParsePrefix("127.0.0.2/32")))
	waitState(t, mp.evA, "mobike-update")
	movedA := waitState(t, mp.evA, "moved")
	movedB := waitState(t, mp.evB, "moved")
	t.Logf("a: %s; b: %s", movedA.Detail, movedB.Detail)
	assert.NotZero(t, movedA.IKEID)
	assert.NotZero(t, movedB.IKEID)

	afterA, afterB := endpointsOf(t, mp.a), endpointsOf(t, mp.b)
	assert.Equal(t, netip.AddrPortFrom(mobNew, beforeA.ikeLocal.Port()), afterA.ikeLocal)
	assert.Equal(t, beforeA.ikeRemote, afterA.ikeRemote)
	assert.Equal(t, netip.AddrPortFrom(mobNew, beforeA.ikeLocal.Port()), afterB.ikeRemote)
	for _, x := range []struct {
		name          string
		before, after endpoints
		local, remote netip.Addr
	}{{"a", beforeA, afterA, mobNew, mobResp}, {"b", beforeB, afterB, mobResp, mobNew}} {
		assert.Equal(t, x.before.spis, x.after.spis, "%s: IKE SPIs", x.name)
		assert.Equal(t, [2]string{x.before.spiIn, x.before.spiOut}, [2]string{x.after.spiIn, x.after.spiOut}, "%s: child SPIs", x.name)
		assert.Equal(t, [2]string{x.before.localTS, x.before.remoteTS}, [2]string{x.after.localTS, x.after.remoteTS}, "%s: selectors", x.name)
		assert.Equal(t, [2]string{x.local.String(), x.remote.String()}, [2]string{x.after.childLocal, x.after.childRemote}, "%s: child endpoints", x.name)
	}
	sasA, tmplA = dataplaneBetween(t, mp.a, mobNew, mobResp)
	sasB, tmplB = dataplaneBetween(t, mp.b, mobResp, mobNew)
	assert.Equal(t, [4]int{2, 3, 2, 3}, [4]int{sasA, tmplA, sasB, tmplB})

	// On the wire: the UPDATE left from the new address (nothing from the
	// old one), the answer went to it.
	for _, m := range mp.ta.since(markA) {
		assert.NotEqual(t, mobOld, m.local.Addr(), "a sent from the removed address: %+v", m)
	}
	assert.Equal(t, 1, mp.ta.requests(markA, message.INFORMATIONAL, func(m sentMsg) bool { return m.local.Addr() == mobNew }))
	answered := 0
	for _, m := range mp.tb.since(markB) {
		if m.response && m.exch == message.INFORMATIONAL {
			assert.Equal(t, netip.AddrPortFrom(mobNew, beforeA.ikeLocal.Port()), m.remote)
			answered++
		}
	}
	assert.Equal(t, 1, answered)

	// The tunnel still works: a liveness check after the move is
	// answered, and the IKE SA stays.
	require.NoError(t, mp.a.e.call(t.Context(), func() {
		for _, sa := range mp.a.e.sas {
			sa.sendLiveness()
		}
	}))
	settle(t, mp.a, mp.b)
	assert.Equal(t, 1, established(t, mp.a))
}

// waitSuspended waits until a's one IKE SA is suspended.
func (mp *mobikePair) waitSuspended(t *testing.T) {
	t.Helper()
	waitFor(t, "the SA suspended", 3*time.Second, func() bool {
		var q bool
		mp.a.e.call(t.Context(), func() {
			for _, sa := range mp.a.e.sas {
				q = sa.quiet()
			}
		})
		return q
	})
}

// waitMovedKeeping waits for both ends' "moved" events and checks that
// a's IKE SA is on mobNew (and b sees it there) with the SPIs of before.
func (mp *mobikePair) waitMovedKeeping(t *testing.T, before endpoints) {
	t.Helper()
	waitState(t, mp.evA, "moved")
	waitState(t, mp.evB, "moved")
	after, afterB := endpointsOf(t, mp.a), endpointsOf(t, mp.b)
	assert.Equal(t, mobNew, after.ikeLocal.Addr())
	assert.Equal(t, mobNew, afterB.ikeRemote.Addr())
	assert.Equal(t, before.spis, after.spis)
	assert.Equal(t, [2]string{before.spiIn, before.spiOut}, [2]string{after.spiIn, after.spiOut})
}

// TestMOBIKEAfterSuspension: the address goes and no other routes the
// peer: the SA is suspended as without MOBIKE, nothing is sent; when an
// address that routes the peer appears, the SA moves to it at once.
func TestMOBIKEAfterSuspension(t *testing.T) {
	noLeaks(t)
	mp := newMobikePair(t, "127.0.0.2/32", "")
	before := endpointsOf(t, mp.a)
	mark := mp.ta.mark()
	require.NoError(t, mp.a.b.Net().RemoveAddress("eth1", netip.MustParsePrefix("127.0.0.2/32")))
	mp.waitSuspended(t)
	step(t, mp.clk, time.Minute, 5*time.Second, mp.a, mp.b)
	assert.Empty(t, mp.ta.since(mark), "a suspended SA sent")
	assert.Equal(t, 1, established(t, mp.a))

	require.NoError(t, mp.a.b.Net().AddAddress("eth1", netip.MustParsePrefix("127.0.0.3/32")))
	mp.waitMovedKeeping(t, before)
	dataplaneBetween(t, mp.a, mobNew, mobResp)
	dataplaneBetween(t, mp.b, mobResp, mobNew)
	require.NoError(t, mp.a.e.call(t.Context(), func() {
		for _, sa := range mp.a.e.sas {
			assert.False(t, sa.quiet(), "still suspended after the move")
		}
	}))
}

// TestMOBIKEAfterRouteChange: the address goes while the route to the
// peer still names it as source (Linux reports an address's removal
// before it drops the routes through it); the SA is suspended, and when
// that route goes and another routes the peer from another address, the
// SA moves there. TestVMMobike met this race against the real kernel.
func TestMOBIKEAfterRouteChange(t *testing.T) {
	noLeaks(t)
	mp := newMobikePairNet(t, "eth1=127.0.0.2/32;eth2=127.0.0.3/32",
		"127.0.0.1/32 dev eth1 src 127.0.0.2;127.0.0.1/32 dev eth2", "", 0, 0)
	before := endpointsOf(t, mp.a)
	require.Equal(t, mobOld, before.ikeLocal.Addr())
	require.NoError(t, mp.a.b.Net().RemoveAddress("eth1", netip.MustParsePrefix("127.0.0.2/32")))
	mp.waitSuspended(t)
	require.NoError(t, mp.a.b.Net().DeleteRoute(netip.MustParsePrefix("127.0.0.1/32"), "eth1"))
	mp.waitMovedKeeping(t, before)
	require.NoError(t, mp.a.e.call(t.Context(), func() {
		assert.Empty(t, mp.a.e.moveWait, "the moved SA still waits for a route change")
	}))
}

// TestMOBIKECookie2Mismatch: an answer to UPDATE_SA_ADDRESSES that does
// not echo our COOKIE2 is refused: the initiator's children stay where
// they were.
func TestMOBIKECookie2Mismatch(t *testing.T) {
	noLeaks(t)
	mp := newMobikePair(t, "127.0.0.2/32+127.0.0.3/32", "")
	require.NoError(t, mp.b.e.call(t.Context(), func() {
		mp.b.e.rewriteResponse = func(req *message.Message, ps []message.Payload) []message.Payload {
			for i, p := range ps {
				if n, ok := p.(*message.Notify); ok && n.NotifyType == message.COOKIE2 {
					ps[i] = &message.Notify{NotifyType: message.COOKIE2, Data: bytes.Repeat([]byte{0xee}, len(n.Data))}
				}
			}
			return ps
		}
	}))
	require.NoError(t, mp.a.b.Net().RemoveAddress("eth1", netip.MustParsePrefix("127.0.0.2/32")))
	ev := waitState(t, mp.evA, "mobike-refused")
	assert.Equal(t, "COOKIE2 mismatch", ev.Reason)
	after := endpointsOf(t, mp.a)
	assert.Equal(t, [2]string{mobOld.String(), mobResp.String()}, [2]string{after.childLocal, after.childRemote}, "children moved on a bad echo")
	dataplaneBetween(t, mp.a, mobOld, mobResp)
	assert.Contains(t, mp.a.logText(), "does not echo our COOKIE2")
}

// TestMOBIKENotNegotiated: the responder has mobike = no, so it does
// not answer MOBIKE_SUPPORTED: the initiator sends no
// UPDATE_SA_ADDRESSES when its address goes, though another exists; its
// SA is suspended as without MOBIKE.
func TestMOBIKENotNegotiated(t *testing.T) {
	noLeaks(t)
	mp := newMobikePair(t, "127.0.0.2/32+127.0.0.3/32", "mobike = no")
	require.NoError(t, mp.a.e.call(t.Context(), func() {
		for _, sa := range mp.a.e.sas {
			assert.True(t, sa.mob.sent)
			assert.False(t, sa.mob.active)
		}
	}))
	mark := mp.ta.mark()
	require.NoError(t, mp.a.b.Net().RemoveAddress("eth1", netip.MustParsePrefix("127.0.0.2/32")))
	step(t, mp.clk, 30*time.Second, 5*time.Second, mp.a, mp.b)
	assert.Empty(t, mp.ta.since(mark), "sent without MOBIKE after the address went")
	after := endpointsOf(t, mp.a)
	assert.Equal(t, mobOld, after.ikeLocal.Addr())
	dataplaneBetween(t, mp.a, mobOld, mobResp)
	assert.NotContains(t, mp.a.logText(), "MOBIKE: local address gone")
}

// TestMOBIKEOldUpdate: after the responder followed the peer, a copy of
// the same UPDATE_SA_ADDRESSES arriving late from the old address is
// answered there but does not move the SA back.
func TestMOBIKEOldUpdate(t *testing.T) {
	noLeaks(t)
	mp := newMobikePair(t, "127.0.0.2/32+127.0.0.3/32", "")
	var update []byte
	mp.ta.mu.Lock()
	mp.ta.keep = func(m sentMsg, p []byte) {
		if !m.response && m.exch == message.INFORMATIONAL && m.local.Addr() == mobNew && update == nil {
			update = append([]byte(nil), p...)
		}
	}
	mp.ta.mu.Unlock()
	require.NoError(t, mp.a.b.Net().RemoveAddress("eth1", netip.MustParsePrefix("127.0.0.2/32")))
	waitState(t, mp.evB, "moved")
	waitState(t, mp.evA, "moved")
	mp.ta.mu.Lock()
	replay := update
	mp.ta.mu.Unlock()
	require.NotNil(t, replay)

	mark := mp.tb.mark()
	c, err := net.ListenUDP("udp4", &net.UDPAddr{IP: mobOld.AsSlice()})
	require.NoError(t, err)
	defer c.Close()
	// On the NAT-T port: after the non-ESP marker.
	_, err = c.WriteToUDP(append(make([]byte, 4), replay...), &net.UDPAddr{IP: mobResp.AsSlice(), Port: int(mp.bs.natPort)})
	require.NoError(t, err)
	waitFor(t, "b's answer to the old copy", 3*time.Second, func() bool {
		for _, m := range mp.tb.since(mark) {
			if m.response && m.remote.Addr() == mobOld {
				return true
			}
		}
		return false
	})
	settle(t, mp.a, mp.b)
	after := endpointsOf(t, mp.b)
	assert.Equal(t, mobNew, after.ikeRemote.Addr(), "b moved back")
	assert.Equal(t, mobNew.String(), after.childRemote)
	dataplaneBetween(t, mp.b, mobResp, mobNew)
	assert.False(t, strings.Contains(mp.b.logText(), "peer endpoint changed"), "b followed the old copy")
}

// newerMsgID orders message IDs with wrap-around; mobikeUpdate follows
// only an UPDATE newer than the latest followed.
func TestNewerMsgID(t *testing.T) {
	for _, tc := range []struct {
		a, b uint32
		want bool
	}{{2, 1, true}, {1, 1, false}, {1, 2, false}, {0, 0xffffffff, true}, {0xffffffff, 0, false}} {
		assert.Equal(t, tc.want, newerMsgID(tc.a, tc.b), "%d after %d", tc.a, tc.b)
	}
}

// TestMOBIKEAfterRekeyByResponder: the responder rekeys the IKE SA (and
// so initiates the new one); the original initiator still moves it, and
// the responder still follows (RFC 4555's roles stay with the first IKE
// SA's).
func TestMOBIKEAfterRekeyByResponder(t *testing.T) {
	noLeaks(t)
	mp := newMobikePair(t, "127.0.0.2/32+127.0.0.3/32", "")
	before := endpointsOf(t, mp.a)
	require.NoError(t, mp.b.e.Rekey(ctxT(t, 5*time.Second), "b"))
	waitFor(t, "the rekeyed IKE SA alone on both sides", 5*time.Second, func() bool {
		sa, sb := mp.a.sas(t), mp.b.sas(t)
		return len(sa) == 1 && len(sb) == 1 && sa[0].SPIi+" "+sa[0].SPIr != before.spis && sa[0].State == "established" && sb[0].State == "established"
	})
	require.NoError(t, mp.a.e.call(t.Context(), func() {
		for _, sa := range mp.a.e.sas {
			assert.False(t, sa.initiator, "a initiated the rekey")
			assert.True(t, sa.mob.active && sa.mob.mover)
		}
	}))
	rekeyed := endpointsOf(t, mp.a)
	require.NoError(t, mp.a.b.Net().RemoveAddress("eth1", netip.MustParsePrefix("127.0.0.2/32")))
	waitState(t, mp.evA, "moved")
	waitState(t, mp.evB, "moved")
	after, afterB := endpointsOf(t, mp.a), endpointsOf(t, mp.b)
	assert.Equal(t, mobNew, after.ikeLocal.Addr())
	assert.Equal(t, mobNew, afterB.ikeRemote.Addr())
	assert.Equal(t, rekeyed.spis, after.spis)
	dataplaneBetween(t, mp.a, mobNew, mobResp)
	dataplaneBetween(t, mp.b, mobResp, mobNew)
}

// TestMOBIKEEcho: an INFORMATIONAL of a MOBIKE peer with COOKIE2 and NAT
// detection but no UPDATE (a check after a move) gets the COOKIE2 back
// and NAT detection for the addresses it came on; without MOBIKE, no
// echo.
func TestMOBIKEEcho(t *testing.T) {
	noLeaks(t)
	for _, tc := range []struct {
		bConn string
		echo  bool
	}{{"", true}, {"mobike = no", false}} {
		mp := newMobikePair(t, "127.0.0.2/32+127.0.0.3/32", tc.bConn)
		cookie := bytes.Repeat([]byte{0x5a}, cookie2Len)
		got := make(chan *message.Message, 1)
		require.NoError(t, mp.a.e.call(t.Context(), func() {
			for _, sa := range mp.a.e.sas {
				ps := append(natNotifies(sa.spii, sa.spir, sa.local, sa.remote, false), &message.Notify{NotifyType: message.COOKIE2, Data: cookie})
				sa.send(&request{exch: message.INFORMATIONAL, payloads: ps, onResponse: func(m *message.Message) { got <- m }})
			}
		}))
		var m *message.Message
		select {
		case m = <-got:
		case <-time.After(5 * time.Second):
			t.Fatal("no answer")
		}
		if !tc.echo {
			assert.Nil(t, m.Notify(message.COOKIE2), "echo without MOBIKE")
			continue
		}
		assert.NoError(t, checkCookie2(m, cookie))
		require.NoError(t, mp.a.e.call(t.Context(), func() {
			for _, sa := range mp.a.e.sas {
				natL, natR := detectNAT(m, sa.spii, sa.spir, sa.local, sa.remote)
				assert.False(t, natL || natR, "NAT detection in the answer does not match the addresses")
				assert.NotNil(t, m.Notify(message.NAT_DETECTION_SOURCE_IP))
			}
		}))
	}
}

// TestMOBIKEWithoutMigrate: a dataplane without CapMigrate (PF_KEY on
// FreeBSD, the test double here) cannot move a child's SAs, so the
// child is rekeyed after the move; the new SAs and the policies'
// tunnel templates must be on the IKE SA's new addresses, on either end
// or both lacking Migrate, and the old child gone.
func TestMOBIKEWithoutMigrate(t *testing.T) {
	noLeaks(t)
	for _, tc := range []struct {
		name         string
		hideA, hideB kernelops.Cap
	}{
		{"initiator", kernelops.CapMigrate, 0},
		{"responder", 0, kernelops.CapMigrate},
		{"both", kernelops.CapMigrate, kernelops.CapMigrate},
	} {
		t.Run(tc.name, func(t *testing.T) {
			mp := newMobikePairHiding(t, "127.0.0.2/32+127.0.0.3/32", "", tc.hideA, tc.hideB)
			beforeA := endpointsOf(t, mp.a)
			require.NoError(t, mp.a.b.Net().RemoveAddress("eth1", netip.MustParsePrefix("127.0.0.2/32")))
			waitState(t, mp.evA, "moved")
			waitState(t, mp.evB, "moved")
			waitFor(t, "one child, rekeyed, on each side", 5*time.Second, func() bool {
				for _, p := range []*peer{mp.a, mp.b} {
					sas := p.sas(t)
					if len(sas) != 1 || len(sas[0].Children) != 1 || sas[0].Children[0].State != "installed" ||
						sas[0].Children[0].SPIIn == beforeA.spiIn || sas[0].Children[0].SPIIn == beforeA.spiOut {
						return false
					}
				}
				return true
			})
			settle(t, mp.a, mp.b)
			afterA, afterB := endpointsOf(t, mp.a), endpointsOf(t, mp.b)
			assert.Equal(t, [2]string{mobNew.String(), mobResp.String()}, [2]string{afterA.childLocal, afterA.childRemote}, "a: child endpoints")
			assert.Equal(t, [2]string{mobResp.String(), mobNew.String()}, [2]string{afterB.childLocal, afterB.childRemote}, "b: child endpoints")
			assert.Equal(t, [2]string{beforeA.localTS, beforeA.remoteTS}, [2]string{afterA.localTS, afterA.remoteTS}, "selectors")
			sasA, tmplA := dataplaneBetween(t, mp.a, mobNew, mobResp)
			sasB, tmplB := dataplaneBetween(t, mp.b, mobResp, mobNew)
			assert.Equal(t, [4]int{2, 3, 2, 3}, [4]int{sasA, tmplA, sasB, tmplB})
			assert.Contains(t, mp.a.logText()+mp.b.logText(), "rekeying it so that new SAs take the new addresses")
		})
	}
}

// movedTemplates follows Migrate's change of a policy's tunnel
// endpoints (both directions), and leaves transport templates alone.
func TestMovedTemplates(t *testing.T) {
	tmpl := func(src, dst netip.Addr) kernelops.Template {
		return kernelops.Template{Proto: kernelops.ProtoESP, Mode: kernelops.ModeTunnel, Src: src, Dst: dst}
	}
	transport := kernelops.Template{Proto: kernelops.ProtoESP, Mode: kernelops.ModeTransport}
	for _, tc := range []struct {
		in, want kernelops.Template
	}{
		{tmpl(mobOld, mobResp), tmpl(mobNew, mobResp)},
		{tmpl(mobResp, mobOld), tmpl(mobResp, mobNew)},
		{transport, transport},
	} {
		in := []kernelops.Template{tc.in}
		got := movedTemplates(in, mobOld, mobResp, mobNew, mobResp)
		assert.Equal(t, []kernelops.Template{tc.want}, got)
		assert.Equal(t, tc.in, in[0], "input changed")
	}
}

// TestMOBIKENoNATsAllowed: an UPDATE_SA_ADDRESSES with NO_NATS_ALLOWED
// (RFC 4555 §3.9) is followed when the notify names the addresses the
// request arrived with; otherwise (other addresses, malformed) it is
// answered UNEXPECTED_NAT_DETECTED, with the COOKIE2 echoed, and the
// responder stays where it was.
func TestMOBIKENoNATsAllowed(t *testing.T) {
	noLeaks(t)
	other := netip.MustParseAddr("192.0.2.7")
	for _, tc := range []struct {
		name   string
		data   func(local, remote netip.AddrPort) []byte
		follow bool
	}{
		{"match", func(l, r netip.AddrPort) []byte { return noNATsData(l, r) }, true},
		{"other source", func(l, r netip.AddrPort) []byte { return noNATsData(netip.AddrPortFrom(other, l.Port()), r) }, false},
		{"other port", func(l, r netip.AddrPort) []byte { return noNATsData(netip.AddrPortFrom(l.Addr(), l.Port()+1), r) }, false},
		{"other destination", func(l, r netip.AddrPort) []byte { return noNATsData(l, netip.AddrPortFrom(other, r.Port())) }, false},
		{"malformed", func(l, r netip.AddrPort) []byte { return noNATsData(l, r)[:11] }, false},
	} {
		t.Run(tc.name, func(t *testing.T) {
			mp := newMobikePair(t, "127.0.0.2/32+127.0.0.3/32", "")
			before := endpointsOf(t, mp.b)
			cookie := bytes.Repeat([]byte{0x3c}, cookie2Len)
			got := make(chan *message.Message, 1)
			// a's UPDATE from its other address, by hand, with the notify.
			require.NoError(t, mp.a.e.call(t.Context(), func() {
				for _, sa := range mp.a.e.sas {
					sa.local = netip.AddrPortFrom(mobNew, sa.local.Port())
					mp.a.e.changed(sa) // as the engine marks a change (changes.go)
					ps := []message.Payload{&message.Notify{NotifyType: message.UPDATE_SA_ADDRESSES},
						&message.Notify{NotifyType: message.NO_NATS_ALLOWED, Data: tc.data(sa.local, sa.remote)},
						&message.Notify{NotifyType: message.COOKIE2, Data: cookie}}
					sa.send(&request{exch: message.INFORMATIONAL, payloads: ps, onResponse: func(m *message.Message) { got <- m }})
				}
			}))
			var m *message.Message
			select {
			case m = <-got:
			case <-time.After(5 * time.Second):
				t.Fatal("no answer")
			}
			assert.NoError(t, checkCookie2(m, cookie))
			settle(t, mp.a, mp.b)
			after := endpointsOf(t, mp.b)
			if tc.follow {
				assert.Nil(t, m.Notify(message.UNEXPECTED_NAT_DETECTED))
				assert.Equal(t, mobNew, after.ikeRemote.Addr())
				assert.Equal(t, mobNew.String(), after.childRemote)
				dataplaneBetween(t, mp.b, mobResp, mobNew)
				return
			}
			assert.NotNil(t, m.Notify(message.UNEXPECTED_NAT_DETECTED), "no UNEXPECTED_NAT_DETECTED in %v", m)
			assert.Equal(t, before.ikeRemote, after.ikeRemote, "b moved")
			assert.Equal(t, mobOld.String(), after.childRemote, "b's child moved")
			dataplaneBetween(t, mp.b, mobResp, mobOld)
			ev := waitState(t, mp.evB, "mobike-refused")
			assert.Equal(t, "UNEXPECTED_NAT_DETECTED", ev.Reason)
			assert.Contains(t, mp.b.logText(), "does not match the addresses it arrived with")
		})
	}
}

// TestMOBIKEUnexpectedNAT: the peer answers our UPDATE_SA_ADDRESSES with
// UNEXPECTED_NAT_DETECTED: the children stay where they were and the
// refusal is logged and published. keyplane itself sends no
// NO_NATS_ALLOWED (it always does NAT-T): the peer never sees one.
func TestMOBIKEUnexpectedNAT(t *testing.T) {
	noLeaks(t)
	mp := newMobikePair(t, "127.0.0.2/32+127.0.0.3/32", "")
	require.NoError(t, mp.b.e.call(t.Context(), func() {
		mp.b.e.rewriteResponse = func(req *message.Message, ps []message.Payload) []message.Payload {
			if req.Notify(message.UPDATE_SA_ADDRESSES) == nil {
				return ps
			}
			return append(ps, &message.Notify{NotifyType: message.UNEXPECTED_NAT_DETECTED})
		}
	}))
	require.NoError(t, mp.a.b.Net().RemoveAddress("eth1", netip.MustParsePrefix("127.0.0.2/32")))
	ev := waitState(t, mp.evA, "mobike-refused")
	assert.Equal(t, "UNEXPECTED_NAT_DETECTED", ev.Reason)
	after := endpointsOf(t, mp.a)
	assert.Equal(t, [2]string{mobOld.String(), mobResp.String()}, [2]string{after.childLocal, after.childRemote}, "children moved on a refusal")
	dataplaneBetween(t, mp.a, mobOld, mobResp)
	assert.Contains(t, mp.a.logText(), "peer refuses our UPDATE_SA_ADDRESSES")
	assert.Contains(t, mp.b.logText(), "N(UPDATE_SA_ADDRESSES)", "b's log lists the payloads it received")
	assert.NotContains(t, mp.b.logText(), "NO_NATS_ALLOWED")
}

// NO_NATS_ALLOWED data round-trips for both families; other lengths are
// refused with ErrNoNATsData.
func TestNoNATsData(t *testing.T) {
	for _, tc := range []struct{ src, dst string }{
		{"192.0.2.1:4500", "198.51.100.2:4501"},
		{"[2001:db8::1]:500", "[2001:db8::2]:65535"},
		{"[::ffff:192.0.2.1]:4500", "192.0.2.2:4500"},
	} {
		src, dst := netip.MustParseAddrPort(tc.src), netip.MustParseAddrPort(tc.dst)
		b := noNATsData(src, dst)
		gs, gd, err := decodeNoNATs(b)
		require.NoError(t, err)
		assert.Equal(t, netip.AddrPortFrom(src.Addr().Unmap(), src.Port()), gs)
		assert.Equal(t, dst, gd)
	}
	// Mixed families: both in the IPv6 form.
	mixed := noNATsData(netip.MustParseAddrPort("192.0.2.1:500"), netip.MustParseAddrPort("[2001:db8::2]:500"))
	assert.Len(t, mixed, 36)
	for _, n := range []int{0, 11, 13, 35, 37} {
		_, _, err := decodeNoNATs(make([]byte, n))
		assert.ErrorIs(t, err, ErrNoNATsData, "%d octets", n)
	}
}

func FuzzNoNATs(f *testing.F) {
	f.Add(noNATsData(netip.MustParseAddrPort("192.0.2.1:4500"), netip.MustParseAddrPort("192.0.2.2:4500")))
	f.Add(noNATsData(netip.MustParseAddrPort("[2001:db8::1]:500"), netip.MustParseAddrPort("[2001:db8::2]:500")))
	f.Add([]byte{1, 2, 3})
	f.Fuzz(func(t *testing.T, b []byte) {
		src, dst, err := decodeNoNATs(b)
		if err != nil {
			return
		}
		// Encoding what was decoded gives valid data (the encoder may
		// choose the IPv4 form for IPv4-mapped addresses), and is stable.
		enc := noNATsData(src, dst)
		s2, d2, err := decodeNoNATs(enc)
		if err != nil {
			t.Fatalf("%x decodes to %s %s, which encodes to invalid %x: %v", b, src, dst, enc, err)
		}
		if again := noNATsData(s2, d2); !bytes.Equal(again, enc) {
			t.Fatalf("%x: encoding not stable: %x then %x", b, enc, again)
		}
	})
}

// TestMOBIKEOneRouteQueryPerPeer: five IKE SAs to one peer lose their
// address together; the pass that moves them asks the dataplane for the
// route to the peer once, not once per SA (a link with thousands of SAs
// to one gateway is one query).
func TestMOBIKEOneRouteQueryPerPeer(t *testing.T) {
	noLeaks(t)
	mp := newMobikePair(t, "127.0.0.2/32+127.0.0.3/32", "")
	for range 4 {
		require.NoError(t, secondIKE(t, mp.a, "a-net"))
	}
	require.Equal(t, 5, established(t, mp.a))
	locals := func() map[netip.Addr]int {
		out := map[netip.Addr]int{}
		for _, s := range mp.a.sas(t) {
			out[netip.MustParseAddrPort(s.Local).Addr()]++
		}
		return out
	}
	require.Equal(t, map[netip.Addr]int{mobOld: 5}, locals())
	before := mp.ta.routes.Load()
	require.NoError(t, mp.a.b.Net().RemoveAddress("eth1", netip.MustParsePrefix("127.0.0.2/32")))
	waitFor(t, "all five moved", 3*time.Second, func() bool { return locals()[mobNew] == 5 })
	assert.Equal(t, int64(1), mp.ta.routes.Load()-before, "route queries for five SAs to one peer")
}
