package sadb_test

import (
	"bytes"
	"errors"
	"fmt"
	"reflect"
	"testing"

	"github.com/keyplane/keyplane/backends/pfkey/sadb"
)

func TestParseRejects(t *testing.T) {
	// msg builds a header whose sadb_msg_len fits rest, plus delta units.
	msg := func(delta int, rest string) string {
		units := (16+len(hx(t, rest)))/8 + delta
		return fmt.Sprintf("02 03 00 03 %02x 00 00 00  01 00 00 00 02 00 00 00 %s", units, rest)
	}
	hdr := func(_ int, rest string) string { return msg(0, rest) }
	tests := []struct {
		name  string
		d     *sadb.Dialect
		wire  string
		want  error
		field string
	}{
		{"short header", linux, "02 03 00 03 02 00", sadb.ErrTruncated, "sadb_msg"},
		{"version 1", linux, "01 03 00 03 02 00 00 00  01 00 00 00 02 00 00 00", sadb.ErrVersion, "sadb_msg_version"},
		{"length says more", linux, msg(1, "01 00 14 00 02 00 00 00"), sadb.ErrTruncated, "sadb_msg_len"},
		{"length says less", linux, msg(-1, "01 00 14 00 02 00 00 00 01 00 15 00 02 00 00 00"), sadb.ErrLength, "sadb_msg_len"},
		{"length zero", linux, msg(-2, ""), sadb.ErrLength, "sadb_msg_len"},
		{"extension zero length", linux, hdr(3, "00 00 14 00 02 00 00 00  00 00 00 00 00 00 00 00"), sadb.ErrLength, "sadb_ext_len"},
		{"extension overruns", linux, hdr(3, "03 00 14 00 02 00 00 00  00 00 00 00 00 00 00 00"), sadb.ErrTruncated, "sadb_ext_len"},
		{"reserved type", linux, hdr(2, "01 00 00 00 00 00 00 00"), sadb.ErrReserved, "sadb_ext_type"},
		{"duplicate", linux, hdr(3, "01 00 14 00 02 00 00 00  01 00 14 00 02 00 00 00"), sadb.ErrDuplicate, "sadb_ext_type"},
		{"short SA", linux, hdr(2, "01 00 01 00 00 00 00 01"), sadb.ErrLength, "sadb_ext_len"},
		{"short lifetime", linux, hdr(3, "02 00 03 00 00 00 00 00  00 00 00 00 00 00 00 00"), sadb.ErrLength, "sadb_ext_len"},
		{"address family 99", linux, hdr(4, "03 00 05 00 00 20 00 00  63 00 00 00 c0 00 02 01  00 00 00 00 00 00 00 00"), sadb.ErrFamily, "sockaddr"},
		{"address prefix /33", linux, hdr(4, "03 00 05 00 00 21 00 00  02 00 00 00 c0 00 02 01  00 00 00 00 00 00 00 00"), sadb.ErrPrefix, "sadb_address_prefixlen"},
		{"address padded too much", linux, hdr(5, "04 00 05 00 00 20 00 00  02 00 00 00 c0 00 02 01  00 00 00 00 00 00 00 00  00 00 00 00 00 00 00 00"), sadb.ErrLength, "sadb_ext_len"},
		{"v6 sockaddr cut short", linux, hdr(4, "03 00 05 00 00 20 00 00  0a 00 00 00 00 00 00 00  20 01 0d b8 00 00 00 00"), sadb.ErrTruncated, "sockaddr"},
		{"BSD sa_len lies", freebsd, hdr(4, "03 00 05 00 00 20 00 00  0f 02 00 00 c0 00 02 01  00 00 00 00 00 00 00 00"), sadb.ErrLength, "sockaddr"},
		{"key bits exceed data", linux, hdr(3, "02 00 08 00 00 01 00 00  00 00 00 00 00 00 00 00"), sadb.ErrLength, "sadb_key_bits"},
		{"key padded too much", linux, hdr(4, "03 00 08 00 08 00 00 00  ff 00 00 00 00 00 00 00  00 00 00 00 00 00 00 00"), sadb.ErrLength, "sadb_key_bits"},
		{"proposal partial comb", linux, hdr(3, "02 00 0d 00 20 00 00 00  00 00 00 00 00 00 00 00"), sadb.ErrLength, "sadb_prop_len"},
		{"sensitivity bitmaps overrun", linux, hdr(3, "02 00 0c 00 00 00 00 00  00 02 00 00 00 00 00 00"), sadb.ErrLength, "sadb_ext_len"},
		{"request longer than policy", linux, hdr(5, "04 00 12 00 02 00 02 00  00 00 00 00 00 00 00 00  30 00 32 00 02 03 00 00  01 00 00 00 00 00 00 00"), sadb.ErrLength, "sadb_x_ipsecrequest.len"},
		{"request shorter than header", linux, hdr(5, "04 00 12 00 02 00 02 00  00 00 00 00 00 00 00 00  08 00 32 00 02 03 00 00  01 00 00 00 00 00 00 00"), sadb.ErrLength, "sadb_x_ipsecrequest.len"},
		{"request tail too short", freebsd, hdr(3, "03 00 12 00 02 00 02 00  00 00 00 00 00 00 00 00  04 00 00 00 00 00 00 00"), sadb.ErrLength, "sadb_x_ipsecrequest.len"},
		{"nat-t port long", linux, hdr(3, "02 00 15 00 11 94 00 00  00 00 00 00 00 00 00 00"), sadb.ErrLength, "sadb_ext_len"},
		{"filter bad family", linux, hdr(6, "05 00 1a 00  00 00 00 00 00 00 00 00 00 00 00 00 00 00 00 00  00 00 00 00 00 00 00 00 00 00 00 00 00 00 00 00  07 00 00 00"), sadb.ErrFamily, "sadb_x_filter_family"},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			_, err := sadb.Parse(tc.d, hx(t, tc.wire))
			var pe *sadb.ParseError
			if !errors.As(err, &pe) || !errors.Is(err, tc.want) {
				t.Fatalf("got %v, want a *ParseError wrapping %v", err, tc.want)
			}
			if pe.Field != tc.field {
				t.Errorf("field %q, want %q (%v)", pe.Field, tc.field, err)
			}
		})
	}
}

