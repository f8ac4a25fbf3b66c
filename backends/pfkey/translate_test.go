package pfkey

import (
	"bytes"
	"encoding/binary"
	"encoding/hex"
	"errors"
	"net/netip"
	"strings"
	"testing"
	"time"

	"github.com/keyplane/keyplane/backends/pfkey/sadb"
	"github.com/keyplane/keyplane/iana"
	"github.com/keyplane/keyplane/kernelops"
)

// Test doubles for the per-OS descriptions: the real ones are compiled
// only on their OS, so these restate what the translation depends on.
var (
	linuxLE   = pinnedDialect(sadb.Linux)
	freebsdLE = pinnedDialect(sadb.FreeBSD)

	linuxInfo = &osInfo{name: "linux", dialect: linuxLE, caps: commonCaps | kernelops.CapPolicyPriority | kernelops.CapUDPEncap,
		maxReplay: 32, packetLimits: true, forwardDir: true, saReqIDMax: 0xffffffff,
		notes: map[kernelops.Cap]string{kernelops.CapESN: "no ESN", kernelops.CapPolicyLifetime: "no policy expire"}}
	freebsdInfo = &osInfo{name: "freebsd", dialect: freebsdLE, caps: commonCaps | kernelops.CapESN | kernelops.CapUDPEncap |
		kernelops.CapPolicyPriority | kernelops.CapPolicyLifetime, maxReplay: (0xffffffff - 32) &^ 7, saReqIDMax: 0xffffffff,
		notes: map[kernelops.Cap]string{kernelops.CapLifetimePackets: "no packet limits"}}
)

func pinnedDialect(d sadb.Dialect) *sadb.Dialect {
	d.Order = binary.LittleEndian
	return &d
}

func testXlate(t *testing.T, o *osInfo) *xlate {
	t.Helper()
	rq, err := newReqIDMap(kernelops.DefaultReqIDMin, kernelops.DefaultReqIDMax, DefaultReqIDBase, o.saReqIDMax)
	if err != nil {
		t.Fatal(err)
	}
	return &xlate{os: o, d: o.dialect, rq: rq}
}

func unhex(t *testing.T, s string) []byte {
	t.Helper()
	var clean strings.Builder
	for line := range strings.Lines(s) {
		if i := strings.IndexByte(line, '#'); i >= 0 {
			line = line[:i]
		}
		clean.WriteString(strings.Join(strings.Fields(line), ""))
	}
	b, err := hex.DecodeString(clean.String())
	if err != nil {
		t.Fatal(err)
	}
	return b
}

var (
	local  = netip.MustParseAddr("192.0.2.1")
	remote = netip.MustParseAddr("198.51.100.1")
)

func cbcSA() *kernelops.SA {
	return &kernelops.SA{
		ID:           kernelops.SAID{Src: local, Dst: remote, SPI: 0xc0000001, Proto: kernelops.ProtoESP},
		Mode:         kernelops.ModeTunnel,
		ReqID:        kernelops.DefaultReqIDMin + 5,
		Encryption:   kernelops.Encryption{ID: iana.EncrAESCBC, KeyBits: 128, Key: bytes.Repeat([]byte{0xaa}, 16)},
		Integrity:    kernelops.Integrity{ID: iana.IntegHMACSHA1_96, Key: bytes.Repeat([]byte{0xbb}, 20)},
		ReplayWindow: 32,
		Encap:        &kernelops.Encap{SrcPort: 4500, DstPort: 4500},
		Lifetime: kernelops.Lifetimes{
			Soft: kernelops.Limits{Bytes: 1 << 20, Packets: 1000, AddTime: 1500 * time.Millisecond},
			Hard: kernelops.Limits{Bytes: 2 << 20, Packets: 2000, AddTime: time.Hour},
		},
	}
}

