package ike

import (
	"strings"
	"testing"
	"time"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"

	"github.com/keyplane/keyplane/ike/message"
)

// TestFragmentation: with fragment_size = 576 and RSA-3072 certificate
// chains, IKE_AUTH goes in fragments both ways (no datagram over 548
// octets of IKE message); the first transmission of one of the
// initiator's fragments is lost, and every fragment of the responder's
// first answer: the initiator retransmits all its fragments, the
// responder answers the retransmission (on its fragment 1) with all of
// its own, and the SA comes up with the same keys on both ends.
func TestFragmentation(t *testing.T) {
	noLeaks(t)
	p := newPKPair(t, "rsa3072")
	p.a.daemon, p.b.daemon = "fragment_size = 576", "fragment_size = 576"
	ta, oa := tap(nil, 0)
	tb, ob := tap(nil, 0)
	droppedA := 0
	ta.drop = func(m sentMsg) bool {
		if m.exch == message.IKE_AUTH && !m.response && m.fragNum == 2 && droppedA == 0 {
			droppedA++
			return true
		}
		return false
	}
	droppedB := 0
	tb.drop = func(m sentMsg) bool {
		if m.exch == message.IKE_AUTH && m.response && m.fragment && droppedB < int(m.fragTotal) {
			droppedB++
			return true
		}
		return false
	}
	a := newPeer(t, "a", p.a.config(t, p.dir), oa)
	b := newPeer(t, "b", p.b.config(t, p.dir), ob)
	establish(t, a, b, "a-net")
	keysCrosswise(t, a, b)
	max := message.FragmentMessageLen(576, false, false)
	count := func(tp *tapBackend, response bool) (frags, total int) {
		for _, m := range tp.since(0) {
			if m.exch != message.IKE_SA_INIT && m.size > max {
				t.Errorf("a datagram of %d octets (%v response=%v), over %d", m.size, m.exch, m.response, max)
			}
			if m.exch == message.IKE_AUTH && m.response == response {
				if !m.fragment {
					t.Errorf("IKE_AUTH (response=%v) sent whole", response)
				}
				frags++
				total = int(m.fragTotal)
			}
		}
		return frags, total
	}
	fa, ta1 := count(ta, false)
	fb, tb1 := count(tb, true)
	t.Logf("IKE_AUTH request: %d fragments per message, %d sent; response: %d per message, %d sent", ta1, fa, tb1, fb)
	if ta1 < 3 || fa < 2*ta1 {
		t.Errorf("initiator sent %d IKE_AUTH fragments of %d per message; want every one at least twice", fa, ta1)
	}
	if tb1 < 3 || fb < 2*tb1 || droppedB != tb1 {
		t.Errorf("responder sent %d IKE_AUTH fragments of %d per message (dropped %d); want all again after the loss", fb, tb1, droppedB)
	}
	if !strings.Contains(b.logText(), "answering retransmitted request (fragment 1)") {
		t.Error("the responder did not answer the retransmitted request from its first fragment")
	}
	if !strings.Contains(b.logText(), "fragment not taken") {
		t.Error("the retransmitted fragments were not recognized as duplicates")
	}
	// The responder keeps its fragmented answer for retransmissions until
	// it answers the next request, which goes whole: then only that one.
	kept := func() (frags, whole int) {
		require.NoError(t, b.e.call(t.Context(), func() {
			for _, sa := range b.e.sas {
				frags, whole = len(orZero(sa.frag).lastResp), len(sa.w.lastResp)
			}
		}))
		return frags, whole
	}
	frags, _ := kept()
	assert.Equal(t, tb1, frags, "the IKE_AUTH answer's fragments kept")
	got := make(chan struct{}, 1)
	require.NoError(t, a.e.call(t.Context(), func() {
		for _, sa := range a.e.sas {
			sa.send(&request{exch: message.INFORMATIONAL, onResponse: func(*message.Message) { got <- struct{}{} }})
		}
	}))
	select {
	case <-got:
	case <-time.After(5 * time.Second):
		t.Fatal("no answer to the INFORMATIONAL")
	}
	frags, whole := kept()
	assert.Zero(t, frags, "fragments of an earlier answer kept")
	assert.Positive(t, whole, "the whole answer kept")
}

// TestFragmentationSettings: fragmentation = accept announces and takes
// fragments but sends whole messages; = no neither announces nor sends
// them, so the peer sends whole messages too.
func TestFragmentationSettings(t *testing.T) {
	noLeaks(t)
	p := newPKPair(t, "rsa3072")
	for _, c := range []struct {
		name         string
		aFrag, bFrag string
		aSends       bool // a's IKE_AUTH request in fragments
		bSends       bool
	}{
		{"a-accept", "fragmentation = accept", "", false, true},
		{"b-no", "", "fragmentation = no", false, false},
		{"both-yes", "", "", true, true},
	} {
		t.Run(c.name, func(t *testing.T) {
			q := *p
			ports := freePorts(t, 4)
			q.a.port, q.a.natPort, q.a.remotePort, q.a.remoteNATPort = ports[0], ports[1], ports[2], ports[3]
			q.b.port, q.b.natPort, q.b.remotePort, q.b.remoteNATPort = ports[2], ports[3], ports[0], ports[1]
			q.a.daemon, q.b.daemon = "fragment_size = 576", "fragment_size = 576"
			q.a.connExt, q.b.connExt = c.aFrag, c.bFrag
			ta, oa := tap(nil, 0)
			tb, ob := tap(nil, 0)
			a := newPeer(t, "a", q.a.config(t, q.dir), oa)
			b := newPeer(t, "b", q.b.config(t, q.dir), ob)
			establish(t, a, b, "a-net")
			sent := func(tp *tapBackend, response bool) (frag bool) {
				for _, m := range tp.since(0) {
					if m.exch == message.IKE_AUTH && m.response == response {
						frag = frag || m.fragment
					}
				}
				return frag
			}
			if got := sent(ta, false); got != c.aSends {
				t.Errorf("a's IKE_AUTH in fragments: %v, want %v", got, c.aSends)
			}
			if got := sent(tb, true); got != c.bSends {
				t.Errorf("b's IKE_AUTH in fragments: %v, want %v", got, c.bSends)
			}
		})
	}
}