// Unknown extension types survive a round trip as Raw; a FreeBSD number
// means nothing to Linux and is kept, not misread.
func TestParseKeepsUnknown(t *testing.T) {
	wire := hx(t, "02 03 00 03 03 00 00 00 01 00 00 00 02 00 00 00  01 00 1a 00 00 10 00 00")
	m, err := sadb.Parse(freebsd, wire)
	if err != nil {
		t.Fatal(err)
	}
	if r := m.SAReplay(); r == nil || r.Replay != 4096 {
		t.Fatalf("freebsd: 26 is SA_REPLAY, got %#v", m.Exts)
	}
	m, err = sadb.Parse(netbsd, wire)
	if err != nil {
		t.Fatal(err)
	}
	if r, ok := m.Exts[0].(*sadb.Raw); !ok || r.T != 26 {
		t.Fatalf("netbsd has no extension 26; want Raw, got %#v", m.Exts[0])
	}
	out, err := m.Marshal(netbsd)
	if err != nil || !bytes.Equal(out, wire) {
		t.Fatalf("raw round trip: %v\n got %x\nwant %x", err, out, wire)
	}
}

func TestAccessors(t *testing.T) {
	m := everyExt(linux)[0]
	if m.SA() == nil || m.SA2() == nil || m.Lifetime(sadb.ExtLifetimeHard) == nil ||
		m.Address(sadb.ExtAddressProxy) == nil || m.Key(sadb.ExtKeyAuth) == nil {
		t.Fatal("accessor missed an extension that is there")
	}
	if m.Policy() != nil || m.NATTPort(true) != nil || m.Supported(sadb.ExtSupportedAuth) != nil {
		t.Fatal("accessor found an extension that is not there")
	}
	if got := m.Lifetime(sadb.ExtLifetimeSoft).AddTime; got != 80000 {
		t.Fatalf("soft lifetime addtime %d", got)
	}
	id := m.Ext(linux, sadb.ExtIdentitySrc).(*sadb.Identity)
	if id.String() != "vpn.example" {
		t.Fatalf("identity %q", id.String())
	}
	if !reflect.DeepEqual(m.Ext(linux, sadb.ExtSA), m.SA()) {
		t.Fatal("Ext and SA disagree")
	}
	if s := m.String(); !bytes.Contains([]byte(s), []byte("key(256 bits)")) || bytes.Contains([]byte(s), []byte{1, 1, 1}) {
		t.Fatalf("String leaks or misses key info: %q", s)
	}
}