// The SADB_ADD the backend sends for a typical outbound SA, byte for
// byte, on Linux: what af_key's pfkey_msg2xfrm_state reads.
func TestADDGoldenLinux(t *testing.T) {
	x := testXlate(t, linuxInfo)
	m, kerr := x.saMsg(sadb.MsgAdd, cbcSA())
	if kerr != nil {
		t.Fatal(kerr)
	}
	m.Seq, m.PID = 1, 2
	got, err := m.Marshal(x.d)
	if err != nil {
		t.Fatal(err)
	}
	want := unhex(t, `
	02 03 00 03  1e 00 00 00  01 00 00 00  02 00 00 00 # ADD esp, 30 units
	02 00 01 00  c0 00 00 01  20 01 03 0c  00 00 00 00 # sa: replay 32 packets, mature, SHA1 (3), AES-CBC (12)
	04 00 03 00  d0 07 00 00                           # hard: 2000 packets as allocations
	00 00 20 00 00 00 00 00  10 0e 00 00 00 00 00 00  00 00 00 00 00 00 00 00 # 2 MiB, 3600 s, no use time
	04 00 04 00  e8 03 00 00                           # soft: 1000 packets
	00 00 10 00 00 00 00 00  02 00 00 00 00 00 00 00  00 00 00 00 00 00 00 00 # 1 MiB, 1.5 s rounded up to 2
	03 00 05 00  00 20 00 00  02 00 00 00 c0 00 02 01  00 00 00 00 00 00 00 00 # src: proto 0 on Linux
	03 00 06 00  00 20 00 00  02 00 00 00 c6 33 64 01  00 00 00 00 00 00 00 00
	04 00 08 00  a0 00 00 00  bb bb bb bb bb bb bb bb  bb bb bb bb bb bb bb bb  bb bb bb bb 00 00 00 00
	03 00 09 00  80 00 00 00  aa aa aa aa aa aa aa aa  aa aa aa aa aa aa aa aa
	02 00 13 00  02 00 00 00  00 00 00 00  05 08 00 00 # sa2: tunnel, kernel reqid 0x805 (owned 0x4b500005)
	01 00 14 00  02 00 00 00  01 00 15 00  11 94 00 00  01 00 16 00  11 94 00 00 # NAT-T
	`)
	if !bytes.Equal(got, want) {
		t.Fatalf("ADD mismatch\n got %x\nwant %x", got, want)
	}
}

// FreeBSD: replay window in bytes of bitmap plus SA_REPLAY past 255
// bytes, the ESN flag, the AEAD cipher with no auth, ULPROTO_ANY on SA
// addresses.
func TestADDFreeBSD(t *testing.T) {
	x := testXlate(t, freebsdInfo)
	sa := cbcSA()
	sa.Lifetime.Soft.Packets, sa.Lifetime.Hard.Packets = 0, 0
	sa.Encryption = kernelops.Encryption{ID: iana.EncrAESGCM16, KeyBits: 128, Key: make([]byte, 20)}
	sa.Integrity = kernelops.Integrity{}
	sa.ESN, sa.ReplayWindow = true, 4096
	m, kerr := x.saMsg(sadb.MsgAdd, sa)
	if kerr != nil {
		t.Fatal(kerr)
	}
	s := m.SA()
	if s.Replay != 255 || s.Flags != 0x400 || s.Encrypt != 20 || s.Auth != 0 {
		t.Fatalf("sadb_sa %+v", s)
	}
	if r := m.SAReplay(); r == nil || r.Replay != 4096 {
		t.Fatalf("SA_REPLAY %+v", r)
	}
	if a := m.Address(sadb.ExtAddressSrc); a.Proto != sadb.ProtoAny {
		t.Fatalf("SA address proto %d, want ULPROTO_ANY", a.Proto)
	}
	if m.Key(sadb.ExtKeyAuth) != nil || m.Key(sadb.ExtKeyEncrypt).Bits != 160 {
		t.Fatalf("keys: %+v %+v", m.Key(sadb.ExtKeyAuth), m.Key(sadb.ExtKeyEncrypt))
	}
	if _, err := m.Marshal(x.d); err != nil {
		t.Fatal(err)
	}
	// The kernel's answer reads back to the same SA.
	reply := *m
	reply.Type = sadb.MsgGet
	reply.Exts = append(reply.Exts, &sadb.Lifetime{T: sadb.ExtLifetimeCurrent, Bytes: 77, AddTime: 1700000000})
	var e kernelops.SAEntry
	if err := x.saEntry(&reply, &e); err != nil {
		t.Fatal(err)
	}
	if e.ReplayWindow != 4096 || !e.ESN || e.Encryption.ID != iana.EncrAESGCM16 || e.Encryption.KeyBits != 128 ||
		e.ReqID != sa.ReqID || e.Counters.Bytes != 77 || e.Counters.Packets != 0 {
		t.Fatalf("read back %+v", e)
	}
}

