package kernelops

import (
	"errors"
	"github.com/keyplane/keyplane/iana"
	"net/netip"
	"testing"
	"time"
)

func goodSA() *SA {
	return &SA{
		ID:         SAID{Src: netip.MustParseAddr("192.0.2.1"), Dst: netip.MustParseAddr("198.51.100.1"), SPI: 0xc0001000, Proto: ProtoESP},
		Mode:       ModeTunnel,
		ReqID:      DefaultReqIDMin,
		Encryption: Encryption{ID: iana.EncrAESGCM16, KeyBits: 128, Key: make(Key, 20)},
	}
}

func TestValidateSA(t *testing.T) {
	cbc := func(sa *SA) {
		sa.Encryption = Encryption{ID: iana.EncrAESCBC, KeyBits: 256, Key: make(Key, 32)}
		sa.Integrity = Integrity{ID: iana.IntegHMACSHA256_128, Key: make(Key, 32)}
	}
	tests := []struct {
		name  string
		mod   func(*SA)
		field string // "" means valid
		err   error
	}{
		{"gcm ok", func(*SA) {}, "", nil},
		{"cbc+sha256 ok", cbc, "", nil},
		{"chacha ok", func(sa *SA) { sa.Encryption = Encryption{ID: iana.EncrChaCha20Poly1305, Key: make(Key, 36)} }, "", nil},
		{"ipv6 ok", func(sa *SA) {
			sa.ID.Src, sa.ID.Dst = netip.MustParseAddr("2001:db8::1"), netip.MustParseAddr("2001:db8::2")
		}, "", nil},
		{"spi zero", func(sa *SA) { sa.ID.SPI = 0 }, "ID.SPI", ErrInvalid},
		{"spi reserved", func(sa *SA) { sa.ID.SPI = 255 }, "ID.SPI", ErrInvalid},
		{"mixed families", func(sa *SA) { sa.ID.Dst = netip.MustParseAddr("2001:db8::2") }, "ID.Dst", ErrInvalid},
		{"no src", func(sa *SA) { sa.ID.Src = netip.Addr{} }, "ID.Src", ErrInvalid},
		{"bad proto", func(sa *SA) { sa.ID.Proto = 17 }, "ID.Proto", ErrInvalid},
		{"gcm key short", func(sa *SA) { sa.Encryption.Key = make(Key, 16) }, "Encryption.Key", ErrInvalid},
		{"gcm bad keybits", func(sa *SA) { sa.Encryption.KeyBits = 100 }, "Encryption.KeyBits", ErrInvalid},
		{"unknown cipher", func(sa *SA) { sa.Encryption.ID = 999 }, "Encryption.ID", ErrInvalid},
		{"aead with integ", func(sa *SA) { sa.Integrity = Integrity{ID: iana.IntegHMACSHA256_128, Key: make(Key, 32)} }, "Integrity.ID", ErrInvalid},
		{"cbc without integ", func(sa *SA) { cbc(sa); sa.Integrity = Integrity{} }, "Integrity.ID", ErrInvalid},
		{"integ key short", func(sa *SA) { cbc(sa); sa.Integrity.Key = make(Key, 20) }, "Integrity.Key", ErrInvalid},
		{"unknown integ", func(sa *SA) { cbc(sa); sa.Integrity.ID = 77 }, "Integrity.ID", ErrInvalid},
		{"bad mode", func(sa *SA) { sa.Mode = 9 }, "Mode", ErrInvalid},
		{"selector host bits", func(sa *SA) { sa.Selector.Src = netip.MustParsePrefix("10.1.0.1/24") }, "Selector.Src", ErrInvalid},
		{"selector mixed", func(sa *SA) {
			sa.Selector.Src = netip.MustParsePrefix("10.1.0.0/24")
			sa.Selector.Dst = netip.MustParsePrefix("2001:db8::/64")
		}, "Selector.Dst", ErrInvalid},
		{"ports without proto", func(sa *SA) { sa.Selector.DstPort = 80 }, "Selector.Proto", ErrInvalid},
		{"soft above hard", func(sa *SA) { sa.Lifetime.Soft.Bytes, sa.Lifetime.Hard.Bytes = 10, 5 }, "Lifetime.Soft.Bytes", ErrInvalid},
		{"soft time above hard", func(sa *SA) { sa.Lifetime.Soft.AddTime, sa.Lifetime.Hard.AddTime = time.Hour, time.Minute }, "Lifetime.Soft.AddTime", ErrInvalid},
		{"encap zero port", func(sa *SA) { sa.Encap = &Encap{SrcPort: 4500} }, "Encap", ErrInvalid},
		{"offload without device", func(sa *SA) { sa.Offload.Mode = OffloadCrypto }, "Offload.Device", ErrInvalid},
		{"sync ok", func(sa *SA) {
			sa.ReplayWindow = 64
			sa.Sync = &SyncState{Replay: ReplayState{OSeq: 9, Seq: 1<<32 - 1, Bitmap: []uint32{1, 2}}, AddTime: time.Unix(1e9, 0)}
		}, "", nil},
		{"sync esn ok", func(sa *SA) { sa.ESN, sa.Sync = true, &SyncState{Replay: ReplayState{OSeq: 1 << 40}} }, "", nil},
		{"sync 64-bit without esn", func(sa *SA) { sa.Sync = &SyncState{Replay: ReplayState{OSeq: 1 << 32}} }, "Sync.Replay", ErrInvalid},
		{"sync inbound state on outbound SA", func(sa *SA) {
			sa.Dir, sa.Sync = DirOut, &SyncState{Replay: ReplayState{OSeq: 5, Bitmap: []uint32{1}}}
		}, "Sync.Replay", ErrInvalid},
		{"sync bitmap beyond window", func(sa *SA) {
			sa.ReplayWindow, sa.Sync = 32, &SyncState{Replay: ReplayState{Bitmap: []uint32{1, 1}}}
		}, "Sync.Replay.Bitmap", ErrInvalid},
		{"sync other window", func(sa *SA) {
			sa.ReplayWindow, sa.Sync = 32, &SyncState{Replay: ReplayState{Window: 64}}
		}, "Sync.Replay.Window", ErrInvalid},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			sa := goodSA()
			tc.mod(sa)
			err := ValidateSA("test", "add SA", sa, nil)
			if tc.field == "" {
				if err != nil {
					t.Fatalf("unexpected error: %v", err)
				}
				return
			}
			if !errors.Is(err, tc.err) {
				t.Fatalf("got %v, want %v", err, tc.err)
			}
			var ke *Error
			if !errors.As(err, &ke) || ke.Field != tc.field {
				t.Fatalf("field: got %+v, want %q", ke, tc.field)
			}
		})
	}
}

