package ike

import (
	"net/netip"
	"strings"
	"testing"
	"time"

	"github.com/keyplane/keyplane/backends/nokernel"
	"github.com/keyplane/keyplane/ike/message"
	"github.com/keyplane/keyplane/kernelops"
)

// countRekeyed counts the IKE SAs p reports replaced by a rekey from now
// on.
func countRekeyed(t *testing.T, p *peer) func() int {
	sub := p.e.Subscribe()
	t.Cleanup(sub.Close)
	n := 0
	return func() int {
		for {
			select {
			case ev := <-sub.C:
				if ev.Kind == "overrun" {
					t.Errorf("%s: events lost", p.name)
				}
				if ev.Kind == "ike" && ev.State == "rekeyed" {
					n++
				}
			default:
				return n
			}
		}
	}
}

// steady reports whether a and b each hold exactly one IKE SA, the same
// one, established, with one installed child whose SPIs agree crosswise.
func steady(t *testing.T, a, b *peer) (IKESAInfo, IKESAInfo, bool) {
	sa, sb := a.sas(t), b.sas(t)
	if len(sa) != 1 || len(sb) != 1 {
		return IKESAInfo{}, IKESAInfo{}, false
	}
	ia, ib := sa[0], sb[0]
	ok := ia.State == "established" && ib.State == "established" && ia.SPIi == ib.SPIi && ia.SPIr == ib.SPIr &&
		len(ia.Children) == 1 && len(ib.Children) == 1 && ia.Children[0].State == "installed" &&
		ia.Children[0].SPIIn == ib.Children[0].SPIOut && ia.Children[0].SPIOut == ib.Children[0].SPIIn
	return ia, ib, ok
}