func TestSARoundTripLinux(t *testing.T) {
	x := testXlate(t, linuxInfo)
	sa := cbcSA()
	m, kerr := x.saMsg(sadb.MsgAdd, sa)
	if kerr != nil {
		t.Fatal(kerr)
	}
	m.Exts = append(m.Exts, &sadb.Lifetime{T: sadb.ExtLifetimeCurrent, Allocations: 3, Bytes: 300, AddTime: 1700000000, UseTime: 1700000005})
	m.Type = sadb.MsgGet
	wire, err := m.Marshal(x.d)
	if err != nil {
		t.Fatal(err)
	}
	back, err := sadb.Parse(x.d, wire)
	if err != nil {
		t.Fatal(err)
	}
	var e kernelops.SAEntry
	if err := x.saEntry(back, &e); err != nil {
		t.Fatal(err)
	}
	want := sa.Clone()
	want.Lifetime.Soft.AddTime = 2 * time.Second // whole seconds
	if e.ID != want.ID || e.Mode != want.Mode || e.ReqID != want.ReqID || e.ReplayWindow != 32 ||
		e.Encryption.ID != want.Encryption.ID || e.Encryption.KeyBits != 128 || !bytes.Equal(e.Encryption.Key, want.Encryption.Key) ||
		e.Integrity.ID != want.Integrity.ID || !bytes.Equal(e.Integrity.Key, want.Integrity.Key) ||
		e.Lifetime != want.Lifetime || *e.Encap != *want.Encap {
		t.Fatalf("round trip\n got %+v\nwant %+v", e.SA, *want)
	}
	if e.Counters.Packets != 3 || e.Counters.Bytes != 300 || e.Counters.AddTime.Unix() != 1700000000 ||
		e.Counters.FirstUse.Unix() != 1700000005 || !e.Counters.LastUsed.IsZero() {
		t.Fatalf("counters %+v", e.Counters)
	}
}

func TestCheckSARefuses(t *testing.T) {
	lx, fx := testXlate(t, linuxInfo), testXlate(t, freebsdInfo)
	tests := []struct {
		name  string
		x     *xlate
		mod   func(*kernelops.SA)
		field string
	}{
		{"ESN on Linux", lx, func(sa *kernelops.SA) { sa.ESN = true }, "ESN"},
		{"replay 64 on Linux", lx, func(sa *kernelops.SA) { sa.ReplayWindow = 64 }, "ReplayWindow"},
		{"replay not in bytes on KAME", fx, func(sa *kernelops.SA) { sa.ReplayWindow = 33; sa.Lifetime = kernelops.Lifetimes{} }, "ReplayWindow"},
		{"packet limits on KAME", fx, func(sa *kernelops.SA) {}, "Lifetime.Soft.Packets"},
		{"packets beyond 32 bits", lx, func(sa *kernelops.SA) { sa.Lifetime.Hard.Packets = 1 << 33 }, "Lifetime.Hard.Packets"},
		{"NAT-OA", lx, func(sa *kernelops.SA) { sa.Encap.OrigAddr = local }, "Encap.OrigAddr"},
		{"selector", lx, func(sa *kernelops.SA) { sa.Selector.Proto = 6 }, "Selector"},
		{"GCM on Linux af_key", lx, func(sa *kernelops.SA) {
			sa.Encryption = kernelops.Encryption{ID: iana.EncrAESGCM16, KeyBits: 128, Key: make([]byte, 20)}
			sa.Integrity = kernelops.Integrity{}
		}, "Encryption.ID"},
		{"SHA2-256 on Linux af_key", lx, func(sa *kernelops.SA) {
			sa.Integrity = kernelops.Integrity{ID: iana.IntegHMACSHA256_128, Key: make([]byte, 32)}
		}, "Integrity.ID"},
	}
	for _, tc := range tests {
		sa := cbcSA()
		tc.mod(sa)
		_, err := tc.x.saMsg(sadb.MsgAdd, sa)
		if err == nil || !errors.Is(err, kernelops.ErrNotSupported) || err.Field != tc.field {
			t.Errorf("%s: got %v, want ErrNotSupported naming %s", tc.name, err, tc.field)
		}
	}
	sa := cbcSA()
	sa.ReqID = kernelops.DefaultReqIDMin + 0x3800 // past the window
	if _, err := lx.saMsg(sadb.MsgAdd, sa); err == nil || !errors.Is(err, kernelops.ErrInvalid) || err.Field != "ReqID" {
		t.Errorf("reqid past the window: %v", err)
	}
}

