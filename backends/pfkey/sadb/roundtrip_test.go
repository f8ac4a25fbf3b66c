package sadb_test

import (
	"bytes"
	"errors"
	"net/netip"
	"reflect"
	"testing"

	"github.com/keyplane/keyplane/backends/pfkey/sadb"
)

// everyExt builds one message per extension kind the dialect has, the way
// the backend and the kernels use them, so each kind round-trips.
func everyExt(d *sadb.Dialect) []*sadb.Msg {
	h := func(t sadb.MsgType) sadb.Header {
		return sadb.Header{Version: 2, Type: t, SAType: sadb.SATypeESP, Seq: 42, PID: 4242}
	}
	src := &sadb.Address{T: sadb.ExtAddressSrc, PrefixLen: 32, Addr: ap("192.0.2.1")}
	dst := &sadb.Address{T: sadb.ExtAddressDst, PrefixLen: 32, Addr: ap("198.51.100.1")}
	src6 := &sadb.Address{T: sadb.ExtAddressSrc, Proto: 17, PrefixLen: 64, Addr: ap("[2001:db8:1::]:500")}
	dst6 := &sadb.Address{T: sadb.ExtAddressDst, Proto: 17, PrefixLen: 64, Addr: ap("[2001:db8:2::]:4500")}
	msgs := []*sadb.Msg{
		{Header: h(sadb.MsgAdd), Exts: []sadb.Ext{
			&sadb.SA{SPI: 0xdeadbeef, Replay: 32, State: 1, Auth: 3, Encrypt: 12, Flags: 0x20000000},
			&sadb.Lifetime{T: sadb.ExtLifetimeCurrent, Allocations: 5, Bytes: 1000, AddTime: 1700000000, UseTime: 1700000001},
			&sadb.Lifetime{T: sadb.ExtLifetimeHard, Allocations: 1 << 31, Bytes: 1 << 40, AddTime: 86400, UseTime: 3600},
			&sadb.Lifetime{T: sadb.ExtLifetimeSoft, Allocations: 1 << 30, Bytes: 1 << 39, AddTime: 80000, UseTime: 3000},
			src, dst,
			&sadb.Address{T: sadb.ExtAddressProxy, Proto: 6, PrefixLen: 24, Addr: ap("10.0.0.0:80")},
			&sadb.Key{T: sadb.ExtKeyAuth, Bits: 256, Data: bytes.Repeat([]byte{1}, 32)},
			&sadb.Key{T: sadb.ExtKeyEncrypt, Bits: 0},
			&sadb.Identity{T: sadb.ExtIdentitySrc, IdentType: sadb.IdentFQDN, ID: 9, Data: []byte("vpn.example\x00\x00\x00\x00\x00")},
			&sadb.Identity{T: sadb.ExtIdentityDst, IdentType: sadb.IdentUserFQDN},
			&sadb.SA2{Mode: sadb.ModeTransport, Sequence: 77, ReqID: 0x3fff},
		}},
		{Header: h(sadb.MsgAcquire), Exts: []sadb.Ext{
			src6, dst6,
			&sadb.Sensitivity{DPD: 1, SensLevel: 2, IntegLevel: 3, SensBitmap: []uint64{1, 2}, IntegBitmap: []uint64{3}},
			&sadb.Proposal{Replay: 32, Combs: []sadb.Comb{
				{Auth: 3, Encrypt: 12, AuthMinBits: 160, AuthMaxBits: 160, EncryptMinBits: 128, EncryptMaxBits: 256,
					SoftAddTime: 72000, HardAddTime: 86400, SoftUseTime: 25200, HardUseTime: 28800},
				{Auth: 2, Encrypt: 3, HardBytes: 1 << 30, SoftBytes: 1 << 29, SoftAllocations: 7, HardAllocations: 8},
			}},
			&sadb.Policy{PolicyType: sadb.PolicyIPsec, Dir: sadb.DirOutbound, ID: 0x211, Priority: 7},
			&sadb.KMPrivate{Data: []byte{1, 2, 3, 4, 5, 6, 7, 8}},
		}},
		{Header: h(sadb.MsgRegister), Exts: []sadb.Ext{
			&sadb.Supported{T: sadb.ExtSupportedAuth, Algs: []sadb.Alg{{ID: 2, MinBits: 128, MaxBits: 128}, {ID: 3, MinBits: 160, MaxBits: 160}}},
			&sadb.Supported{T: sadb.ExtSupportedEncrypt},
		}},
		{Header: h(sadb.MsgGetSPI), Exts: []sadb.Ext{src, dst, &sadb.SPIRange{Min: 256, Max: 0xffffffff}}},
		{Header: sadb.Header{Version: 2, Type: sadb.MsgSPDDump, Reserved: 3, Seq: 0, PID: 4242}, Exts: []sadb.Ext{
			src6, dst6,
			&sadb.Lifetime{T: sadb.ExtLifetimeHard}, &sadb.Lifetime{T: sadb.ExtLifetimeSoft},
			&sadb.Lifetime{T: sadb.ExtLifetimeCurrent, AddTime: 1700000000},
			&sadb.Policy{PolicyType: sadb.PolicyIPsec, Dir: sadb.DirInbound, ID: 0x108, Priority: 0x2000f, Requests: []sadb.Request{
				{Proto: sadb.IPProtoESP, Mode: sadb.ModeTunnel, Level: sadb.LevelUnique, ReqID: 0x1234,
					Src: ap("2001:db8::1"), Dst: ap("2001:db8::2")},
				{Proto: sadb.IPProtoAH, Mode: sadb.ModeTransport, Level: sadb.LevelRequire},
			}},
		}},
		{Header: h(sadb.MsgSPDFlush)},
		{Header: sadb.Header{Version: 2, Type: sadb.MsgGet, Errno: 3, SAType: sadb.SATypeAH, Seq: 1, PID: 1}},
		{Header: h(sadb.MsgAdd), Exts: []sadb.Ext{&sadb.Raw{T: 200, Data: []byte{9, 9, 9, 9}}}},
	}
	if d.ExtNATTType != 0 {
		exts := []sadb.Ext{&sadb.SA{SPI: 1000}, src, dst, &sadb.NATTType{EncapType: 2},
			&sadb.NATTPort{Port: 4500}, &sadb.NATTPort{Dst: true, Port: 45000},
			&sadb.Address{T: d.ExtNATTOA, PrefixLen: 32, Addr: ap("203.0.113.7")}}
		if d.ExtNATTOAR != 0 {
			exts = append(exts, &sadb.Address{T: d.ExtNATTOAR, PrefixLen: 32, Addr: ap("203.0.113.8")})
		}
		if d.ExtNATTFrag != 0 {
			exts = append(exts, &sadb.NATTFrag{FragLen: 552})
		}
		msgs = append(msgs, &sadb.Msg{Header: h(sadb.MsgUpdate), Exts: exts})
	}
	if d.ExtSAReplay != 0 {
		msgs = append(msgs, &sadb.Msg{Header: h(sadb.MsgUpdate), Exts: []sadb.Ext{&sadb.SA{SPI: 1000, Replay: 255},
			&sadb.SAReplay{Replay: 1 << 20}, src, dst,
			&sadb.Address{T: d.ExtNewAddressSrc, PrefixLen: 32, Addr: ap("192.0.2.2")},
			&sadb.Address{T: d.ExtNewAddressDst, PrefixLen: 32, Addr: ap("198.51.100.2")}}})
	}
	if d.ExtKMAddress != 0 {
		msgs = append(msgs, &sadb.Msg{Header: h(d.MsgMigrate), Exts: []sadb.Ext{
			&sadb.KMAddress{Local: netip.MustParseAddr("2001:db8::9"), Remote: netip.MustParseAddr("2001:db8::1")}}})
	}
	if d.ExtSecCtx != 0 {
		msgs = append(msgs, &sadb.Msg{Header: h(sadb.MsgSPDAdd), Exts: []sadb.Ext{
			&sadb.SecCtx{Alg: 1, DOI: 1, Ctx: []byte("system_u:object_r:ipsec_spd_t:s0")}}})
	}
	if d.ExtFilter != 0 {
		msgs = append(msgs, &sadb.Msg{Header: h(sadb.MsgDump), Exts: []sadb.Ext{
			&sadb.Filter{Src: netip.MustParseAddr("192.0.2.0"), Dst: netip.MustParseAddr("198.51.100.0"), SPLen: 24, DPLen: 24}}},
			&sadb.Msg{Header: h(sadb.MsgDump), Exts: []sadb.Ext{
				&sadb.Filter{Src: netip.MustParseAddr("2001:db8::"), Dst: netip.MustParseAddr("2001:db8:1::"), SPLen: 32, DPLen: 48}}})
	}
	return msgs
}