func TestValidateSAAlgorithmSet(t *testing.T) {
	algs := &AlgorithmSet{Encryption: []EncrID{iana.EncrAESCBC}, Integrity: []IntegID{iana.IntegHMACSHA256_128}}
	err := ValidateSA("vpp", "add SA", goodSA(), algs)
	if !errors.Is(err, ErrNotSupported) {
		t.Fatalf("known cipher missing from the dataplane: got %v, want ErrNotSupported", err)
	}
}

func TestValidatePolicy(t *testing.T) {
	tmpl := []Template{{Src: netip.MustParseAddr("192.0.2.1"), Dst: netip.MustParseAddr("198.51.100.1"), Proto: ProtoESP, Mode: ModeTunnel, ReqID: 1}}
	sel := Selector{Src: netip.MustParsePrefix("10.1.0.0/16"), Dst: netip.MustParsePrefix("10.2.0.0/16")}
	tests := []struct {
		name  string
		p     Policy
		field string
	}{
		{"ipsec ok", Policy{Selector: sel, Dir: DirOut, Action: ActionIPsec, Templates: tmpl}, ""},
		{"pass ok", Policy{Selector: sel, Dir: DirIn, Action: ActionPass}, ""},
		{"ipsec no templates", Policy{Selector: sel, Dir: DirOut, Action: ActionIPsec}, "Templates"},
		{"pass with templates", Policy{Selector: sel, Dir: DirOut, Action: ActionPass, Templates: tmpl}, "Templates"},
		{"no dir", Policy{Selector: sel, Action: ActionPass}, "Dir"},
		{"no action", Policy{Selector: sel, Dir: DirOut}, "Action"},
		{"tunnel template without addresses", Policy{Selector: sel, Dir: DirOut, Action: ActionTrap,
			Templates: []Template{{Proto: ProtoESP, Mode: ModeTunnel}}}, "Templates[0].Src"},
		{"invalid prefix", Policy{Selector: Selector{Src: netip.MustParsePrefix("10.1.2.3/8")}, Dir: DirOut, Action: ActionBlock}, "Selector.Src"},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			err := ValidatePolicy("test", "add policy", &tc.p)
			if tc.field == "" {
				if err != nil {
					t.Fatal(err)
				}
				return
			}
			var ke *Error
			if !errors.Is(err, ErrInvalid) || !errors.As(err, &ke) || ke.Field != tc.field {
				t.Fatalf("got %v (field %q), want ErrInvalid on %q", err, fieldOf(ke), tc.field)
			}
		})
	}
}