func outPolicy(action kernelops.Action, reqid uint32) *kernelops.Policy {
	p := &kernelops.Policy{
		Selector: kernelops.Selector{Src: netip.MustParsePrefix("10.1.0.0/16"), Dst: netip.MustParsePrefix("10.2.0.1/32"), Proto: 17, DstPort: 53},
		Dir:      kernelops.DirOut,
		Action:   action,
	}
	if action == kernelops.ActionIPsec || action == kernelops.ActionTrap {
		p.Templates = []kernelops.Template{{Src: local, Dst: remote, Proto: kernelops.ProtoESP, Mode: kernelops.ModeTunnel, ReqID: reqid}}
	}
	return p
}

func TestPolicyGoldenLinux(t *testing.T) {
	x := testXlate(t, linuxInfo)
	p := outPolicy(kernelops.ActionIPsec, kernelops.DefaultReqIDMin+1)
	m, kerr := x.policyMsg(sadb.MsgSPDAdd, p)
	if kerr != nil {
		t.Fatal(kerr)
	}
	m.Seq, m.PID = 3, 4
	got, err := m.Marshal(x.d)
	if err != nil {
		t.Fatal(err)
	}
	prio := kernelops.AutoPriority(p)
	want := unhex(t, `
	02 0e 00 00  10 00 00 00  03 00 00 00  04 00 00 00 # X_SPDADD, 16 units
	03 00 05 00  11 10 00 00  02 00 00 00 0a 01 00 00  00 00 00 00 00 00 00 00 # 10.1.0.0/16 udp, any port
	03 00 06 00  11 20 00 00  02 00 00 35 0a 02 00 01  00 00 00 00 00 00 00 00 # 10.2.0.1/32 udp port 53
	08 00 12 00  02 00 02 00  00 00 00 00`+hex.EncodeToString(binary.LittleEndian.AppendUint32(nil, prio))+` # ipsec, out, AutoPriority
	30 00 32 00  02 03 00 00  01 08 00 00  00 00 00 00 # esp tunnel unique, kernel reqid 0x801
	02 00 00 00 c0 00 02 01  00 00 00 00 00 00 00 00  02 00 00 00 c6 33 64 01  00 00 00 00 00 00 00 00
	`)
	if !bytes.Equal(got, want) {
		t.Fatalf("SPDADD mismatch\n got %x\nwant %x", got, want)
	}
	// What the kernel echoes reads back to the same policy.
	m.Exts = append(m.Exts, &sadb.Lifetime{T: sadb.ExtLifetimeCurrent, AddTime: 1700000000})
	m.Policy().ID = 0x209
	var e kernelops.PolicyEntry
	idx, err := x.policyEntry(m, &e)
	if err != nil || idx != 0x209 {
		t.Fatalf("policy entry: %v, index %#x", err, idx)
	}
	if e.ID() != p.ID() || e.Action != p.Action || e.Priority != prio || len(e.Templates) != 1 ||
		e.Templates[0] != p.Templates[0] || e.AddTime.Unix() != 1700000000 {
		t.Fatalf("read back %+v", e)
	}
}

