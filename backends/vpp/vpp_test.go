//go:build vpp

package vpp_test

import (
	"context"
	"errors"
	"fmt"
	"net/netip"
	"os"
	"path/filepath"
	"runtime"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/keyplane/keyplane/backends/vpp"
	"github.com/keyplane/keyplane/backends/vpp/vppharness"
	"github.com/keyplane/keyplane/backends/vpp/vpptest"
	"github.com/keyplane/keyplane/iana"
	"github.com/keyplane/keyplane/kernelops"
	"go.fd.io/govpp/api"
	"go.fd.io/govpp/binapi/ipsec_types"
)

var (
	local  = vppharness.Local
	remote = netip.MustParseAddr("198.51.100.1")
	inner1 = netip.MustParsePrefix("10.1.0.0/16")
	inner2 = netip.MustParsePrefix("10.2.0.0/16")
)

func double(t *testing.T, extra map[string]string) *vppharness.Double {
	t.Helper()
	d, err := vppharness.NewDouble(t, extra)
	if err != nil {
		t.Fatal(err)
	}
	return d
}

func gcmSA(spi uint32, src, dst netip.Addr, reqid uint32) *kernelops.SA {
	key := make(kernelops.Key, 20)
	for i := range key {
		key[i] = byte(i + 1)
	}
	return &kernelops.SA{
		ID:           kernelops.SAID{Src: src, Dst: dst, SPI: spi, Proto: kernelops.ProtoESP},
		Mode:         kernelops.ModeTunnel,
		ReqID:        reqid,
		Encryption:   kernelops.Encryption{ID: iana.EncrAESGCM16, KeyBits: 128, Key: key},
		ReplayWindow: 128,
	}
}

func outPolicy(reqid uint32) *kernelops.Policy {
	return &kernelops.Policy{Selector: kernelops.Selector{Src: inner1, Dst: inner2}, Dir: kernelops.DirOut,
		Action: kernelops.ActionIPsec, Templates: []kernelops.Template{{Src: local, Dst: remote,
			Proto: kernelops.ProtoESP, Mode: kernelops.ModeTunnel, ReqID: reqid}}}
}

func inPolicy(reqid uint32) *kernelops.Policy {
	return &kernelops.Policy{Selector: kernelops.Selector{Src: inner2, Dst: inner1}, Dir: kernelops.DirIn,
		Action: kernelops.ActionIPsec, Templates: []kernelops.Template{{Src: remote, Dst: local,
			Proto: kernelops.ProtoESP, Mode: kernelops.ModeTunnel, ReqID: reqid}}}
}

func sadOf(t *testing.T, d *vppharness.Double) kernelops.SAD {
	sad, err := kernelops.As[kernelops.SAD](d.Backend)
	if err != nil {
		t.Fatal(err)
	}
	return sad
}

func spdOf(t *testing.T, d *vppharness.Double) kernelops.SPD {
	spd, err := kernelops.As[kernelops.SPD](d.Backend)
	if err != nil {
		t.Fatal(err)
	}
	return spd
}

// vppSA finds an SA in the double by SPI.
func vppSA(t *testing.T, d *vppharness.Double, spi uint32) (uint32, vpptest.SA, bool) {
	t.Helper()
	sas, err := d.Server.SAs()
	if err != nil {
		t.Fatal(err)
	}
	for id, s := range sas {
		if s.Entry.Spi == spi {
			return id, s, true
		}
	}
	return 0, vpptest.SA{}, false
}

