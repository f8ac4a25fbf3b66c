//go:build vpp

package vpp

import (
	"bytes"
	"net/netip"
	"testing"

	"github.com/keyplane/keyplane/iana"
	"github.com/keyplane/keyplane/kernelops"
	"go.fd.io/govpp/binapi/ipsec"
	"go.fd.io/govpp/binapi/ipsec_types"
	"go.fd.io/govpp/binapi/memclnt"
	"go.fd.io/govpp/codec"
)

// FuzzMessageTable: whatever VPP (or anything on its socket) answers to
// sockclnt_create, the frame reader and table parser do not panic.
func FuzzMessageTable(f *testing.F) {
	good, _ := codec.DefaultCodec.EncodeMsg(&memclnt.SockclntCreateReply{Index: 3, Count: 2,
		MessageTable: []memclnt.MessageTableEntry{{Index: 1, Name: "control_ping_51077d14"}, {Index: 2, Name: "sockclnt_delete_8ac76db6"}}}, 16)
	var framed bytes.Buffer
	writeFrame(&framed, good)
	f.Add(framed.Bytes())
	f.Add([]byte{})
	f.Add(make([]byte, 16))
	f.Fuzz(func(t *testing.T, b []byte) {
		data, err := readFrame(bytes.NewReader(b))
		if err != nil {
			return
		}
		table, _, _, err := parseMessageTable(data)
		if err == nil && table == nil {
			t.Fatal("nil table without error")
		}
	})
}

// FuzzSADetails: any ipsec_sa_v5_details decodes to an SA entry without
// panicking, and a valid one round-trips its key.
func FuzzSADetails(f *testing.F) {
	r := &saRec{sadID: 7, sa: &kernelops.SA{
		ID:   kernelops.SAID{Src: netip.MustParseAddr("192.0.2.1"), Dst: netip.MustParseAddr("198.51.100.1"), SPI: 0x1000, Proto: kernelops.ProtoESP},
		Mode: kernelops.ModeTunnel, Encryption: kernelops.Encryption{ID: iana.EncrAESGCM16, KeyBits: 256, Key: make(kernelops.Key, 36)},
		ReplayWindow: 64, Encap: &kernelops.Encap{SrcPort: 4500, DstPort: 4500}}}
	d := &ipsec.IpsecSaV5Details{Entry: sadEntry(r), StatIndex: 3}
	good, _ := codec.DefaultCodec.EncodeMsg(d, 42)
	f.Add(good)
	f.Add(good[:20])
	f.Fuzz(func(t *testing.T, b []byte) {
		var d ipsec.IpsecSaV5Details
		if codec.DefaultCodec.DecodeMsg(b, &d) != nil {
			return
		}
		var e kernelops.SAEntry
		entryFromVPP(&e, &d)
		var pe kernelops.PolicyEntry
		spd := ipsec_types.IpsecSpdEntryV2{LocalAddressStart: d.Entry.Tunnel.Src, LocalAddressStop: d.Entry.Tunnel.Dst,
			RemoteAddressStart: d.Entry.Tunnel.Dst, RemoteAddressStop: d.Entry.Tunnel.Src, Priority: int32(d.StatIndex)}
		policyFromEntry(&pe, spd, nil)
	})
}

// TestPriorityMapping: keyplane's lower-wins priorities map onto VPP's
// higher-wins ones order-reversed and one-to-one.
func TestPriorityMapping(t *testing.T) {
	for _, tc := range []struct{ a, b uint32 }{{0, 1}, {1, 2}, {0x7fffffff, 0x80000000}, {0xfffffffe, 0xffffffff}} {
		if !(vppPriority(tc.a) > vppPriority(tc.b)) {
			t.Errorf("vppPriority(%d)=%d not above vppPriority(%d)=%d", tc.a, vppPriority(tc.a), tc.b, vppPriority(tc.b))
		}
		for _, p := range []uint32{tc.a, tc.b} {
			if keyplanePriority(vppPriority(p)) != p {
				t.Errorf("priority %d does not round-trip", p)
			}
		}
	}
}

// TestRangePrefix: SPD address ranges convert back to the prefixes they
// came from.
func TestRangePrefix(t *testing.T) {
	for _, s := range []string{"10.1.0.0/16", "192.0.2.7/32", "0.0.0.0/0", "2001:db8::/32", "::/0", "fe80::/10"} {
		p := netip.MustParsePrefix(s)
		got, ok := rangePrefix(p.Addr(), lastAddr(p))
		if !ok || got != p {
			t.Errorf("%s -> range -> %v %v", s, got, ok)
		}
	}
	if _, ok := rangePrefix(netip.MustParseAddr("10.0.0.1"), netip.MustParseAddr("10.0.0.2")); ok {
		t.Errorf("10.0.0.1-10.0.0.2 taken for a prefix")
	}
}

// TestSaltRoundTrip: the salt goes to VPP as its bytes in order and comes
// back from VPP's byte-swapped dump as the same bytes.
func TestSaltRoundTrip(t *testing.T) {
	key := kernelops.Key{1, 2, 3, 4, 5, 6, 7, 8, 9, 10, 11, 12, 13, 14, 15, 16, 0xa1, 0xb2, 0xc3, 0xd4}
	alg, k, salt, ok := vppCrypto(kernelops.Encryption{ID: iana.EncrAESGCM16, KeyBits: 128, Key: key})
	if !ok || salt != 0xa1b2c3d4 || k.Length != 16 {
		t.Fatalf("vppCrypto: alg %v len %d salt %#x ok %v", alg, k.Length, salt, ok)
	}
	dumped := salt>>24 | salt>>8&0xff00 | salt<<8&0xff0000 | salt<<24 // htonl of the stored bytes, on little endian
	back := fromVPPCrypto(alg, k, dumped)
	if back.ID != iana.EncrAESGCM16 || back.KeyBits != 128 || string(back.Key) != string(key) {
		t.Errorf("round trip: %v %d %x", back.ID, back.KeyBits, []byte(back.Key))
	}
}
