package ike

import (
	"net/netip"
	"strings"
	"testing"
	"time"

	"github.com/keyplane/keyplane/backends/nokernel"
	"github.com/keyplane/keyplane/ike/config"
	"github.com/keyplane/keyplane/ike/message"
	"github.com/keyplane/keyplane/kernelops"
)

const (
	hybridIKE = "aes256gcm16-prfsha384-x25519-ke1_mlkem768"
	hybridESP = "aes128gcm16-x25519-ke1_mlkem768"
)

// TestMLKEMHybrid: keyplane to keyplane with x25519 and ML-KEM-768 as an
// additional key exchange (RFC 9370): IKE_SA_INIT, then one
// IKE_INTERMEDIATE, then IKE_AUTH covering it (IntAuth); then child
// rekeys with PFS and IKE SA rekeys from either end, each with one
// IKE_FOLLOWUP_KE. Every child's keys agree on both ends, and traffic
// counters show the children in use. Variants: pre-shared keys; ECDSA
// certificates with fragment_size = 576, so that the IKE_INTERMEDIATE and
// IKE_FOLLOWUP_KE messages (ML-KEM's 1184-octet encapsulation key) and
// IKE_AUTH travel in fragments.
func TestMLKEMHybrid(t *testing.T) {
	noLeaks(t)
	for _, variant := range []string{"psk", "ecdsa+fragments"} {
		t.Run(variant, func(t *testing.T) {
			var ca, cb *config.Config
			if variant == "psk" {
				sa, sb := pairSides(t)
				sa.proposals, sb.proposals, sa.esp, sb.esp = hybridIKE, hybridIKE, hybridESP, hybridESP
				ca, cb = sa.config(t, "a"), sb.config(t, "b")
			} else {
				p := newPKPair(t, "p256")
				p.a.proposals, p.b.proposals, p.a.esp, p.b.esp = hybridIKE, hybridIKE, hybridESP, hybridESP
				p.a.daemon, p.b.daemon = "fragment_size = 576", "fragment_size = 576"
				ca, cb = p.a.config(t, p.dir), p.b.config(t, p.dir)
			}
			ta, oa := tap(nil, 0)
			tb, ob := tap(nil, 0)
			a := newPeer(t, "a", ca, oa)
			b := newPeer(t, "b", cb, ob)
			establish(t, a, b, "a-net")
			ia, ib := a.sas(t)[0], b.sas(t)[0]
			if !strings.HasSuffix(ia.Suite, "CURVE_25519-ke1_ML_KEM_768") || ia.Suite != ib.Suite {
				t.Fatalf("IKE suites %s / %s", ia.Suite, ib.Suite)
			}
			if n := exchanges(ta, 0, message.IKE_INTERMEDIATE); n != 1 {
				t.Errorf("a sent %d IKE_INTERMEDIATE requests, want 1", n)
			}
			if variant != "psk" {
				frag := false
				for _, m := range ta.since(0) {
					frag = frag || (m.exch == message.IKE_INTERMEDIATE && m.fragment)
				}
				if !frag {
					t.Error("IKE_INTERMEDIATE was not fragmented")
				}
			}
			keysCrosswise(t, a, b)
			traffic(t, a, b)

			// Child rekeys with PFS, each end once.
			for _, by := range []*peer{a, b} {
				tp := ta
				if by == b {
					tp = tb
				}
				mark := tp.mark()
				before := by.sas(t)[0].Children[0]
				if err := by.e.Rekey(t.Context(), by.name+"-net"); err != nil {
					t.Fatal(err)
				}
				waitFor(t, by.name+"'s child rekey", 5*time.Second, func() bool {
					return childRekeyed(t, a, b, before.SPIIn, before.SPIOut)
				})
				c := by.sas(t)[0].Children[0]
				if !strings.HasSuffix(c.Suite, "CURVE_25519-ke1_ML_KEM_768") {
					t.Errorf("rekeyed child suite %s", c.Suite)
				}
				if n := exchanges(tp, mark, message.IKE_FOLLOWUP_KE); n != 1 {
					t.Errorf("%s sent %d IKE_FOLLOWUP_KE requests for the child rekey, want 1", by.name, n)
				}
				keysCrosswise(t, a, b)
				traffic(t, a, b)
			}
			// IKE SA rekeys, each end once.
			for _, by := range []*peer{a, b} {
				tp, mark := ta, ta.mark()
				if by == b {
					tp, mark = tb, tb.mark()
				}
				old := by.sas(t)[0]
				if err := by.e.Rekey(t.Context(), by.name); err != nil {
					t.Fatal(err)
				}
				waitFor(t, by.name+"'s IKE SA rekey", 5*time.Second, func() bool {
					x, y := a.sas(t), b.sas(t)
					return len(x) == 1 && len(y) == 1 && x[0].SPIi != old.SPIi && x[0].SPIi == y[0].SPIi &&
						x[0].State == "established" && y[0].State == "established" && len(x[0].Children) == 1
				})
				if s := by.sas(t)[0].Suite; !strings.HasSuffix(s, "CURVE_25519-ke1_ML_KEM_768") {
					t.Errorf("rekeyed IKE SA suite %s", s)
				}
				if n := exchanges(tp, mark, message.IKE_FOLLOWUP_KE); n != 1 {
					t.Errorf("%s sent %d IKE_FOLLOWUP_KE requests for the IKE rekey, want 1", by.name, n)
				}
			}
			// The new IKE SA works: one more child rekey over it, its
			// IKE_FOLLOWUP_KE in fragments when they were negotiated (the
			// rekeyed SA keeps what IKE_SA_INIT announced).
			before := a.sas(t)[0].Children[0]
			mark := ta.mark()
			if err := a.e.Rekey(t.Context(), "a-net"); err != nil {
				t.Fatal(err)
			}
			waitFor(t, "a child rekey over the rekeyed IKE SA", 5*time.Second, func() bool {
				return childRekeyed(t, a, b, before.SPIIn, before.SPIOut)
			})
			keysCrosswise(t, a, b)
			if variant != "psk" {
				frag := false
				for _, m := range ta.since(mark) {
					frag = frag || (m.exch == message.IKE_FOLLOWUP_KE && m.fragment)
				}
				if !frag {
					t.Error("IKE_FOLLOWUP_KE on the rekeyed IKE SA was not fragmented")
				}
			}
			if err := b.e.Terminate(ctxT(t, 5*time.Second), "b"); err != nil {
				t.Fatal(err)
			}
			a.expectEmpty(t)
			b.expectEmpty(t)
		})
	}
}