// TestSAInVPP checks what reaches VPP for an SA — algorithm, key and salt
// split, flags, tunnel, ports, window — and that keys read back whole
// through VPP's dump (whose salt comes back byte-swapped).
func TestSAInVPP(t *testing.T) {
	d := double(t, nil)
	sad := sadOf(t, d)
	ctx := t.Context()
	sa := gcmSA(0x1234, local, remote, kernelops.DefaultReqIDMin+1)
	sa.ESN = true
	sa.Encap = &kernelops.Encap{SrcPort: 4500, DstPort: 31000}
	if err := sad.AddSA(ctx, sa); err != nil {
		t.Fatal(err)
	}
	_, v, ok := vppSA(t, d, 0x1234)
	if !ok {
		t.Fatal("SA not in VPP")
	}
	e := v.Entry
	if e.CryptoAlgorithm != ipsec_types.IPSEC_API_CRYPTO_ALG_AES_GCM_128 || e.CryptoKey.Length != 16 {
		t.Errorf("crypto %v key length %d, want AES-GCM-128 with a 16-byte key", e.CryptoAlgorithm, e.CryptoKey.Length)
	}
	if e.Salt != 0x11121314 {
		t.Errorf("salt %#x, want the key's last 4 bytes 0x11121314", e.Salt)
	}
	want := ipsec_types.IPSEC_API_SAD_FLAG_USE_ESN | ipsec_types.IPSEC_API_SAD_FLAG_USE_ANTI_REPLAY |
		ipsec_types.IPSEC_API_SAD_FLAG_IS_TUNNEL | ipsec_types.IPSEC_API_SAD_FLAG_UDP_ENCAP
	if e.Flags != want {
		t.Errorf("flags %v, want %v", e.Flags, want)
	}
	if e.UDPSrcPort != 4500 || e.UDPDstPort != 31000 || e.AntiReplayWindowSize != 128 {
		t.Errorf("ports %d->%d window %d", e.UDPSrcPort, e.UDPDstPort, e.AntiReplayWindowSize)
	}
	// Read back through VPP's dump (the SAs stream).
	for got, err := range sad.SAs(ctx) {
		if err != nil {
			t.Fatal(err)
		}
		if got.ID == sa.ID && string(got.Encryption.Key) != string(sa.Encryption.Key) {
			t.Errorf("key read back as %x, want %x", []byte(got.Encryption.Key), []byte(sa.Encryption.Key))
		}
	}
	// An inbound SA on an allocated SPI gets VPP's inbound flag.
	spi, err := sad.AllocSPI(ctx, kernelops.SPIRequest{Src: remote, Dst: local, Proto: kernelops.ProtoESP})
	if err != nil {
		t.Fatal(err)
	}
	in := gcmSA(spi, remote, local, kernelops.DefaultReqIDMin+1)
	if err := sad.AddSA(ctx, in); err != nil {
		t.Fatal(err)
	}
	if _, v, _ := vppSA(t, d, spi); v.Entry.Flags&ipsec_types.IPSEC_API_SAD_FLAG_IS_INBOUND == 0 {
		t.Errorf("inbound SA lacks IS_INBOUND: %v", v.Entry.Flags)
	}
	// UpdateSA moves the NAT-T ports in place.
	up := sa.Clone()
	up.Encap.DstPort = 32000
	if err := sad.UpdateSA(ctx, up); err != nil {
		t.Fatal(err)
	}
	if _, v, _ := vppSA(t, d, 0x1234); v.Entry.UDPDstPort != 32000 {
		t.Errorf("after update: dst port %d", v.Entry.UDPDstPort)
	}
	// Keys cannot change in place.
	up.Encryption.Key = append(kernelops.Key(nil), up.Encryption.Key...)
	up.Encryption.Key[0] ^= 1
	if err := sad.UpdateSA(ctx, up); !errors.Is(err, kernelops.ErrNotSupported) {
		t.Errorf("key change: %v, want ErrNotSupported", err)
	}
}