func TestRoundTripEveryExtension(t *testing.T) {
	for _, d := range []*sadb.Dialect{linux, freebsd, netbsd, darwin} {
		for i, m := range everyExt(d) {
			b, err := m.Marshal(d)
			if err != nil {
				t.Fatalf("%s #%d (%s): marshal: %v", d.Name, i, m.Type, err)
			}
			if len(b)%8 != 0 {
				t.Fatalf("%s #%d: %d bytes, not 8-aligned", d.Name, i, len(b))
			}
			got, err := sadb.Parse(d, b)
			if err != nil {
				t.Fatalf("%s #%d (%s): parse: %v\n%x", d.Name, i, m.Type, err, b)
			}
			if !reflect.DeepEqual(got, m) {
				t.Fatalf("%s #%d (%s): round trip changed the message\n got %#v\nwant %#v", d.Name, i, m.Type, got, m)
			}
			again, err := got.Marshal(d)
			if err != nil || !bytes.Equal(again, b) {
				t.Fatalf("%s #%d: re-marshal differs (%v)", d.Name, i, err)
			}
		}
	}
}

// A dialect's own numbers must not collide: two kinds on one number would
// make Parse pick one silently.
func TestDialectNumbersDistinct(t *testing.T) {
	for _, d := range []sadb.Dialect{sadb.Linux, sadb.FreeBSD, sadb.NetBSD, sadb.Darwin} {
		seen := map[sadb.ExtType]string{}
		for name, v := range map[string]sadb.ExtType{
			"NATTType": d.ExtNATTType, "NATTSport": d.ExtNATTSport, "NATTDport": d.ExtNATTDport,
			"NATTOA": d.ExtNATTOA, "NATTOAR": d.ExtNATTOAR, "NATTFrag": d.ExtNATTFrag, "SecCtx": d.ExtSecCtx,
			"KMAddress": d.ExtKMAddress, "Filter": d.ExtFilter, "SAReplay": d.ExtSAReplay,
			"NewAddressSrc": d.ExtNewAddressSrc, "NewAddressDst": d.ExtNewAddressDst,
		} {
			if v == 0 {
				continue
			}
			if v <= sadb.ExtSA2 || v > d.ExtMax {
				t.Errorf("%s: %s = %d outside %d..%d", d.Name, name, v, sadb.ExtSA2+1, d.ExtMax)
			}
			if o, dup := seen[v]; dup {
				t.Errorf("%s: %s and %s are both %d", d.Name, name, o, v)
			}
			seen[v] = name
		}
		for _, tab := range [][]uint8{encrIDs(d), authIDs(d)} {
			ids := map[uint8]bool{}
			for _, v := range tab {
				if ids[v] {
					t.Errorf("%s: algorithm id %d mapped twice", d.Name, v)
				}
				ids[v] = true
			}
		}
	}
}