// traffic pushes a simulated packet from a through its child to b, and
// one back: each end protects with the SA the other delivers on.
func traffic(t *testing.T, a, b *peer) {
	t.Helper()
	for _, d := range []struct {
		from, to *peer
		src, dst string
	}{{a, b, "10.1.0.5", "10.2.0.9"}, {b, a, "10.2.0.9", "10.1.0.5"}} {
		res, err := d.from.b.Inject(t.Context(), nokernel.Packet{Dir: kernelops.DirOut, Src: netip.MustParseAddr(d.src),
			Dst: netip.MustParseAddr(d.dst), Proto: 6, SrcPort: 40000, DstPort: 443, Len: 100})
		if err != nil || res.Verdict != nokernel.Protected || len(res.SAs) != 1 {
			t.Fatalf("outbound on %s: %+v %v", d.from.name, res, err)
		}
		res, err = d.to.b.Inject(t.Context(), nokernel.Packet{Dir: kernelops.DirIn, SA: res.SAs[0],
			Src: netip.MustParseAddr(d.src), Dst: netip.MustParseAddr(d.dst), Proto: 6, Len: 100})
		if err != nil || res.Verdict != nokernel.Delivered {
			t.Fatalf("inbound on %s: %+v %v", d.to.name, res, err)
		}
	}
}

// childRekeyed reports whether both ends hold exactly one installed child,
// the same one, which is not the one with SPIs in/out (a's view).
func childRekeyed(t *testing.T, a, b *peer, in, out string) bool {
	x, y := a.sas(t), b.sas(t)
	if len(x) != 1 || len(y) != 1 || len(x[0].Children) != 1 || len(y[0].Children) != 1 {
		return false
	}
	ca, cb := x[0].Children[0], y[0].Children[0]
	if ca.State != "installed" || cb.State != "installed" || ca.SPIIn != cb.SPIOut || ca.SPIOut != cb.SPIIn {
		return false
	}
	if ca.SPIIn == in || ca.SPIIn == out || ca.SPIOut == in || ca.SPIOut == out {
		return false
	}
	sa, pa := a.counts(t)
	sb, pb := b.counts(t)
	return sa == 2 && sb == 2 && pa == 3 && pb == 3
}

