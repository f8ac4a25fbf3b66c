package swan

import (
	"context"
	"fmt"
	"net/netip"
	"regexp"
	"slices"
	"strconv"
	"testing"
	"time"

	"github.com/keyplane/keyplane/internal/lab"
)

// Inner addresses: each side's traffic selector, held on its loopback
// (libipsec routes through its TUN with that source; LAB.md).
var (
	innerA = netip.MustParseAddr("10.10.1.1")
	innerB = netip.MustParseAddr("10.10.2.1")
)

const testPSK = "keyplane-swan-rig-psk"

// swanPair is two charons in the two namespaces of a lab.Pair.
type swanPair struct {
	p    *lab.Pair
	a, b *Charon
}

// pairConn is side A's (initiator's) or B's connection for the pair.
func pairConn(p *lab.Pair, side string, ike, esp, start string) Conn {
	c := Conn{
		Name: "kp", PSK: testPSK, IKEProposal: ike, ESPProposal: esp, StartAction: start,
		LocalID: "a.keyplane.test", RemoteID: "b.keyplane.test",
		Local: p.A4.String(), Remote: p.B4.String(),
		LocalTS: []string{innerA.String() + "/32"}, RemoteTS: []string{innerB.String() + "/32"},
	}
	if side == "B" {
		c.LocalID, c.RemoteID = c.RemoteID, c.LocalID
		c.Local, c.Remote = c.Remote, c.Local
		c.LocalTS, c.RemoteTS = c.RemoteTS, c.LocalTS
	}
	return c
}

// newPair is a lab pair with the inner addresses on each side's loopback.
func newPair(t *testing.T) *lab.Pair {
	t.Helper()
	p := lab.NewPair(t)
	p.A.Exec(t, "ip", "addr", "add", innerA.String()+"/32", "dev", "lo")
	p.B.Exec(t, "ip", "addr", "add", innerB.String()+"/32", "dev", "lo")
	return p
}

// newSwanPair starts B (responder, start action none) then A with
// startA as its start action, on a new pair.
func newSwanPair(t *testing.T, mode Mode, ike, esp, startA string) *swanPair {
	t.Helper()
	return startPair(t, newPair(t), mode, ike, esp, startA)
}

// startPair is newSwanPair on an existing pair (from newPair): subtests
// share one pair, which saves seconds per subtest in the VM lab.
func startPair(t *testing.T, p *lab.Pair, mode Mode, ike, esp, startA string) *swanPair {
	t.Helper()
	b := Start(t, Options{NS: p.B, Mode: mode, Conns: []Conn{pairConn(p, "B", ike, esp, "none")}})
	a := Start(t, Options{NS: p.A, Mode: mode, Conns: []Conn{pairConn(p, "A", ike, esp, startA)}})
	return &swanPair{p: p, a: a, b: b}
}

// establish waits for both sides' IKE SA and checks that what they list
// agrees crosswise. It returns A's and B's view.
func (sp *swanPair) establish(t *testing.T, ctx context.Context, wantEncr string, wantKey int, wantDH string) (IKESA, IKESA) {
	t.Helper()
	t0 := time.Now()
	sa, err := sp.a.WaitIKE(ctx, "kp", "ESTABLISHED")
	if err != nil {
		t.Fatal(err)
	}
	sb, err := sp.b.WaitIKE(ctx, "kp", "ESTABLISHED")
	if err != nil {
		t.Fatal(err)
	}
	t.Logf("established (seen by both) %v after the wait began: A %v", time.Since(t0).Round(time.Millisecond), sa)
	checkCrosswise(t, sp.p, sa, sb, wantEncr, wantKey, wantDH)
	return sa, sb
}