// TestPolicyFollowsSAs: an outbound ipsec policy discards until its SA
// exists, protects with the newest SA of its reqid, and falls back when
// SAs go; VPP's lock keeps no deleted SA alive.
func TestPolicyFollowsSAs(t *testing.T) {
	d := double(t, nil)
	sad, spd := sadOf(t, d), spdOf(t, d)
	ctx := t.Context()
	reqid := kernelops.DefaultReqIDMin + 7
	p := outPolicy(reqid)
	if err := spd.AddPolicy(ctx, p); err != nil {
		t.Fatal(err)
	}
	send := func() vpptest.Outcome {
		o, err := d.Server.Send(netip.MustParseAddr("10.1.0.5"), netip.MustParseAddr("10.2.0.9"), 17, 1000, 53, 3, 100)
		if err != nil {
			t.Fatal(err)
		}
		return o
	}
	if o := send(); o != vpptest.Discarded {
		t.Fatalf("before any SA: %v, want discarded", o)
	}
	old := gcmSA(0x2001, local, remote, reqid)
	if err := sad.AddSA(ctx, old); err != nil {
		t.Fatal(err)
	}
	if o := send(); o != vpptest.Protected {
		t.Fatalf("with an SA: %v, want protected", o)
	}
	newer := gcmSA(0x2002, local, remote, reqid)
	if err := sad.AddSA(ctx, newer); err != nil {
		t.Fatal(err)
	}
	send()
	_, vo, _ := vppSA(t, d, 0x2001)
	_, vn, _ := vppSA(t, d, 0x2002)
	if vo.Packets != 3 || vn.Packets != 3 {
		t.Errorf("packets old %d new %d: want 3 each (the newer SA took over)", vo.Packets, vn.Packets)
	}
	if err := sad.DeleteSA(ctx, newer.ID); err != nil {
		t.Fatal(err)
	}
	if _, _, ok := vppSA(t, d, 0x2002); ok {
		t.Errorf("deleted SA still in VPP (a policy kept its lock)")
	}
	if o := send(); o != vpptest.Protected {
		t.Errorf("after deleting the newer SA: %v, want protected by the older", o)
	}
	e, err := sad.GetSA(ctx, old.ID)
	if err != nil {
		t.Fatal(err)
	}
	if e.Counters.Packets != 6 || e.Counters.Bytes != 600 || e.Counters.LastUsed.IsZero() {
		t.Errorf("counters %+v", e.Counters)
	}
	// Inbound: one PROTECT entry per matching SA.
	if err := spd.AddPolicy(ctx, inPolicy(reqid)); err != nil {
		t.Fatal(err)
	}
	for _, spi := range []uint32{0x3001, 0x3002} {
		in := gcmSA(spi, remote, local, reqid)
		in.Dir = kernelops.DirIn
		if err := sad.AddSA(ctx, in); err != nil {
			t.Fatal(err)
		}
	}
	entries, err := d.Server.SPDEntries(vpp.DefaultSPDID)
	if err != nil {
		t.Fatal(err)
	}
	inbound := 0
	for _, e := range entries {
		if !e.IsOutbound && e.Policy == ipsec_types.IPSEC_API_SPD_ACTION_PROTECT {
			inbound++
		}
	}
	if inbound != 2 {
		t.Errorf("%d inbound PROTECT entries, want 2 (one per SA)", inbound)
	}
	if id, ok := d.Server.BoundSPD("eth0"); !ok || id != vpp.DefaultSPDID {
		t.Errorf("eth0 bound to SPD %d (%v)", id, ok)
	}
}

// TestPolicyRollback: when VPP refuses the second entry of a policy (its
// IPv6 half), the first is taken back and the policy is not recorded.
func TestPolicyRollback(t *testing.T) {
	d := double(t, nil)
	spd := spdOf(t, d)
	p := &kernelops.Policy{Dir: kernelops.DirOut, Action: kernelops.ActionBlock} // any selector: v4 and v6 entries
	before, _ := d.Server.SPDEntries(vpp.DefaultSPDID)
	d.Server.FailNextAt("ipsec_spd_entry_add_del_v2", 2, api.NO_SUCH_ENTRY)
	err := spd.AddPolicy(t.Context(), p)
	if !errors.Is(err, kernelops.ErrNotFound) {
		t.Fatalf("add with VPP refusing an entry: %v", err)
	}
	after, _ := d.Server.SPDEntries(vpp.DefaultSPDID)
	if len(after) != len(before) {
		t.Errorf("%d SPD entries before, %d after a failed add", len(before), len(after))
	}
	if _, err := spd.GetPolicy(t.Context(), p.ID()); !errors.Is(err, kernelops.ErrNotFound) {
		t.Errorf("failed policy is recorded: %v", err)
	}
	if err := spd.AddPolicy(t.Context(), p); err != nil {
		t.Errorf("add after the failure: %v", err)
	}
}