func encrIDs(d sadb.Dialect) (out []uint8) {
	for _, a := range d.Encr {
		out = append(out, a.SADB)
		if back, ok := d.EncrFromSADB(a.SADB); !ok || back != a.ID {
			panic("encr map not invertible")
		}
	}
	return out
}

func authIDs(d sadb.Dialect) (out []uint8) {
	for _, a := range d.Auth {
		out = append(out, a.SADB)
		if back, ok := d.AuthFromSADB(a.SADB); !ok || back != a.ID {
			panic("auth map not invertible")
		}
	}
	return out
}

func TestMarshalRefuses(t *testing.T) {
	tests := []struct {
		name string
		d    *sadb.Dialect
		ext  sadb.Ext
		want error
	}{
		{"NAT-T on darwin", darwin, &sadb.NATTType{EncapType: 2}, sadb.ErrAbsent},
		{"SA_REPLAY on linux", linux, &sadb.SAReplay{Replay: 64}, sadb.ErrAbsent},
		{"key bits vs bytes", linux, &sadb.Key{T: sadb.ExtKeyAuth, Bits: 128, Data: make([]byte, 15)}, sadb.ErrLength},
		{"prefix too long", linux, &sadb.Address{T: sadb.ExtAddressSrc, PrefixLen: 33, Addr: ap("192.0.2.1")}, sadb.ErrPrefix},
		{"invalid address", linux, &sadb.Address{T: sadb.ExtAddressSrc}, sadb.ErrFamily},
		{"KAME 16-bit reqid", freebsd, &sadb.Policy{PolicyType: 2, Dir: 2, Requests: []sadb.Request{{Proto: 50, Mode: 1, Level: 3, ReqID: 0x10000}}}, sadb.ErrValue},
		{"mixed tunnel families", linux, &sadb.Policy{PolicyType: 2, Dir: 2, Requests: []sadb.Request{{Proto: 50, Mode: 2, Src: ap("192.0.2.1"), Dst: ap("2001:db8::1")}}}, sadb.ErrFamily},
		{"KMADDRESS half set", linux, &sadb.KMAddress{Local: netip.MustParseAddr("192.0.2.1")}, sadb.ErrFamily},
	}
	for _, tc := range tests {
		m := &sadb.Msg{Header: sadb.Header{Type: sadb.MsgAdd}, Exts: []sadb.Ext{tc.ext}}
		_, err := m.Marshal(tc.d)
		var me *sadb.MarshalError
		if !errors.Is(err, tc.want) || !errors.As(err, &me) {
			t.Errorf("%s: got %v, want a *MarshalError wrapping %v", tc.name, err, tc.want)
		}
	}
	dup := &sadb.Msg{Exts: []sadb.Ext{&sadb.SA{}, &sadb.SA{}}}
	if _, err := dup.Marshal(linux); !errors.Is(err, sadb.ErrDuplicate) {
		t.Errorf("duplicate SA: got %v", err)
	}
}

// An IPv4-mapped IPv6 address is an IPv6 sockaddr and stays one (found
// by FuzzParse: the seed testdata/fuzz/FuzzParse/faad3b204ce25653 shrank
// when marshalling unmapped it).
func TestMappedAddressKeepsFamily(t *testing.T) {
	m := &sadb.Msg{Header: sadb.Header{Version: 2, Type: sadb.MsgGet}, Exts: []sadb.Ext{
		&sadb.Address{T: sadb.ExtAddressSrc, PrefixLen: 128, Addr: ap("::ffff:192.0.2.1")},
	}}
	for _, d := range []*sadb.Dialect{linux, freebsd} {
		b, err := m.Marshal(d)
		if err != nil {
			t.Fatal(err)
		}
		if len(b) != 16+40 {
			t.Fatalf("%s: %d bytes, want a 40-byte sockaddr_in6 extension", d.Name, len(b))
		}
		back, err := sadb.Parse(d, b)
		if err != nil || !reflect.DeepEqual(back, m) {
			t.Fatalf("%s: %v %#v", d.Name, err, back)
		}
	}
}