func TestIKERekey(t *testing.T) {
	noLeaks(t)
	for _, tc := range []struct {
		name             string
		ike, esp         string
		rekeyA, rekeyB   string // connection rekey_time
		childA           string
		wantRoleA        string // a's role on the new SA, "" when either
		collisions, more bool
	}{
		{name: "by initiator", ike: "aes128gcm16-prfsha256-x25519", esp: "aes128gcm16", rekeyA: "1s", rekeyB: "0", wantRoleA: "initiator"},
		{name: "by responder", ike: "aes256-sha256-ecp256", esp: "aes256-sha256", rekeyA: "0", rekeyB: "1s", wantRoleA: "responder"},
		{name: "both ends", ike: "aes256gcm16-prfsha384-x25519", esp: "aes256gcm16", rekeyA: "1s", rekeyB: "1s", collisions: true},
		{name: "with child rekeys", ike: "aes128gcm16-prfsha256-x25519", esp: "aes128gcm16-x25519", rekeyA: "1s", rekeyB: "1s",
			childA: "rekey_time = 1s\n life_time = 30s", collisions: true, more: true},
	} {
		t.Run(tc.name, func(t *testing.T) {
			sa, sb := pairSides(t)
			sa.proposals, sb.proposals, sa.esp, sb.esp = tc.ike, tc.ike, tc.esp, tc.esp
			// over_time's default, a tenth of rekey_time, would end an SA
			// whose rekey waits a moment behind another exchange.
			sa.extraConn, sb.extraConn = "rekey_time = "+tc.rekeyA+"\nover_time = 1m", "rekey_time = "+tc.rekeyB+"\nover_time = 1m"
			sa.extraChild = tc.childA
			a := newPeer(t, "a", sa.config(t, "a"))
			b := newPeer(t, "b", sb.config(t, "b"))
			rekA, rekB := countRekeyed(t, a), countRekeyed(t, b)
			establish(t, a, b, "a-net")
			before, _, ok := steady(t, a, b)
			if !ok {
				t.Fatalf("not steady after establishment: %+v / %+v", a.sas(t), b.sas(t))
			}
			// Two rekeys each side: the second runs on an SA that a rekey
			// made, with message IDs from 0 and keys from the first's SK_d.
			waitFor(t, "two IKE SA rekeys on both sides", 15*time.Second, func() bool { return rekA() >= 2 && rekB() >= 2 })
			var ia, ib IKESAInfo
			waitFor(t, "one IKE SA on each side, the same, with its child", 5*time.Second, func() bool {
				ia, ib, ok = steady(t, a, b)
				return ok
			})
			if ia.SPIi == before.SPIi || ia.SPIr == before.SPIr {
				t.Errorf("IKE SPIs unchanged by the rekeys: %s %s", ia.SPIi, ia.SPIr)
			}
			if tc.wantRoleA != "" && ia.Role != tc.wantRoleA {
				t.Errorf("a is %s of the rekeyed SA; the end that rekeys is its initiator, want %s", ia.Role, tc.wantRoleA)
			}
			if (ia.Role == "initiator") == (ib.Role == "initiator") {
				t.Errorf("roles %s / %s", ia.Role, ib.Role)
			}
			if !tc.more && (ia.Children[0].SPIIn != before.Children[0].SPIIn || ia.Children[0].SPIOut != before.Children[0].SPIOut) {
				t.Errorf("the child changed with the IKE SA: %+v, was %+v", ia.Children[0], before.Children[0])
			}
			for _, p := range []*peer{a, b} {
				if s, pol := p.counts(t); s != 2 || pol != 3 {
					t.Errorf("%s: %d SAs, %d policies; want 2 and 3", p.name, s, pol)
				}
			}
			res, err := a.b.Inject(t.Context(), nokernel.Packet{Dir: kernelops.DirOut, Src: netip.MustParseAddr("10.1.0.5"),
				Dst: netip.MustParseAddr("10.2.0.9"), Proto: 6, Len: 100})
			if err != nil || res.Verdict != nokernel.Protected {
				t.Errorf("traffic after the rekeys: %+v %v", res, err)
			}
			for _, p := range []*peer{a, b} {
				log := p.logText()
				for _, bad := range []string{"level=WARN", "level=ERROR", "fails to decrypt", "outside the window", "unexpected response"} {
					if strings.Contains(log, bad) {
						t.Errorf("%s's log has %q:\n%s", p.name, bad, log)
					}
				}
			}
			if tc.collisions {
				t.Logf("TEMPORARY_FAILURE answers: a %d, b %d", strings.Count(a.logText(), "answering TEMPORARY_FAILURE"),
					strings.Count(b.logText(), "answering TEMPORARY_FAILURE"))
			} else if strings.Contains(a.logText()+b.logText(), "TEMPORARY_FAILURE") {
				t.Errorf("a collision with one end rekeying")
			}
			// The rekeyed SA carries on: a child delete from b goes over it,
			// then the IKE SA's own delete.
			if err := b.e.Terminate(ctxT(t, 5*time.Second), "b-net"); err != nil {
				t.Fatal(err)
			}
			a.expectEmpty(t)
			b.expectEmpty(t)
			if err := a.e.Terminate(ctxT(t, 5*time.Second), "a"); err != nil {
				t.Fatal(err)
			}
			waitFor(t, "IKE SAs gone", 3*time.Second, func() bool { return len(a.sas(t)) == 0 && len(b.sas(t)) == 0 })
		})
	}
}

// onLoop runs f with p's one IKE SA on p's engine loop.
func onLoop(t *testing.T, p *peer, f func(*ikeSA)) {
	t.Helper()
	if err := p.e.call(ctxT(t, 5*time.Second), func() {
		for _, sa := range p.e.sas {
			if sa.state == ikeEstablished {
				f(sa)
				return
			}
		}
		t.Errorf("%s has no established IKE SA", p.name)
	}); err != nil {
		t.Fatal(err)
	}
}