// TestUnsupportedAreTyped: what VPP cannot do is ErrNotSupported naming
// the field, and nothing reaches VPP.
func TestUnsupportedAreTyped(t *testing.T) {
	d := double(t, nil)
	sad, spd := sadOf(t, d), spdOf(t, d)
	ctx := t.Context()
	trap := outPolicy(kernelops.DefaultReqIDMin + 1)
	trap.Action = kernelops.ActionTrap
	mark := outPolicy(kernelops.DefaultReqIDMin + 1)
	mark.Mark = kernelops.Mark{Value: 1, Mask: 1}
	icmp := &kernelops.Policy{Dir: kernelops.DirOut, Action: kernelops.ActionBlock,
		Selector: kernelops.Selector{Proto: 1, SrcPort: 8}}
	for name, p := range map[string]*kernelops.Policy{"trap": trap, "mark": mark, "icmp type": icmp} {
		err := spd.AddPolicy(ctx, p)
		var ke *kernelops.Error
		if !errors.Is(err, kernelops.ErrNotSupported) || !errors.As(err, &ke) || ke.Field == "" {
			t.Errorf("%s policy: %v, want ErrNotSupported naming a field", name, err)
		}
	}
	comp := gcmSA(0x4001, local, remote, 1)
	comp.IfID = 3
	if err := sad.AddSA(ctx, comp); !errors.Is(err, kernelops.ErrNotSupported) {
		t.Errorf("SA with if_id: %v", err)
	}
	if n := d.Server.Requests("ipsec_sad_entry_add_v2") + d.Server.Requests("ipsec_spd_entry_add_del_v2"); n != 0 {
		t.Errorf("%d requests reached VPP", n)
	}
	caps := d.Backend.Capabilities()
	if caps.Has(kernelops.CapTrap) || !strings.Contains(caps.Why(kernelops.CapTrap), "acquire") {
		t.Errorf("CapTrap: has=%v note %q", caps.Has(kernelops.CapTrap), caps.Why(kernelops.CapTrap))
	}
}

// TestRestart: VPP restarts empty; the backend reconnects, puts back every
// SA, policy and hole it owns, tells subscribers to re-read, and keeps
// counting usage from where it was.
func TestRestart(t *testing.T) {
	d := double(t, nil)
	sad, spd := sadOf(t, d), spdOf(t, d)
	ctx := t.Context()
	src, err := kernelops.As[kernelops.EventSource](d.Backend)
	if err != nil {
		t.Fatal(err)
	}
	sub, err := src.Subscribe(ctx, kernelops.SubscribeOptions{Kinds: kernelops.KindOverrun})
	if err != nil {
		t.Fatal(err)
	}
	defer sub.Close()
	reqid := kernelops.DefaultReqIDMin + 9
	out := gcmSA(0x5001, local, remote, reqid)
	in := gcmSA(0x5002, remote, local, reqid)
	in.Dir = kernelops.DirIn
	for _, sa := range []*kernelops.SA{out, in} {
		if err := sad.AddSA(ctx, sa); err != nil {
			t.Fatal(err)
		}
	}
	for _, p := range []*kernelops.Policy{outPolicy(reqid), inPolicy(reqid)} {
		if err := spd.AddPolicy(ctx, p); err != nil {
			t.Fatal(err)
		}
	}
	holes, _ := kernelops.As[kernelops.Holes](d.Backend)
	if err := holes.OpenHoles(ctx, kernelops.HoleSet{IKEPorts: []uint16{500, 4500}}); err != nil {
		t.Fatal(err)
	}
	d.Server.Send(netip.MustParseAddr("10.1.0.5"), netip.MustParseAddr("10.2.0.9"), 6, 1000, 80, 5, 200)
	before, _ := d.Server.SPDEntries(vpp.DefaultSPDID)
	got, _ := sad.GetSA(ctx, out.ID)
	if got.Counters.Packets != 5 {
		t.Fatalf("packets before restart %d", got.Counters.Packets)
	}

	if err := d.Server.Restart(); err != nil {
		t.Fatal(err)
	}
	waitOverrun(t, sub)

	for _, sa := range []*kernelops.SA{out, in} {
		if _, _, ok := vppSA(t, d, sa.ID.SPI); !ok {
			t.Errorf("SA %s not re-installed", sa.ID)
		}
	}
	after, err := d.Server.SPDEntries(vpp.DefaultSPDID)
	if err != nil {
		t.Fatal(err)
	}
	if !sameEntries(before, after) {
		t.Errorf("SPD differs after restart:\nbefore %v\nafter  %v", before, after)
	}
	if id, ok := d.Server.BoundSPD("eth0"); !ok || id != vpp.DefaultSPDID {
		t.Errorf("SPD not re-bound to eth0")
	}
	d.Server.Send(netip.MustParseAddr("10.1.0.5"), netip.MustParseAddr("10.2.0.9"), 6, 1000, 80, 2, 200)
	got, err = sad.GetSA(ctx, out.ID)
	if err != nil {
		t.Fatal(err)
	}
	if got.Counters.Packets != 7 || got.Counters.Bytes != 1400 {
		t.Errorf("usage after restart %d packets %d bytes, want 7 and 1400 (counted across the restart)",
			got.Counters.Packets, got.Counters.Bytes)
	}
	if n := d.Server.Clients(); n != 1 {
		t.Errorf("%d API clients after the reconnect, want 1", n)
	}
}