func TestPolicyActionsAndRefusals(t *testing.T) {
	lx, fx := testXlate(t, linuxInfo), testXlate(t, freebsdInfo)
	for _, c := range []struct {
		a    kernelops.Action
		want uint16
	}{{kernelops.ActionPass, sadb.PolicyNone}, {kernelops.ActionBlock, sadb.PolicyDiscard}, {kernelops.ActionTrap, sadb.PolicyIPsec}} {
		m, err := lx.policyMsg(sadb.MsgSPDAdd, outPolicy(c.a, kernelops.DefaultReqIDMin+2))
		if err != nil || m.Policy().PolicyType != c.want {
			t.Errorf("%s: %v, type %d", c.a, err, m.Policy().PolicyType)
		}
	}
	// An "any" selector takes the family of the other side, then of the tunnel.
	p := outPolicy(kernelops.ActionIPsec, 0)
	p.Selector = kernelops.Selector{}
	p.Templates[0].Src, p.Templates[0].Dst = netip.MustParseAddr("2001:db8::1"), netip.MustParseAddr("2001:db8::2")
	m, _ := lx.policyMsg(sadb.MsgSPDAdd, p)
	if a := m.Address(sadb.ExtAddressSrc); a.Addr.Addr() != netip.IPv6Unspecified() || a.PrefixLen != 0 || a.Proto != sadb.ProtoAny {
		t.Errorf("any selector: %+v", a)
	}
	var e kernelops.PolicyEntry
	m.Policy().ID = 1
	if _, err := lx.policyEntry(m, &e); err != nil || !e.Selector.IsZero() || m.Policy().Requests[0].Level != sadb.LevelRequire {
		t.Errorf("any selector reads back as %v (%v)", e.Selector, err)
	}
	refuse := []struct {
		name  string
		x     *xlate
		mod   func(*kernelops.Policy)
		field string
	}{
		{"policy lifetime on Linux", lx, func(p *kernelops.Policy) { p.Lifetime.Hard.AddTime = time.Hour }, "Lifetime"},
		{"forward on FreeBSD", fx, func(p *kernelops.Policy) { p.Dir = kernelops.DirFwd }, "Dir"},
		{"template SPI", lx, func(p *kernelops.Policy) { p.Templates[0].SPI = 0x1234 }, "Templates[0].SPI"},
	}
	for _, tc := range refuse {
		p := outPolicy(kernelops.ActionIPsec, kernelops.DefaultReqIDMin+3)
		tc.mod(p)
		if _, err := tc.x.policyMsg(sadb.MsgSPDAdd, p); err == nil || !errors.Is(err, kernelops.ErrNotSupported) || err.Field != tc.field {
			t.Errorf("%s: got %v, want ErrNotSupported naming %s", tc.name, err, tc.field)
		}
	}
	p = outPolicy(kernelops.ActionIPsec, 0x5000) // foreign and above IPSEC_MANUAL_REQID_MAX
	if _, err := lx.policyMsg(sadb.MsgSPDAdd, p); err == nil || err.Field != "Templates[0].ReqID" {
		t.Errorf("unmappable policy reqid: %v", err)
	}
}