func fieldOf(e *Error) string {
	if e == nil {
		return ""
	}
	return e.Field
}

func TestAutoPriority(t *testing.T) {
	p := func(a Action, src, dst string, proto uint8, dport uint16) *Policy {
		return &Policy{Action: a, Selector: Selector{Src: netip.MustParsePrefix(src), Dst: netip.MustParsePrefix(dst), Proto: proto, DstPort: dport}}
	}
	wide := AutoPriority(p(ActionIPsec, "10.0.0.0/8", "10.0.0.0/8", 0, 0))
	narrow := AutoPriority(p(ActionIPsec, "10.1.0.0/16", "10.2.0.0/16", 0, 0))
	withProto := AutoPriority(p(ActionIPsec, "10.1.0.0/16", "10.2.0.0/16", 17, 0))
	withPort := AutoPriority(p(ActionIPsec, "10.1.0.0/16", "10.2.0.0/16", 17, 53))
	pass := AutoPriority(p(ActionPass, "0.0.0.0/0", "0.0.0.0/0", 0, 0))
	trap := AutoPriority(p(ActionTrap, "10.1.0.0/32", "10.2.0.0/32", 17, 53))
	if !(withPort < withProto && withProto < narrow && narrow < wide) {
		t.Errorf("specificity order broken: port %d proto %d narrow %d wide %d", withPort, withProto, narrow, wide)
	}
	if !(pass < wide) {
		t.Errorf("pass (%d) must outrank ipsec (%d)", pass, wide)
	}
	if !(trap > wide) {
		t.Errorf("trap (%d) must rank below installed ipsec (%d)", trap, wide)
	}
	explicit := p(ActionIPsec, "10.0.0.0/8", "10.0.0.0/8", 0, 0)
	explicit.Priority = 7
	if EffectivePriority(explicit) != 7 {
		t.Error("explicit priority not honoured")
	}
}

func TestEncrKeyLen(t *testing.T) {
	for _, tc := range []struct {
		id   EncrID
		bits int
		want int
	}{
		{iana.EncrAESGCM16, 128, 20}, {iana.EncrAESGCM16, 256, 36}, {iana.EncrAESCBC, 128, 16},
		{iana.EncrChaCha20Poly1305, 0, 36}, {iana.EncrAESCCM16, 192, 27}, {iana.EncrAESCTR, 256, 36},
	} {
		got, err := tc.id.KeyLen(tc.bits)
		if err != nil || got != tc.want {
			t.Errorf("%s/%d: got %d, %v; want %d", tc.id, tc.bits, got, err, tc.want)
		}
	}
	if _, err := iana.EncrAESCBC.KeyLen(0); err == nil {
		t.Error("AES without key length accepted")
	}
}