// TestReconnectWithoutRestart: the API socket breaks but VPP keeps its
// state; the reconnect installs nothing twice.
func TestReconnectWithoutRestart(t *testing.T) {
	d := double(t, nil)
	sad, spd := sadOf(t, d), spdOf(t, d)
	ctx := t.Context()
	src, _ := kernelops.As[kernelops.EventSource](d.Backend)
	sub, _ := src.Subscribe(ctx, kernelops.SubscribeOptions{Kinds: kernelops.KindOverrun})
	defer sub.Close()
	reqid := kernelops.DefaultReqIDMin + 10
	if err := sad.AddSA(ctx, gcmSA(0x6001, local, remote, reqid)); err != nil {
		t.Fatal(err)
	}
	if err := spd.AddPolicy(ctx, outPolicy(reqid)); err != nil {
		t.Fatal(err)
	}
	adds := d.Server.Requests("ipsec_sad_entry_add_v2") + d.Server.Requests("ipsec_spd_entry_add_del_v2")
	before, _ := d.Server.SPDEntries(vpp.DefaultSPDID)
	d.Server.DropConnections()
	waitOverrun(t, sub)
	if n := d.Server.Requests("ipsec_sad_entry_add_v2") + d.Server.Requests("ipsec_spd_entry_add_del_v2"); n != adds {
		t.Errorf("%d add requests after the reconnect, want %d", n, adds)
	}
	after, _ := d.Server.SPDEntries(vpp.DefaultSPDID)
	if !sameEntries(before, after) {
		t.Errorf("SPD changed: %v -> %v", before, after)
	}
	if _, err := sad.GetSA(ctx, kernelops.SAID{Src: local, Dst: remote, SPI: 0x6001, Proto: kernelops.ProtoESP}); err != nil {
		t.Errorf("SA lost: %v", err)
	}
}

// TestVPPDownFailsFast: while VPP is away, calls fail with ErrBusy within
// the request timeout instead of hanging.
func TestVPPDownFailsFast(t *testing.T) {
	d := double(t, map[string]string{vpp.ParamTimeout: "300ms"})
	sad := sadOf(t, d)
	d.Server.Stop()
	time.Sleep(100 * time.Millisecond) // the keepalive notices
	start := time.Now()
	err := sad.AddSA(t.Context(), gcmSA(0x7001, local, remote, 1))
	if !errors.Is(err, kernelops.ErrBusy) {
		t.Errorf("add while VPP is down: %v, want ErrBusy", err)
	}
	if time.Since(start) > 2*time.Second {
		t.Errorf("took %v", time.Since(start))
	}
	if err := d.Server.Start(); err != nil {
		t.Fatal(err)
	}
	deadline := time.Now().Add(5 * time.Second)
	for {
		err = sad.AddSA(t.Context(), gcmSA(0x7001, local, remote, 1))
		if err == nil || time.Now().After(deadline) {
			break
		}
		time.Sleep(20 * time.Millisecond)
	}
	if err != nil {
		t.Errorf("add after VPP came back: %v", err)
	}
}

func waitOverrun(t *testing.T, sub kernelops.Subscription) {
	t.Helper()
	select {
	case ev := <-sub.Events():
		if o, ok := ev.(*kernelops.OverrunEvent); !ok || o.Source != "vpp reconnect" {
			t.Fatalf("got %#v, want the reconnect overrun", ev)
		}
	case <-time.After(10 * time.Second):
		t.Fatal("no reconnect within 10s")
	}
}

func sameEntries(a, b []ipsec_types.IpsecSpdEntryV2) bool {
	x, y := slices.Clone(a), slices.Clone(b)
	key := func(e ipsec_types.IpsecSpdEntryV2) string { return fmt.Sprintf("%+v", e) }
	slices.SortFunc(x, func(p, q ipsec_types.IpsecSpdEntryV2) int { return strings.Compare(key(p), key(q)) })
	slices.SortFunc(y, func(p, q ipsec_types.IpsecSpdEntryV2) int { return strings.Compare(key(p), key(q)) })
	return slices.Equal(x, y)
}