// TestIntermediateFallback: an initiator that offers a hybrid proposal
// and a classic one, facing a peer configured for the classic one only
// (which therefore neither announces IKE_INTERMEDIATE nor takes the
// additional key exchange, as a peer without RFC 9370 does), gets the
// classic suite; with the hybrid proposal alone it gets
// NO_PROPOSAL_CHOSEN, never a silent downgrade. The same holds for a
// child's PFS.
func TestIntermediateFallback(t *testing.T) {
	noLeaks(t)
	t.Run("falls back", func(t *testing.T) {
		sa, sb := pairSides(t)
		sa.proposals = hybridIKE + ", aes128gcm16-prfsha256-x25519"
		sb.proposals = "aes128gcm16-prfsha256-x25519"
		sa.esp = hybridESP + ", aes128gcm16-x25519"
		sb.esp = "aes128gcm16-x25519"
		ta, oa := tap(nil, 0)
		a := newPeer(t, "a", sa.config(t, "a"), oa)
		b := newPeer(t, "b", sb.config(t, "b"))
		establish(t, a, b, "a-net")
		if s := a.sas(t)[0].Suite; s != "ENCR_AES_GCM_16/128-NONE-PRF_HMAC_SHA2_256-CURVE_25519" {
			t.Errorf("suite %s, want the classic one", s)
		}
		if n := exchanges(ta, 0, message.IKE_INTERMEDIATE); n != 0 {
			t.Errorf("a sent %d IKE_INTERMEDIATE requests", n)
		}
		before := a.sas(t)[0].Children[0]
		if err := a.e.Rekey(t.Context(), "a-net"); err != nil {
			t.Fatal(err)
		}
		waitFor(t, "the child rekey", 5*time.Second, func() bool { return childRekeyed(t, a, b, before.SPIIn, before.SPIOut) })
		if c := a.sas(t)[0].Children[0]; c.Suite != "ENCR_AES_GCM_16/128-CURVE_25519" {
			t.Errorf("rekeyed child suite %s, want classic PFS", c.Suite)
		}
		if n := exchanges(ta, 0, message.IKE_FOLLOWUP_KE); n != 0 {
			t.Errorf("a sent %d IKE_FOLLOWUP_KE requests", n)
		}
	})
	t.Run("no downgrade", func(t *testing.T) {
		sa, sb := pairSides(t)
		sa.proposals = hybridIKE
		sb.proposals = "aes256gcm16-prfsha384-x25519"
		a := newPeer(t, "a", sa.config(t, "a"))
		newPeer(t, "b", sb.config(t, "b"))
		err := a.e.Initiate(ctxT(t, 5*time.Second), "a-net")
		wantNotify(t, err, message.NO_PROPOSAL_CHOSEN, true)
	})
	t.Run("optional", func(t *testing.T) {
		// ke1_none makes the additional exchange optional: the classic
		// peer takes the same proposal without it.
		sa, sb := pairSides(t)
		sa.proposals = hybridIKE + "-ke1_none"
		sb.proposals = "aes256gcm16-prfsha384-x25519"
		a := newPeer(t, "a", sa.config(t, "a"))
		b := newPeer(t, "b", sb.config(t, "b"))
		establish(t, a, b, "a-net")
		if s := a.sas(t)[0].Suite; s != "ENCR_AES_GCM_16/256-NONE-PRF_HMAC_SHA2_384-CURVE_25519" {
			t.Errorf("suite %s", s)
		}
	})
}

// exchanges counts the requests of exchange x sent after mark, each
// once however many fragments and retransmissions it took.
func exchanges(tp *tapBackend, mark int, x message.ExchangeType) int {
	n := 0
	for _, m := range firstSends(tp.since(mark)) {
		if m.exch == x {
			n++
		}
	}
	return n
}
