package ike

import (
	"net/netip"
	"testing"
	"time"

	"github.com/keyplane/keyplane/backends/nokernel"
	"github.com/keyplane/keyplane/kernelops"
)

func establish(t *testing.T, a, b *peer, child string) {
	t.Helper()
	if err := a.e.Initiate(ctxT(t, 5*time.Second), child); err != nil {
		t.Fatalf("initiate %s: %v", child, err)
	}
	waitFor(t, "both children installed", 3*time.Second, func() bool {
		return installed(a.sas(t)) == 1 && installed(b.sas(t)) == 1
	})
}

func installed(sas []IKESAInfo) int {
	n := 0
	for _, sa := range sas {
		for _, ch := range sa.Children {
			if ch.State == "installed" {
				n++
			}
		}
	}
	return n
}

func TestEstablishAndTraffic(t *testing.T) {
	noLeaks(t)
	for _, suite := range []struct{ ike, esp string }{
		{"aes128gcm16-prfsha256-x25519", "aes128gcm16"},
		{"aes256-sha256-ecp256", "aes256-sha256"},
		{"aes256gcm16-prfsha384-modp2048", "aes256gcm16-esn"},
		{"chacha20poly1305-prfsha512-x25519", "chacha20poly1305"},
	} {
		t.Run(suite.ike, func(t *testing.T) {
			sa, sb := pairSides(t)
			sa.proposals, sb.proposals, sa.esp, sb.esp = suite.ike, suite.ike, suite.esp, suite.esp
			a := newPeer(t, "a", sa.config(t, "a"))
			b := newPeer(t, "b", sb.config(t, "b"))
			establish(t, a, b, "a-net")
			ia, ib := a.sas(t)[0], b.sas(t)[0]
			if ia.Role != "initiator" || ib.Role != "responder" || ia.SPIi != ib.SPIi || ia.SPIr != ib.SPIr || ia.State != "established" {
				t.Fatalf("IKE SAs differ: %+v / %+v", ia, ib)
			}
			ca, cb := ia.Children[0], ib.Children[0]
			if ca.SPIIn != cb.SPIOut || ca.SPIOut != cb.SPIIn {
				t.Errorf("SPIs not crosswise: a in %s out %s, b in %s out %s", ca.SPIIn, ca.SPIOut, cb.SPIIn, cb.SPIOut)
			}
			if ca.LocalTS != "10.1.0.0/16" || ca.RemoteTS != "10.2.0.0/16" || cb.LocalTS != "10.2.0.0/16" {
				t.Errorf("selectors %s %s / %s %s", ca.LocalTS, ca.RemoteTS, cb.LocalTS, cb.RemoteTS)
			}
			// 2 SAs and 3 policies on each side.
			for _, p := range []*peer{a, b} {
				if s, pol := p.counts(t); s != 2 || pol != 3 {
					t.Errorf("%s: %d SAs, %d policies; want 2 and 3", p.name, s, pol)
				}
			}
			// Simulated traffic: a sends, b receives on the SA a sent on.
			res, err := a.b.Inject(t.Context(), nokernel.Packet{Dir: kernelops.DirOut, Src: netip.MustParseAddr("10.1.0.5"),
				Dst: netip.MustParseAddr("10.2.0.9"), Proto: 6, SrcPort: 40000, DstPort: 443, Len: 1000})
			if err != nil || res.Verdict != nokernel.Protected || len(res.SAs) != 1 {
				t.Fatalf("outbound on a: %+v %v", res, err)
			}
			res, err = b.b.Inject(t.Context(), nokernel.Packet{Dir: kernelops.DirIn, SA: res.SAs[0],
				Src: netip.MustParseAddr("10.1.0.5"), Dst: netip.MustParseAddr("10.2.0.9"), Proto: 6, Len: 1000})
			if err != nil || res.Verdict != nokernel.Delivered {
				t.Fatalf("inbound on b: %+v %v", res, err)
			}
			if c := a.sas(t)[0].Children[0]; c.BytesOut != 1000 || c.PacketsOut != 1 {
				t.Errorf("a's counters %+v", c)
			}
			if c := b.sas(t)[0].Children[0]; c.BytesIn != 1000 || c.PacketsIn != 1 {
				t.Errorf("b's counters %+v", c)
			}
			hs, _ := a.e.Handshakes(t.Context())
			if len(hs) != 1 || hs[0] <= 0 {
				t.Errorf("handshakes %v", hs)
			}
			t.Logf("handshake %s", hs[0])
		})
	}
}

func TestDeleteFromEitherSide(t *testing.T) {
	noLeaks(t)
	for _, tc := range []struct {
		name      string
		by        string // "a" or "b"
		terminate string
	}{
		{"ike by initiator", "a", "a"},
		{"ike by responder", "b", "b"},
		{"child by initiator", "a", "a-net"},
		{"child by responder", "b", "b-net"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			sa, sb := pairSides(t)
			a := newPeer(t, "a", sa.config(t, "a"))
			b := newPeer(t, "b", sb.config(t, "b"))
			establish(t, a, b, "a-net")
			by := a
			if tc.by == "b" {
				by = b
			}
			if err := by.e.Terminate(ctxT(t, 5*time.Second), tc.terminate); err != nil {
				t.Fatal(err)
			}
			a.expectEmpty(t)
			b.expectEmpty(t)
			if tc.terminate == "a" || tc.terminate == "b" {
				waitFor(t, "IKE SAs gone", 3*time.Second, func() bool { return len(a.sas(t)) == 0 && len(b.sas(t)) == 0 })
			} else {
				// The IKE SA stays, childless.
				if len(a.sas(t)) != 1 || len(b.sas(t)) != 1 {
					t.Errorf("IKE SAs: %d / %d", len(a.sas(t)), len(b.sas(t)))
				}
			}
		})
	}
}