// TestCRCMismatch: a VPP built from other API files is refused at Open
// with an error naming the message and both CRCs.
func TestCRCMismatch(t *testing.T) {
	dir, err := os.MkdirTemp("", "kp-vpp")
	if err != nil {
		t.Fatal(err)
	}
	defer os.RemoveAll(dir)
	cfg := vppharness.DoubleConfig(dir)
	cfg.CRC = map[string]string{"ipsec_sad_entry_add_v2": "deadbeef"}
	srv := vpptest.New(cfg)
	if err := srv.Start(); err != nil {
		t.Fatal(err)
	}
	defer srv.Close()
	_, err = kernelops.Open(t.Context(), vpp.Name, kernelops.Options{Params: map[string]string{
		vpp.ParamSocket: cfg.APISocket, vpp.ParamStatsSocket: cfg.StatsSocket}})
	var me *vpp.MismatchError
	if !errors.As(err, &me) {
		t.Fatalf("open: %v, want a *vpp.MismatchError", err)
	}
	if len(me.Missing) != 1 || me.Missing[0].Name != "ipsec_sad_entry_add_v2" || me.Missing[0].VPPCRC != "deadbeef" ||
		me.Missing[0].WantCRC != "9611297a" {
		t.Errorf("mismatch %+v", me.Missing)
	}
	if !strings.Contains(err.Error(), "ipsec_sad_entry_add_v2: want crc 9611297a, VPP has deadbeef") {
		t.Errorf("error text: %v", err)
	}
}

// TestOpenErrors: a missing socket and a bad parameter fail Open clearly.
func TestOpenErrors(t *testing.T) {
	_, err := kernelops.Open(t.Context(), vpp.Name, kernelops.Options{Params: map[string]string{
		vpp.ParamSocket: filepath.Join(t.TempDir(), "none.sock")}})
	if err == nil || !strings.Contains(err.Error(), "none.sock") {
		t.Errorf("missing socket: %v", err)
	}
	_, err = kernelops.Open(t.Context(), vpp.Name, kernelops.Options{Params: map[string]string{"sokcet": "x"}})
	var ke *kernelops.Error
	if !errors.As(err, &ke) || !errors.Is(err, kernelops.ErrInvalid) || ke.Field != "Params.sokcet" {
		t.Errorf("typo parameter: %v", err)
	}
}

// TestLinkEvents: VPP's sw_interface_event becomes a LinkEvent.
func TestLinkEvents(t *testing.T) {
	d := double(t, nil)
	src, _ := kernelops.As[kernelops.EventSource](d.Backend)
	sub, err := src.Subscribe(t.Context(), kernelops.SubscribeOptions{Kinds: kernelops.KindLink})
	if err != nil {
		t.Fatal(err)
	}
	defer sub.Close()
	// The want_interface_events registration races the subscription;
	// wait until the server has it.
	for d.Server.Requests("want_interface_events") == 0 {
		time.Sleep(time.Millisecond)
	}
	if err := d.Server.SetLink("eth1", false); err != nil {
		t.Fatal(err)
	}
	select {
	case ev := <-sub.Events():
		l, ok := ev.(*kernelops.LinkEvent)
		if !ok || l.IfName != "eth1" || l.Up {
			t.Errorf("got %#v", ev)
		}
	case <-time.After(5 * time.Second):
		t.Fatal("no link event")
	}
}

// TestRouteTo: address selection through VPP's FIB.
func TestRouteTo(t *testing.T) {
	d := double(t, nil)
	as, _ := kernelops.As[kernelops.AddrSelector](d.Backend)
	r, err := as.RouteTo(t.Context(), remote)
	if err != nil {
		t.Fatal(err)
	}
	if r.Src != local || r.IfName != "eth0" || r.Gateway != vppharness.Gateway {
		t.Errorf("route %+v", r)
	}
}

