package sadb_test

import (
	"bytes"
	"encoding/binary"
	"encoding/hex"
	"net/netip"
	"reflect"
	"strings"
	"testing"

	"github.com/keyplane/keyplane/backends/pfkey/sadb"
)

// Dialects pinned to little-endian so the golden bytes below hold on any
// host; the backends use the native order.
var (
	linux   = pinned(sadb.Linux)
	freebsd = pinned(sadb.FreeBSD)
	netbsd  = pinned(sadb.NetBSD)
	darwin  = pinned(sadb.Darwin)
)

func pinned(d sadb.Dialect) *sadb.Dialect {
	d.Order = binary.LittleEndian
	return &d
}

// hx decodes hex written in groups; everything after a '#' on a line is a
// comment naming the field.
func hx(t testing.TB, s string) []byte {
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
		t.Fatalf("bad golden hex: %v", err)
	}
	return b
}

func ap(s string) netip.AddrPort {
	if ap, err := netip.ParseAddrPort(s); err == nil {
		return ap
	}
	return netip.AddrPortFrom(netip.MustParseAddr(s), 0)
}

type golden struct {
	name string
	d    *sadb.Dialect
	msg  *sadb.Msg
	wire string
}

func goldens() []golden {
	return []golden{
		{
			name: "linux GETSPI",
			d:    linux,
			msg: &sadb.Msg{Header: sadb.Header{Type: sadb.MsgGetSPI, SAType: sadb.SATypeESP, Seq: 7, PID: 0x1234},
				Exts: []sadb.Ext{
					&sadb.SA2{Mode: sadb.ModeTunnel, ReqID: 0x1001},
					&sadb.Address{T: sadb.ExtAddressSrc, PrefixLen: 32, Addr: ap("192.0.2.1")},
					&sadb.Address{T: sadb.ExtAddressDst, PrefixLen: 32, Addr: ap("198.51.100.1")},
					&sadb.SPIRange{Min: 0xc0000000, Max: 0xcfffffff},
				}},
			wire: `
			02 01 00 03  0c 00 00 00  07 00 00 00  34 12 00 00 # sadb_msg: v2 GETSPI esp, 12 units, seq 7, pid 0x1234
			02 00 13 00  02 00 00 00  00 00 00 00  01 10 00 00 # x_sa2: tunnel, reqid 0x1001
			03 00 05 00  00 20 00 00                           # address src /32
			02 00 00 00  c0 00 02 01  00 00 00 00  00 00 00 00 # sockaddr_in 192.0.2.1 (u16 family)
			03 00 06 00  00 20 00 00                           # address dst /32
			02 00 00 00  c6 33 64 01  00 00 00 00  00 00 00 00 # sockaddr_in 198.51.100.1
			02 00 10 00  00 00 00 c0  ff ff ff cf  00 00 00 00 # spirange
			`,
		},
		{
			name: "linux ADD with NAT-T",
			d:    linux,
			msg: &sadb.Msg{Header: sadb.Header{Type: sadb.MsgAdd, SAType: sadb.SATypeESP, Seq: 8, PID: 0x1234},
				Exts: []sadb.Ext{
					&sadb.SA{SPI: 0xc0001234, Replay: 32, State: sadb.StateMature, Auth: 3, Encrypt: 12},
					&sadb.Lifetime{T: sadb.ExtLifetimeHard, Bytes: 1 << 20, AddTime: 3600},
					&sadb.Lifetime{T: sadb.ExtLifetimeSoft, Bytes: 1 << 19, AddTime: 3000},
					&sadb.Address{T: sadb.ExtAddressSrc, PrefixLen: 32, Addr: ap("192.0.2.1")},
					&sadb.Address{T: sadb.ExtAddressDst, PrefixLen: 32, Addr: ap("198.51.100.1")},
					&sadb.Key{T: sadb.ExtKeyAuth, Bits: 160, Data: bytes.Repeat([]byte{0x11}, 20)},
					&sadb.Key{T: sadb.ExtKeyEncrypt, Bits: 128, Data: bytes.Repeat([]byte{0x22}, 16)},
					&sadb.SA2{Mode: sadb.ModeTunnel, ReqID: 0x1001},
					&sadb.NATTType{EncapType: sadb.NATTypeESPInUDP},
					&sadb.NATTPort{Port: 4500},
					&sadb.NATTPort{Dst: true, Port: 4501},
				}},
			wire: `
			02 03 00 03  1e 00 00 00  08 00 00 00  34 12 00 00 # sadb_msg: ADD esp, 30 units
			02 00 01 00  c0 00 12 34  20 01 03 0c  00 00 00 00 # sa: spi (network order), replay 32, mature, sha1, aes
			04 00 03 00  00 00 00 00                           # lifetime hard: allocations 0
			00 00 10 00 00 00 00 00                            #   bytes 1 MiB
			10 0e 00 00 00 00 00 00                            #   addtime 3600
			00 00 00 00 00 00 00 00                            #   usetime
			04 00 04 00  00 00 00 00                           # lifetime soft
			00 00 08 00 00 00 00 00  b8 0b 00 00 00 00 00 00  00 00 00 00 00 00 00 00
			03 00 05 00  00 20 00 00  02 00 00 00 c0 00 02 01  00 00 00 00 00 00 00 00
			03 00 06 00  00 20 00 00  02 00 00 00 c6 33 64 01  00 00 00 00 00 00 00 00
			04 00 08 00  a0 00 00 00                           # key auth: 160 bits
			11 11 11 11 11 11 11 11  11 11 11 11 11 11 11 11  11 11 11 11 00 00 00 00
			03 00 09 00  80 00 00 00                           # key encrypt: 128 bits
			22 22 22 22 22 22 22 22  22 22 22 22 22 22 22 22
			02 00 13 00  02 00 00 00  00 00 00 00  01 10 00 00 # x_sa2
			01 00 14 00  02 00 00 00                           # nat_t_type: ESP-in-UDP
			01 00 15 00  11 94 00 00                           # nat_t_sport 4500 (network order)
			01 00 16 00  11 95 00 00                           # nat_t_dport 4501
			`,
		},
		{
			name: "linux SPDADD tunnel",
			d:    linux,
			msg: &sadb.Msg{Header: sadb.Header{Type: sadb.MsgSPDAdd, Seq: 9, PID: 0x1234},
				Exts: []sadb.Ext{
					&sadb.Address{T: sadb.ExtAddressSrc, Proto: sadb.ProtoAny, PrefixLen: 16, Addr: ap("10.1.0.0")},
					&sadb.Address{T: sadb.ExtAddressDst, Proto: sadb.ProtoAny, PrefixLen: 16, Addr: ap("10.2.0.0")},
					&sadb.Policy{PolicyType: sadb.PolicyIPsec, Dir: sadb.DirOutbound, Priority: 0x20000,
						Requests: []sadb.Request{{Proto: sadb.IPProtoESP, Mode: sadb.ModeTunnel, Level: sadb.LevelUnique,
							ReqID: 0x1001, Src: ap("192.0.2.1"), Dst: ap("198.51.100.1")}}},
				}},
			wire: `
			02 0e 00 00  10 00 00 00  09 00 00 00  34 12 00 00 # sadb_msg: X_SPDADD, 16 units
			03 00 05 00  ff 10 00 00  02 00 00 00 0a 01 00 00  00 00 00 00 00 00 00 00 # src 10.1.0.0/16 any proto
			03 00 06 00  ff 10 00 00  02 00 00 00 0a 02 00 00  00 00 00 00 00 00 00 00 # dst 10.2.0.0/16
			08 00 12 00  02 00 02 00  00 00 00 00  00 00 02 00 # x_policy: ipsec, out, id 0, priority 0x20000
			30 00 32 00  02 03 00 00  01 10 00 00  00 00 00 00 # ipsecrequest: 48 bytes (not units), esp, tunnel, unique, reqid
			02 00 00 00 c0 00 02 01  00 00 00 00 00 00 00 00   # tunnel src
			02 00 00 00 c6 33 64 01  00 00 00 00 00 00 00 00   # tunnel dst
			`,
		},
		{
			name: "freebsd SPDADD tunnel",
			d:    freebsd,
			msg: &sadb.Msg{Header: sadb.Header{Type: sadb.MsgSPDAdd, Seq: 9, PID: 0x1234},
				Exts: []sadb.Ext{
					&sadb.Address{T: sadb.ExtAddressSrc, Proto: sadb.ProtoAny, PrefixLen: 16, Addr: ap("10.1.0.0")},
					&sadb.Address{T: sadb.ExtAddressDst, Proto: sadb.ProtoAny, PrefixLen: 16, Addr: ap("10.2.0.0")},
					&sadb.Policy{PolicyType: sadb.PolicyIPsec, Dir: sadb.DirOutbound,
						Requests: []sadb.Request{{Proto: sadb.IPProtoESP, Mode: sadb.ModeTunnel, Level: sadb.LevelUnique,
							ReqID: 0x1001, Src: ap("192.0.2.1"), Dst: ap("198.51.100.1")}}},
				}},
			wire: `
			02 0e 00 00  0f 00 00 00  09 00 00 00  34 12 00 00 # sadb_msg: 15 units
			03 00 05 00  ff 10 00 00  10 02 00 00 0a 01 00 00  00 00 00 00 00 00 00 00 # sockaddr_in: sa_len 16, family 2
			03 00 06 00  ff 10 00 00  10 02 00 00 0a 02 00 00  00 00 00 00 00 00 00 00
			07 00 12 00  02 00 02 00  00 00 00 00  00 00 00 00 # x_policy
			28 00 32 00  02 03 01 10                           # KAME ipsecrequest: 40 bytes, 16-bit reqid
			10 02 00 00 c0 00 02 01  00 00 00 00 00 00 00 00
			10 02 00 00 c6 33 64 01  00 00 00 00 00 00 00 00
			`,
		},
		{
			name: "linux DELETE IPv6",
			d:    linux,
			msg: &sadb.Msg{Header: sadb.Header{Type: sadb.MsgDelete, SAType: sadb.SATypeAH, Seq: 10, PID: 0x1234},
				Exts: []sadb.Ext{
					&sadb.SA{SPI: 0x100},
					&sadb.Address{T: sadb.ExtAddressSrc, PrefixLen: 128, Addr: ap("2001:db8::1")},
					&sadb.Address{T: sadb.ExtAddressDst, PrefixLen: 128, Addr: ap("2001:db8::2")},
				}},
			wire: `
			02 04 00 02  0e 00 00 00  0a 00 00 00  34 12 00 00 # DELETE ah, 14 units
			02 00 01 00  00 00 01 00  00 00 00 00  00 00 00 00 # sa spi 0x100
			05 00 05 00  00 80 00 00                           # address src /128, 40 bytes
			0a 00 00 00  00 00 00 00                           # sockaddr_in6: family 10, port, flowinfo
			20 01 0d b8 00 00 00 00  00 00 00 00 00 00 00 01   # sin6_addr
			00 00 00 00  00 00 00 00                           # scope id + padding to 8
			05 00 06 00  00 80 00 00  0a 00 00 00 00 00 00 00
			20 01 0d b8 00 00 00 00  00 00 00 00 00 00 00 02  00 00 00 00 00 00 00 00
			`,
		},
		{
			name: "freebsd ADD with SA_REPLAY and ESN",
			d:    freebsd,
			msg: &sadb.Msg{Header: sadb.Header{Type: sadb.MsgAdd, SAType: sadb.SATypeESP, Seq: 11, PID: 0x1234},
				Exts: []sadb.Ext{
					&sadb.SA{SPI: 0xc0000001, Replay: 255, State: sadb.StateMature, Encrypt: 20, Flags: 0x400},
					&sadb.Address{T: sadb.ExtAddressSrc, PrefixLen: 32, Addr: ap("192.0.2.1")},
					&sadb.Address{T: sadb.ExtAddressDst, PrefixLen: 32, Addr: ap("198.51.100.1")},
					&sadb.Key{T: sadb.ExtKeyEncrypt, Bits: 160, Data: bytes.Repeat([]byte{0x33}, 20)},
					&sadb.SA2{Mode: sadb.ModeTunnel, ReqID: 7},
					&sadb.SAReplay{Replay: 4096},
				}},
			wire: `
			02 03 00 03  11 00 00 00  0b 00 00 00  34 12 00 00 # 17 units
			02 00 01 00  c0 00 00 01  ff 01 00 14  00 04 00 00 # sa: replay 255 bytes, AESGCM16 (20), flags ESN 0x400
			03 00 05 00  00 20 00 00  10 02 00 00 c0 00 02 01  00 00 00 00 00 00 00 00
			03 00 06 00  00 20 00 00  10 02 00 00 c6 33 64 01  00 00 00 00 00 00 00 00
			04 00 09 00  a0 00 00 00  33 33 33 33 33 33 33 33  33 33 33 33 33 33 33 33  33 33 33 33 00 00 00 00
			02 00 13 00  02 00 00 00  00 00 00 00  07 00 00 00
			01 00 1a 00  00 10 00 00                           # x_sa_replay (26): 4096 packets
			`,
		},
		{
			name: "linux MIGRATE with KMADDRESS",
			d:    linux,
			msg: &sadb.Msg{Header: sadb.Header{Type: 24, SAType: sadb.SATypeESP, Seq: 12, PID: 0x1234},
				Exts: []sadb.Ext{
					&sadb.KMAddress{Local: netip.MustParseAddr("192.0.2.9"), Remote: netip.MustParseAddr("198.51.100.1")},
					&sadb.Address{T: sadb.ExtAddressSrc, Proto: sadb.ProtoAny, PrefixLen: 16, Addr: ap("10.1.0.0")},
					&sadb.Address{T: sadb.ExtAddressDst, Proto: sadb.ProtoAny, PrefixLen: 16, Addr: ap("10.2.0.0")},
					&sadb.Policy{PolicyType: sadb.PolicyIPsec, Dir: sadb.DirOutbound, Requests: []sadb.Request{
						{Proto: sadb.IPProtoESP, Mode: sadb.ModeTunnel, Level: sadb.LevelUnique, ReqID: 5,
							Src: ap("192.0.2.1"), Dst: ap("198.51.100.1")},
						{Proto: sadb.IPProtoESP, Mode: sadb.ModeTunnel, Level: sadb.LevelUnique, ReqID: 5,
							Src: ap("192.0.2.9"), Dst: ap("198.51.100.1")},
					}},
				}},
			wire: `
			02 18 00 03  1b 00 00 00  0c 00 00 00  34 12 00 00 # X_MIGRATE, 27 units
			05 00 19 00  00 00 00 00                           # x_kmaddress (25), 40 bytes
			02 00 00 00 c0 00 02 09  00 00 00 00 00 00 00 00   # local
			02 00 00 00 c6 33 64 01  00 00 00 00 00 00 00 00   # remote
			03 00 05 00  ff 10 00 00  02 00 00 00 0a 01 00 00  00 00 00 00 00 00 00 00
			03 00 06 00  ff 10 00 00  02 00 00 00 0a 02 00 00  00 00 00 00 00 00 00 00
			0e 00 12 00  02 00 02 00  00 00 00 00  00 00 00 00 # x_policy: 16 + 2 x 48 bytes
			30 00 32 00  02 03 00 00  05 00 00 00  00 00 00 00 # old
			02 00 00 00 c0 00 02 01  00 00 00 00 00 00 00 00  02 00 00 00 c6 33 64 01  00 00 00 00 00 00 00 00
			30 00 32 00  02 03 00 00  05 00 00 00  00 00 00 00 # new
			02 00 00 00 c0 00 02 09  00 00 00 00 00 00 00 00  02 00 00 00 c6 33 64 01  00 00 00 00 00 00 00 00
			`,
		},
		{
			name: "linux REGISTER reply",
			d:    linux,
			msg: &sadb.Msg{Header: sadb.Header{Type: sadb.MsgRegister, SAType: sadb.SATypeUnspec, Seq: 13, PID: 0x1234},
				Exts: []sadb.Ext{
					&sadb.Supported{T: sadb.ExtSupportedAuth, Algs: []sadb.Alg{{ID: 3, MinBits: 160, MaxBits: 160}}},
					&sadb.Supported{T: sadb.ExtSupportedEncrypt, Algs: []sadb.Alg{{ID: 12, IVLen: 8, MinBits: 128, MaxBits: 256}}},
				}},
			wire: `
			02 07 00 00  06 00 00 00  0d 00 00 00  34 12 00 00
			02 00 0e 00  00 00 00 00  03 00 a0 00  a0 00 00 00 # supported auth: sha1 160..160
			02 00 0f 00  00 00 00 00  0c 08 80 00  00 01 00 00 # supported encrypt: aes iv 8, 128..256
			`,
		},
		{
			name: "darwin header-only FLUSH",
			d:    darwin,
			msg:  &sadb.Msg{Header: sadb.Header{Type: sadb.MsgFlush, SAType: sadb.SATypeUnspec, Seq: 1, PID: 2}},
			wire: `02 09 00 00  02 00 00 00  01 00 00 00  02 00 00 00`,
		},
	}
}

func TestGoldenMarshal(t *testing.T) {
	for _, g := range goldens() {
		t.Run(g.name, func(t *testing.T) {
			want := hx(t, g.wire)
			got, err := g.msg.Marshal(g.d)
			if err != nil {
				t.Fatalf("marshal: %v", err)
			}
			if !bytes.Equal(got, want) {
				t.Fatalf("marshal mismatch\n got %x\nwant %x", got, want)
			}
		})
	}
}

func TestGoldenParse(t *testing.T) {
	for _, g := range goldens() {
		t.Run(g.name, func(t *testing.T) {
			m, err := sadb.Parse(g.d, hx(t, g.wire))
			if err != nil {
				t.Fatalf("parse: %v", err)
			}
			want := *g.msg
			want.Version = sadb.Version
			if !reflect.DeepEqual(m, &want) {
				t.Fatalf("parse mismatch\n got %#v\nwant %#v", m, &want)
			}
		})
	}
}