// Kernel events as Linux af_key builds them (pfkey_xfrm_state2msg_expire,
// pfkey_send_acquire, pfkey_send_new_mapping, pfkey_send_migrate).
func TestEvents(t *testing.T) {
	x := testXlate(t, linuxInfo)
	now := time.Unix(1700000010, 0)
	base := []sadb.Ext{
		&sadb.SA{SPI: 0xc0000001, State: sadb.StateDying},
		&sadb.Address{T: sadb.ExtAddressSrc, PrefixLen: 32, Addr: netip.AddrPortFrom(local, 0)},
		&sadb.Address{T: sadb.ExtAddressDst, PrefixLen: 32, Addr: netip.AddrPortFrom(remote, 0)},
		&sadb.SA2{Mode: sadb.ModeTunnel, ReqID: 0x805},
	}
	expire := func(hard bool, lim, cur sadb.Lifetime) *kernelops.ExpireEvent {
		t.Helper()
		lim.T = sadb.ExtLifetimeSoft
		if hard {
			lim.T = sadb.ExtLifetimeHard
		}
		cur.T = sadb.ExtLifetimeCurrent
		m := &sadb.Msg{Header: sadb.Header{Type: sadb.MsgExpire, SAType: sadb.SATypeESP},
			Exts: append([]sadb.Ext{&lim, &cur}, base...)}
		wire, err := m.Marshal(x.d)
		if err != nil {
			t.Fatal(err)
		}
		back, err := sadb.Parse(x.d, wire)
		if err != nil {
			t.Fatal(err)
		}
		ev, err := x.expireEvent(back, now)
		if err != nil {
			t.Fatal(err)
		}
		return ev
	}
	for _, c := range []struct {
		name     string
		hard     bool
		lim, cur sadb.Lifetime
		want     kernelops.LimitKind
	}{
		{"soft bytes", false, sadb.Lifetime{Bytes: 2000, AddTime: 3600}, sadb.Lifetime{Bytes: 2816, AddTime: 1700000000}, kernelops.LimitBytes},
		{"hard packets", true, sadb.Lifetime{Allocations: 20}, sadb.Lifetime{Allocations: 23, Bytes: 1}, kernelops.LimitPackets},
		{"soft add time", false, sadb.Lifetime{AddTime: 2, UseTime: 2}, sadb.Lifetime{AddTime: 1700000007, UseTime: 1700000009}, kernelops.LimitAddTime},
		{"hard use time", true, sadb.Lifetime{AddTime: 3600, UseTime: 4}, sadb.Lifetime{AddTime: 1700000000, UseTime: 1700000006}, kernelops.LimitUseTime},
	} {
		ev := expire(c.hard, c.lim, c.cur)
		if ev.Hard != c.hard || ev.Limit != c.want || ev.ReqID != kernelops.DefaultReqIDMin+5 ||
			ev.SA != (kernelops.SAID{Src: local, Dst: remote, SPI: 0xc0000001, Proto: kernelops.ProtoESP}) {
			t.Errorf("%s: %+v", c.name, ev)
		}
	}

	pe := &kernelops.PolicyEntry{Policy: *outPolicy(kernelops.ActionIPsec, kernelops.DefaultReqIDMin+9)}
	acq := &sadb.Msg{Header: sadb.Header{Type: sadb.MsgAcquire, SAType: sadb.SATypeESP, Seq: 17}, Exts: []sadb.Ext{
		base[1], base[2], &sadb.Policy{PolicyType: sadb.PolicyIPsec, Dir: sadb.DirOutbound, ID: 0x211},
		&sadb.Proposal{Replay: 32, Combs: []sadb.Comb{{Auth: 3, Encrypt: 12}}},
	}}
	var asked uint32
	ae, err := x.acquireEvent(acq, func(idx uint32) (*kernelops.PolicyEntry, error) { asked = idx; return pe, nil })
	if err != nil || asked != 0x211 || ae.ReqID != kernelops.DefaultReqIDMin+9 || ae.Policy != pe.ID() ||
		ae.Src != local || ae.Dst != remote || ae.Proto != kernelops.ProtoESP || ae.Seq != 17 {
		t.Errorf("acquire %+v (%v), looked up %#x", ae, err, asked)
	}

	newPeer := netip.MustParseAddr("203.0.113.9")
	mp := &sadb.Msg{Header: sadb.Header{Type: x.d.MsgNATTNewMapping, SAType: sadb.SATypeESP}, Exts: []sadb.Ext{
		&sadb.SA{SPI: 0xc0000002},
		&sadb.Address{T: sadb.ExtAddressSrc, PrefixLen: 32, Addr: netip.AddrPortFrom(remote, 0)},
		&sadb.NATTPort{Port: 4500},
		&sadb.Address{T: sadb.ExtAddressDst, PrefixLen: 32, Addr: netip.AddrPortFrom(newPeer, 0)},
		&sadb.NATTPort{Dst: true, Port: 31337},
	}}
	in := kernelops.SAID{Src: remote, Dst: local, SPI: 0xc0000002, Proto: kernelops.ProtoESP}
	me, err := x.mappingEvent(mp, func(spi uint32, p kernelops.Proto) (kernelops.SAID, uint32, bool) {
		return in, 42, spi == in.SPI && p == in.Proto
	})
	if err != nil || me.SA != in || me.ReqID != 42 || me.Old != netip.AddrPortFrom(remote, 4500) || me.New != netip.AddrPortFrom(newPeer, 31337) {
		t.Errorf("mapping %+v (%v)", me, err)
	}

	nl := netip.MustParseAddr("192.0.2.9")
	pairs := [][2]sadb.Request{{
		{Proto: sadb.IPProtoESP, Mode: sadb.ModeTunnel, Level: sadb.LevelUnique, ReqID: 0x805, Src: netip.AddrPortFrom(local, 0), Dst: netip.AddrPortFrom(remote, 0)},
		{Proto: sadb.IPProtoESP, Mode: sadb.ModeTunnel, Level: sadb.LevelUnique, ReqID: 0x805, Src: netip.AddrPortFrom(nl, 0), Dst: netip.AddrPortFrom(remote, 0)},
	}}
	mm := x.migrateMsg(pe.ID(), pairs, &sadb.KMAddress{Local: nl, Remote: remote})
	wire, err := mm.Marshal(x.d)
	if err != nil {
		t.Fatal(err)
	}
	back, err := sadb.Parse(x.d, wire)
	if err != nil {
		t.Fatal(err)
	}
	mev, err := x.migrateEvent(back)
	if err != nil || mev.Policy != pe.ID() || len(mev.Entries) != 1 {
		t.Fatalf("migrate %+v (%v)", mev, err)
	}
	if en := mev.Entries[0]; en.ReqID != kernelops.DefaultReqIDMin+5 || en.Old != (kernelops.Endpoints{Local: local, Remote: remote}) ||
		en.New != (kernelops.Endpoints{Local: nl, Remote: remote}) || en.Mode != kernelops.ModeTunnel {
		t.Errorf("migrate entry %+v", en)
	}
}