// TestMigrate: MOBIKE moves tunnel endpoints and NAT-T ports in place;
// the policy's template follows.
func TestMigrate(t *testing.T) {
	d := double(t, nil)
	sad, spd := sadOf(t, d), spdOf(t, d)
	ctx := t.Context()
	reqid := kernelops.DefaultReqIDMin + 11
	sa := gcmSA(0x8001, local, remote, reqid)
	sa.Encap = &kernelops.Encap{SrcPort: 4500, DstPort: 4500}
	if err := sad.AddSA(ctx, sa); err != nil {
		t.Fatal(err)
	}
	p := outPolicy(reqid)
	if err := spd.AddPolicy(ctx, p); err != nil {
		t.Fatal(err)
	}
	newRemote := netip.MustParseAddr("203.0.113.7")
	mg, _ := kernelops.As[kernelops.Migrator](d.Backend)
	err := mg.Migrate(ctx, kernelops.Migration{ReqID: reqid,
		Old: kernelops.Endpoints{Local: local, Remote: remote}, New: kernelops.Endpoints{Local: local, Remote: newRemote},
		Encap: &kernelops.Encap{SrcPort: 4500, DstPort: 4501}, SAs: []kernelops.SAID{sa.ID}, Policies: []kernelops.PolicyID{p.ID()}})
	if err != nil {
		t.Fatal(err)
	}
	_, v, _ := vppSA(t, d, 0x8001)
	if got := v.Entry.Tunnel.Dst.String(); got != newRemote.String() || v.Entry.UDPDstPort != 4501 {
		t.Errorf("VPP SA after migrate: dst %s port %d", got, v.Entry.UDPDstPort)
	}
	moved := sa.ID
	moved.Dst = newRemote
	if _, err := sad.GetSA(ctx, moved); err != nil {
		t.Errorf("migrated SA not found under its new id: %v", err)
	}
	pe, err := spd.GetPolicy(ctx, p.ID())
	if err != nil || pe.Templates[0].Dst != newRemote {
		t.Errorf("policy after migrate: %+v %v", pe, err)
	}
	if o, _ := d.Server.Send(netip.MustParseAddr("10.1.0.5"), netip.MustParseAddr("10.2.0.9"), 17, 1, 2, 1, 64); o != vpptest.Protected {
		t.Errorf("traffic after migrate: %v", o)
	}
}

// TestCloseLeavesNoGoroutines: Open and Close (with a reconnect in
// between) leave no goroutine behind.
func TestCloseLeavesNoGoroutines(t *testing.T) {
	before := ours()
	for range 3 {
		func() {
			dir, err := os.MkdirTemp("", "kp-vpp")
			if err != nil {
				t.Fatal(err)
			}
			defer os.RemoveAll(dir)
			cfg := vppharness.DoubleConfig(dir)
			srv := vpptest.New(cfg)
			if err := srv.Start(); err != nil {
				t.Fatal(err)
			}
			defer srv.Close()
			b, err := kernelops.Open(context.Background(), vpp.Name, kernelops.Options{Params: map[string]string{
				vpp.ParamSocket: cfg.APISocket, vpp.ParamStatsSocket: cfg.StatsSocket, vpp.ParamKeepalive: "10ms",
				vpp.ParamReconnectMax: "50ms"}})
			if err != nil {
				t.Fatal(err)
			}
			src, _ := kernelops.As[kernelops.EventSource](b)
			sub, _ := src.Subscribe(context.Background(), kernelops.SubscribeOptions{Kinds: kernelops.KindOverrun})
			srv.DropConnections()
			select {
			case <-sub.Events():
			case <-time.After(5 * time.Second):
				t.Error("no reconnect")
			}
			b.Close()
		}()
	}
	deadline := time.Now().Add(5 * time.Second)
	for len(ours()) > len(before) && time.Now().Before(deadline) {
		time.Sleep(20 * time.Millisecond)
	}
	if after := ours(); len(after) > len(before) {
		t.Errorf("%d backend/GoVPP goroutines before, %d after:\n%s", len(before), len(after), strings.Join(after, "\n\n"))
	}
}

// ours lists the goroutines running backend or GoVPP code (other tests'
// goroutines winding down in parallel do not count).
func ours() []string {
	buf := make([]byte, 4<<20)
	var out []string
	for _, g := range strings.Split(string(buf[:runtime.Stack(buf, true)]), "\n\n") {
		if strings.Contains(g, "TestCloseLeavesNoGoroutines") {
			continue
		}
		if strings.Contains(g, "go.fd.io/govpp") || strings.Contains(g, "keyplane/backends/vpp.") ||
			strings.Contains(g, "keyplane/kernelops/") {
			out = append(out, g)
		}
	}
	return out
}
