package interop

import (
	"context"
	"encoding/json"
	"fmt"
	"strings"
	"testing"
	"time"

	"github.com/keyplane/keyplane/ike"
	"github.com/keyplane/keyplane/ike/config"
	"github.com/keyplane/keyplane/internal/lab"
	"github.com/keyplane/keyplane/internal/swan"
)

// routeBasedRig is the set-up the route-based tests share: the VM rig
// with childExtra on keyplane's child "net", keyplane running on the
// XFRM backend, and a context of timeout (scaled).
func routeBasedRig(t *testing.T, timeout time.Duration, childExtra ...string) (context.Context, *lab.Pair, *swan.Charon, *keyplane) {
	t.Helper()
	lab.RequireVM(t, "kernel ESP and XFRM interfaces for keyplane's XFRM backend")
	requireSwan(t)
	ctx, cancel := context.WithTimeout(t.Context(), scale(timeout))
	t.Cleanup(cancel)
	p, c, cfg := vmRig(t, suites[0], childExtra...)
	return ctx, p, c, startXfrmKeyplane(t, cfg)
}

// establish initiates keyplane's child and waits until keyplane lists it
// installed and charon lists its connection conn established.
func establish(t *testing.T, ctx context.Context, p *lab.Pair, c *swan.Charon, k *keyplane, child, conn string) ike.ChildInfo {
	t.Helper()
	if err := k.e.Initiate(ctx, child); err != nil {
		diagnose(t, p)
		t.Fatalf("initiate %s: %v", child, err)
	}
	var ch ike.ChildInfo
	for ok := false; !ok; {
		if ch, ok = k.childNamed(t, child); ok {
			break
		}
		select {
		case <-ctx.Done():
			t.Fatalf("keyplane has no installed child %s: %v", child, ctx.Err())
		case <-time.After(20 * time.Millisecond):
		}
	}
	if _, err := c.WaitIKE(ctx, conn, "ESTABLISHED"); err != nil {
		t.Fatal(err)
	}
	return ch
}

// childNamed is keyplane's installed child of that name on an
// established IKE SA.
func (k *keyplane) childNamed(t *testing.T, name string) (ike.ChildInfo, bool) {
	sas, err := k.e.IKESAs(t.Context())
	if err != nil {
		t.Fatal(err)
	}
	for _, sa := range sas {
		for _, ch := range sa.Children {
			if ch.Name == name && ch.State == "installed" && sa.State == "established" {
				return ch, true
			}
		}
	}
	return ike.ChildInfo{}, false
}

// packetsGrew checks that each of the child's SAs counted at least n
// more packets between the readings before and after (xfrmBytes).
func packetsGrew(t *testing.T, before, after map[string][2]uint64, ch ike.ChildInfo, n uint64, what string) {
	t.Helper()
	for _, spi := range []string{ch.SPIIn, ch.SPIOut} {
		if b, a := before[spiKey(spi)], after[spiKey(spi)]; a[1] < b[1]+n {
			t.Errorf("SA %s: packets %d -> %d, want %d more %s", spi, b[1], a[1], n, what)
		}
	}
}