// checkCrosswise checks that initiator A's and responder B's listing of
// the same IKE and child SA are mirror images.
func checkCrosswise(t *testing.T, p *lab.Pair, sa, sb IKESA, wantEncr string, wantKey int, wantDH string) {
	t.Helper()
	if !sa.Initiator || sb.Initiator {
		t.Errorf("initiator flags: A %v, B %v; want A only", sa.Initiator, sb.Initiator)
	}
	if sa.LocalSPI == "" || sa.RemoteSPI == "" || sa.LocalSPI == sa.RemoteSPI {
		t.Errorf("A's IKE SPIs %q/%q", sa.LocalSPI, sa.RemoteSPI)
	}
	if sa.LocalSPI != sb.RemoteSPI || sa.RemoteSPI != sb.LocalSPI {
		t.Errorf("IKE SPIs not crosswise equal: A %s/%s, B %s/%s", sa.LocalSPI, sa.RemoteSPI, sb.LocalSPI, sb.RemoteSPI)
	}
	if sa.Local != p.A4.String() || sa.Remote != p.B4.String() || sb.Local != p.B4.String() || sb.Remote != p.A4.String() {
		t.Errorf("endpoints: A %s <-> %s, B %s <-> %s", sa.Local, sa.Remote, sb.Local, sb.Remote)
	}
	if sa.LocalID != "a.keyplane.test" || sa.RemoteID != "b.keyplane.test" || sb.LocalID != sa.RemoteID || sb.RemoteID != sa.LocalID {
		t.Errorf("identities: A %s/%s, B %s/%s", sa.LocalID, sa.RemoteID, sb.LocalID, sb.RemoteID)
	}
	for _, s := range []IKESA{sa, sb} {
		if s.EncrAlg == "" || s.PRFAlg == "" || s.DHGroup != wantDH {
			t.Errorf("%s IKE algorithms: encr %s prf %s dh %s; want dh %s", s.Local, s.EncrAlg, s.PRFAlg, s.DHGroup, wantDH)
		}
	}
	ca, ok := sa.Child("kp")
	if !ok || ca.State != "INSTALLED" {
		t.Fatalf("A has no installed child kp: %v", sa)
	}
	cb, ok := sb.Child("kp")
	if !ok || cb.State != "INSTALLED" {
		t.Fatalf("B has no installed child kp: %v", sb)
	}
	if ca.SPIIn == "" || ca.SPIIn != cb.SPIOut || ca.SPIOut != cb.SPIIn {
		t.Errorf("child SPIs not crosswise equal: A in %s out %s, B in %s out %s", ca.SPIIn, ca.SPIOut, cb.SPIIn, cb.SPIOut)
	}
	if !slices.Equal(ca.LocalTS, cb.RemoteTS) || !slices.Equal(ca.RemoteTS, cb.LocalTS) ||
		!slices.Equal(ca.LocalTS, []string{innerA.String() + "/32"}) {
		t.Errorf("traffic selectors: A %v === %v, B %v === %v", ca.LocalTS, ca.RemoteTS, cb.LocalTS, cb.RemoteTS)
	}
	for _, c := range []ChildSA{ca, cb} {
		if c.Mode != "TUNNEL" || c.Protocol != "ESP" || c.EncrAlg != wantEncr || c.EncrKeySize != wantKey {
			t.Errorf("child %s: mode %s protocol %s encr %s/%d; want TUNNEL ESP %s/%d", c.SPIIn, c.Mode, c.Protocol, c.EncrAlg, c.EncrKeySize, wantEncr, wantKey)
		}
	}
}

// ping has A's inner address ping B's until n replies came back. -w, not
// -W: with -W ping waits only two round-trip times for the last reply once
// it has seen one, and libipsec's userspace path is slower than that now
// and then.
func (sp *swanPair) ping(t *testing.T, n int) {
	t.Helper()
	deadline := int(timeoutScale(10 * time.Second).Seconds())
	out, err := sp.p.A.Run("ping", "-c", fmt.Sprint(n), "-i", "0.2", "-w", fmt.Sprint(deadline), "-I", innerA.String(), innerB.String())
	if err != nil {
		t.Fatalf("ping through the tunnel: %v", err)
	}
	// With -w, ping sends until n replies came; slow replies mean more sent
	// (and received) than n.
	m := regexp.MustCompile(`(\d+) received`).FindStringSubmatch(out)
	if m == nil {
		t.Fatalf("ping output without a count:\n%s", out)
	}
	if got, _ := strconv.Atoi(m[1]); got < n {
		t.Fatalf("ping: %d replies, want %d:\n%s", got, n, out)
	}
}

// childCounters returns the installed child kp of c.
func childOf(t *testing.T, ctx context.Context, c *Charon) ChildSA {
	t.Helper()
	sas, err := c.ListSAs(ctx)
	if err != nil {
		t.Fatal(err)
	}
	for _, sa := range sas {
		if ch, ok := sa.Child("kp"); ok && sa.Name == "kp" {
			return ch
		}
	}
	t.Fatalf("no child kp: %v", sas)
	return ChildSA{}
}

// terminate deletes the IKE SA from A and waits for both sides to forget it.
func (sp *swanPair) terminate(t *testing.T, ctx context.Context) {
	t.Helper()
	if err := sp.a.Terminate(ctx, "kp"); err != nil {
		t.Fatal(err)
	}
	for _, c := range []*Charon{sp.a, sp.b} {
		if err := c.WaitGone(ctx, "kp"); err != nil {
			t.Fatal(err)
		}
	}
}