func TestReqIDWindow(t *testing.T) {
	m, err := newReqIDMap(0x4b500000, 0x4b50ffff, 0x800, 0xffff)
	if err != nil {
		t.Fatal(err)
	}
	if m.size != 0x3800 {
		t.Fatalf("window of %#x reqids, want 0x3800", m.size)
	}
	for _, c := range []struct {
		in, out uint32
		policy  bool
		ok      bool
	}{
		{0, 0, true, true},
		{0x4b500000, 0x800, true, true},
		{0x4b5037ff, 0x3fff, true, true},
		{0x4b503800, 0, true, false}, // owned, past the window
		{7, 7, true, true},           // foreign, below the window: as is
		{0x900, 0, false, false},     // foreign, inside the window: ambiguous
		{0x5000, 0, true, false},     // the kernel would rewrite it in a policy
		{0x5000, 0x5000, false, true},
		{0x10000, 0, false, false}, // wider than a 16-bit SA2
	} {
		got, err := m.toKernel(c.in, c.policy)
		if (err == nil) != c.ok || (c.ok && got != c.out) {
			t.Errorf("toKernel(%#x, policy %v) = %#x, %v", c.in, c.policy, got, err)
		}
		if c.ok && m.fromKernel(got) != c.in {
			t.Errorf("fromKernel(%#x) = %#x, want %#x", got, m.fromKernel(got), c.in)
		}
	}
	if _, err := newReqIDMap(1, 2, 0x4000, 0xffff); err == nil {
		t.Error("base above IPSEC_MANUAL_REQID_MAX accepted")
	}
	small, _ := newReqIDMap(100, 109, 0x3000, 0xffffffff)
	if small.size != 10 || !small.inWindow(0x3009) || small.inWindow(0x300a) {
		t.Errorf("small range window %+v", small)
	}
}