// TestVMRouteBasedInterface: as TestVMRouteBased, but keyplane creates
// the XFRM interface itself (xfrm_interface = xfrm42): it appears with
// if_id 42 when the child installs, ping routed into it passes both ways
// against charon with the SA counters moving, and it is gone with the
// child and again at daemon stop.
func TestVMRouteBasedInterface(t *testing.T) {
	ctx, p, c, k := routeBasedRig(t, 60*time.Second, "if_id_in = 42", "if_id_out = 42", "xfrm_interface = xfrm42")
	linked := func() string {
		out, err := p.A.Run("ip", "-d", "link", "show", "xfrm42")
		if err != nil {
			return ""
		}
		return out
	}
	if l := linked(); l != "" {
		t.Fatalf("xfrm42 exists before the child installs:\n%s", l)
	}
	establish(t, ctx, p, c, k, "net", "kp")
	if l := linked(); !strings.Contains(l, "if_id 0x2a") {
		t.Fatalf("xfrm42 after install, want an xfrm interface with if_id 0x2a:\n%s", l)
	}
	p.A.Exec(t, "ip", "route", "replace", innerS.String()+"/32", "dev", "xfrm42", "src", innerK.String())
	before := xfrmBytes(t, p.A)
	ping(t, p.A, innerK.String(), innerS.String(), 3)
	ping(t, p.B, innerS.String(), innerK.String(), 3)
	_, kch, _ := k.child(t)
	packetsGrew(t, before, xfrmBytes(t, p.A), kch, 6, "through keyplane's XFRM interface")
	terminate(t, ctx, c, k, false)
	waitKernelsEmpty(t, p)
	if l := linked(); l != "" {
		t.Errorf("xfrm42 left after its only child was deleted:\n%s", l)
	}

	// Up again, then the daemon stops: the interface goes with it.
	if err := k.e.Initiate(ctx, "net"); err != nil {
		t.Fatalf("initiate again: %v", err)
	}
	k.waitChild(t, ctx)
	if linked() == "" {
		t.Fatal("xfrm42 missing after the second install")
	}
	if err := k.e.Close(); err != nil {
		t.Fatal(err)
	}
	if l := linked(); l != "" {
		t.Errorf("xfrm42 left after the daemon stopped:\n%s", l)
	}
	if st, pol := xfrmLeft(t, p.A); st != "" || pol != "" {
		t.Errorf("left in keyplane's kernel after stop:\n%s\n%s", st, pol)
	}
}

// TestVMRouteBasedMarks: keyplane's child with mark_in = 0x2a/0xff and
// mark_out = 43 against charon: the kernel's inbound SA and in/fwd
// policies carry mark 0x2a/0xff, the outbound SA and out policy
// 0x2b/0xffffffff; an unmarked ping matches no policy of the child (its
// outbound SA counts nothing), a ping with SO_MARK 43 is encrypted (the
// outbound SA counts it). The replies are not marked on the way in, so
// they find no inbound SA: that side is checked in the kernel's tables
// only.
func TestVMRouteBasedMarks(t *testing.T) {
	ctx, p, c, k := routeBasedRig(t, 40*time.Second, "mark_in = 0x2a/0xff", "mark_out = 43")
	kch := establish(t, ctx, p, c, k, "net", "kp")
	states := p.A.Exec(t, "ip", "xfrm", "state")
	for _, m := range []string{"mark 0x2a/0xff", "mark 0x2b/0xffffffff"} {
		if n := strings.Count(states, m); n != 1 {
			t.Errorf("ip xfrm state shows %q on %d SAs, want 1:\n%s", m, n, states)
		}
	}
	pols := p.A.Exec(t, "ip", "xfrm", "policy")
	for m, want := range map[string]int{"mark 0x2a/0xff": 2, "mark 0x2b/0xffffffff": 1} {
		if n := strings.Count(pols, m); n != want {
			t.Errorf("ip xfrm policy shows %q on %d policies, want %d:\n%s", m, n, want, pols)
		}
	}
	out := spiKey(kch.SPIOut)
	before := xfrmBytes(t, p.A)[out]
	if o, err := p.A.Run("ping", "-c", "1", "-W", "1", "-I", innerK.String(), innerS.String()); err == nil {
		t.Errorf("an unmarked ping passed (charon should drop it unencrypted):\n%s", o)
	}
	if a := xfrmBytes(t, p.A)[out]; a[1] != before[1] {
		t.Errorf("outbound SA counted %d packets of an unmarked ping, want 0", a[1]-before[1])
	}
	_, _ = p.A.Run("ping", "-c", "3", "-i", "0.2", "-W", "1", "-m", "43", "-I", innerK.String(), innerS.String())
	if a := xfrmBytes(t, p.A)[out]; a[1] < before[1]+3 {
		t.Errorf("outbound SA packets %d -> %d after 3 pings with mark 43, want 3 more", before[1], a[1])
	}
	terminate(t, ctx, c, k, false)
	waitKernelsEmpty(t, p)
}

// tunnel is one of TestVMRouteBasedTwoInterfaces' route-based tunnels:
// its if_id and XFRM interface on both ends, the inner addresses it
// carries (keyplane's, charon's), keyplane's connection and child and
// charon's connection.
type tunnel struct {
	ifID           int
	dev            string
	inner, innerCh string
	conn, child    string
	charonConn     string
}