// TestIKERekeyAnotherGroup: the peer answers our rekey's key exchange
// with INVALID_KE_PAYLOAD; the rekey goes again at once with the group it
// asks for, and completes.
func TestIKERekeyAnotherGroup(t *testing.T) {
	noLeaks(t)
	sa, sb := pairSides(t)
	sa.proposals = "aes128gcm16-prfsha256-x25519-modp2048"
	sb.proposals = "aes128gcm16-prfsha256-x25519"
	sa.extraConn, sb.extraConn = "rekey_time = 0", "rekey_time = 0"
	a := newPeer(t, "a", sa.config(t, "a"))
	b := newPeer(t, "b", sb.config(t, "b"))
	rekA := countRekeyed(t, a)
	establish(t, a, b, "a-net")
	before, _, _ := steady(t, a, b)
	onLoop(t, a, func(sa *ikeSA) { sa.rekeyIKEWith(message.DHModp2048) })
	waitFor(t, "a's rekey through", 10*time.Second, func() bool {
		ia, _, ok := steady(t, a, b)
		return ok && ia.SPIi != before.SPIi
	})
	if n := rekA(); n != 1 {
		t.Errorf("%d rekeys, want 1", n)
	}
	if !strings.Contains(b.logText(), "asking for another key exchange method (INVALID_KE_PAYLOAD)") ||
		!strings.Contains(a.logText(), "peer asks for another key exchange method for the IKE SA rekey") {
		t.Errorf("the INVALID_KE_PAYLOAD round is not in the logs:\n%s\n%s", a.logText(), b.logText())
	}
	if ia := a.sas(t)[0]; !strings.Contains(ia.Suite, "CURVE_25519") {
		t.Errorf("rekeyed SA's suite %s, want the group b asked for", ia.Suite)
	}
}

// TestIKERekeyDeclined: a peer that declines the rekey (here with
// NO_PROPOSAL_CHOSEN: it no longer takes our suite) keeps the old SA and
// its child; nothing breaks and the rekey is tried again later.
func TestIKERekeyDeclined(t *testing.T) {
	noLeaks(t)
	sa, sb := pairSides(t)
	sa.extraConn, sb.extraConn = "rekey_time = 0", "rekey_time = 0"
	a := newPeer(t, "a", sa.config(t, "a"))
	b := newPeer(t, "b", sb.config(t, "b"))
	establish(t, a, b, "a-net")
	before, _, _ := steady(t, a, b)
	onLoop(t, b, func(sa *ikeSA) {
		c := *sa.conn
		c.Proposals = nil
		for _, p := range sa.conn.Proposals {
			p.DH = []message.DHGroup{message.DHModp2048}
			c.Proposals = append(c.Proposals, p)
		}
		sa.conn = &c
	})
	var retry *timer
	onLoop(t, a, func(sa *ikeSA) { sa.rekeyIKE() })
	waitFor(t, "a's rekey declined", 5*time.Second, func() bool { return strings.Contains(a.logText(), "IKE SA rekey declined") })
	onLoop(t, a, func(sa *ikeSA) { retry = sa.rekeyTimer })
	if retry == nil {
		t.Errorf("no retry scheduled")
	}
	if !strings.Contains(a.logText(), "peer answered NO_PROPOSAL_CHOSEN") {
		t.Errorf("a's log does not say why:\n%s", a.logText())
	}
	after, _, ok := steady(t, a, b)
	if !ok || after.SPIi != before.SPIi || after.SPIr != before.SPIr || after.Children[0].SPIIn != before.Children[0].SPIIn {
		t.Errorf("after the declined rekey: %+v, was %+v", after, before)
	}
	// The old SA still works: a delete over it.
	if err := a.e.Terminate(ctxT(t, 5*time.Second), "a"); err != nil {
		t.Fatal(err)
	}
	waitFor(t, "IKE SAs gone", 3*time.Second, func() bool { return len(a.sas(t)) == 0 && len(b.sas(t)) == 0 })
	a.expectEmpty(t)
	b.expectEmpty(t)
}