// TestVMRouteBasedTwoInterfaces: two route-based tunnels against charon,
// both with 0.0.0.0/0 selectors on both ends, kept apart only by their
// if_ids: keyplane creates xfrm41 and xfrm42 (xfrm_interface) for its two
// connections; charon's children carry the same if_ids, with interfaces
// of its own. Routes send each pair of inner addresses into its
// interface. A ping through one tunnel moves only that tunnel's SA
// counters (and its interface's), both ways; the other's stay where they
// were.
func TestVMRouteBasedTwoInterfaces(t *testing.T) {
	lab.RequireVM(t, "kernel ESP and XFRM interfaces for keyplane's XFRM backend and charon's kernel-netlink")
	requireSwan(t)
	ctx, cancel := context.WithTimeout(t.Context(), scale(90*time.Second))
	defer cancel()
	tunnels := []tunnel{
		{41, "xfrm41", "10.10.1.1", "10.10.2.1", "peer1", "net1", "kp1"},
		{42, "xfrm42", "10.10.1.2", "10.10.2.2", "peer2", "net2", "kp2"},
	}
	p := lab.NewPair(t)
	s := suites[0]
	var conns []swan.Conn
	var kconns []string
	for _, tu := range tunnels {
		p.A.Exec(t, "ip", "addr", "add", tu.inner+"/32", "dev", "lo")
		p.B.Exec(t, "ip", "addr", "add", tu.innerCh+"/32", "dev", "lo")
		id := fmt.Sprint(tu.ifID)
		conns = append(conns, swan.Conn{Name: tu.charonConn, PSK: psk, IKEProposal: s.ike, ESPProposal: s.esp,
			LocalID: "b.keyplane.test", RemoteID: tu.conn + ".keyplane.test", Local: p.B4.String(), Remote: p.A4.String(),
			LocalTS: []string{"0.0.0.0/0"}, RemoteTS: []string{"0.0.0.0/0"},
			Extra: map[string]string{"child.if_id_in": id, "child.if_id_out": id}})
		kconns = append(kconns, fmt.Sprintf(`
	%s {
		local_addrs = %s
		remote_addrs = %s
		proposals = %s
		psk_env = KP_PSK
		local {
			id = %s.keyplane.test
		}
		remote {
			id = b.keyplane.test
		}
		children {
			%s {
				local_ts = 0.0.0.0/0
				remote_ts = 0.0.0.0/0
				esp_proposals = %s
				if_id_in = %d
				if_id_out = %d
				xfrm_interface = %s
			}
		}
	}`, tu.conn, p.A4, p.B4, s.ike, tu.conn, tu.child, s.esp, tu.ifID, tu.ifID, tu.dev))
		// charon's end of the tunnel: its interface, and the route into it.
		p.B.Exec(t, "ip", "link", "add", tu.dev, "type", "xfrm", "dev", p.IfB, "if_id", id)
		p.B.Exec(t, "ip", "link", "set", tu.dev, "up")
		p.B.Exec(t, "ip", "route", "add", tu.inner+"/32", "dev", tu.dev, "src", tu.innerCh)
	}
	// charon's routes for 0.0.0.0/0 would take its underlay: the tests'
	// routes into the interfaces are the only ones.
	c := swan.Start(t, swan.Options{NS: p.B, Mode: swan.KernelNetlink, Conns: conns, Settings: map[string]string{"install_routes": "no"}})
	src := fmt.Sprintf("daemon {\n\tretransmit_timeout = 2s\n\tlog_level = debug\n}\nbackend {\n\tname = xfrm\n\tparams {\n\t\tnetns = /run/netns/%s\n\t}\n}\nconnections {%s\n}\n",
		p.A.Name, strings.Join(kconns, ""))
	cfg, err := config.Parse("two.conf", []byte(src), config.Options{Getenv: func(k string) (string, bool) { return psk, k == "KP_PSK" }})
	if err != nil {
		t.Fatalf("%v\n%s", err, src)
	}
	k := startXfrmKeyplane(t, cfg)

	children := map[string]ike.ChildInfo{}
	for _, tu := range tunnels {
		children[tu.child] = establish(t, ctx, p, c, k, tu.child, tu.charonConn)
		if l := p.A.Exec(t, "ip", "-d", "link", "show", tu.dev); !strings.Contains(l, fmt.Sprintf("if_id 0x%x", tu.ifID)) {
			t.Fatalf("%s, want an xfrm interface with if_id %d:\n%s", tu.dev, tu.ifID, l)
		}
		p.A.Exec(t, "ip", "route", "replace", tu.innerCh+"/32", "dev", tu.dev, "src", tu.inner)
	}
	for _, tu := range tunnels {
		ch := children[tu.child]
		if ch.LocalTS != "0.0.0.0/0" || ch.RemoteTS != "0.0.0.0/0" {
			t.Errorf("%s: selectors %s === %s, want 0.0.0.0/0 both", tu.child, ch.LocalTS, ch.RemoteTS)
		}
	}
	pols := p.A.Exec(t, "ip", "xfrm", "policy")
	for _, tu := range tunnels {
		if n := strings.Count(pols, fmt.Sprintf("if_id 0x%x", tu.ifID)); n != 3 {
			t.Errorf("ip xfrm policy shows if_id %d on %d policies, want 3 (out, in, fwd):\n%s", tu.ifID, n, pols)
		}
	}
	linkPackets := func(dev string) (rx, tx uint64) {
		out := p.A.Exec(t, "ip", "-s", "-j", "link", "show", "dev", dev)
		var l []struct {
			Stats struct {
				RX, TX struct {
					Packets uint64 `json:"packets"`
				}
			} `json:"stats64"`
		}
		if err := json.Unmarshal([]byte(out), &l); err != nil || len(l) != 1 {
			t.Fatalf("counters of %s: %v\n%s", dev, err, out)
		}
		return l[0].Stats.RX.Packets, l[0].Stats.TX.Packets
	}
	for i, tu := range tunnels {
		other := tunnels[1-i]
		before := xfrmBytes(t, p.A)
		rx0, tx0 := linkPackets(tu.dev)
		orx0, otx0 := linkPackets(other.dev)
		ping(t, p.A, tu.inner, tu.innerCh, 3)
		ping(t, p.B, tu.innerCh, tu.inner, 3)
		after := xfrmBytes(t, p.A)
		packetsGrew(t, before, after, children[tu.child], 6, "through "+tu.dev)
		for _, spi := range []string{children[other.child].SPIIn, children[other.child].SPIOut} {
			if b, a := before[spiKey(spi)], after[spiKey(spi)]; a[1] != b[1] {
				t.Errorf("%s's SA %s counted %d packets of %s's pings, want 0", other.child, spi, a[1]-b[1], tu.child)
			}
		}
		rx1, tx1 := linkPackets(tu.dev)
		orx1, otx1 := linkPackets(other.dev)
		if rx1 < rx0+6 || tx1 < tx0+6 {
			t.Errorf("%s: rx %d -> %d, tx %d -> %d, want 6 more each", tu.dev, rx0, rx1, tx0, tx1)
		}
		if orx1 != orx0 || otx1 != otx0 {
			t.Errorf("%s moved with %s's pings: rx %d -> %d, tx %d -> %d", other.dev, tu.dev, orx0, orx1, otx0, otx1)
		}
		t.Logf("%s: SAs in/out %v/%v packets; %s rx/tx %d/%d, %s rx/tx %d/%d (unchanged)", tu.child,
			after[spiKey(children[tu.child].SPIIn)], after[spiKey(children[tu.child].SPIOut)], tu.dev, rx1-rx0, tx1-tx0, other.dev, orx1-orx0, otx1-otx0)
	}
	for _, tu := range tunnels {
		if err := k.e.Terminate(ctx, tu.conn); err != nil {
			t.Fatal(err)
		}
		if err := c.WaitGone(ctx, tu.charonConn); err != nil {
			t.Fatal(err)
		}
	}
	k.waitNoSAs(t, ctx)
	for _, tu := range tunnels {
		if out, err := p.A.Run("ip", "link", "show", tu.dev); err == nil {
			t.Errorf("%s left after its child was deleted:\n%s", tu.dev, out)
		}
	}
	// The holes for IKE (0.0.0.0/0 selectors) stay until the daemon stops.
	if err := k.e.Close(); err != nil {
		t.Fatal(err)
	}
	if st, pol := xfrmLeft(t, p.A); st != "" || pol != "" {
		t.Errorf("left in keyplane's kernel after stop:\n%s\n%s", st, pol)
	}
}
