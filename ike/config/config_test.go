package config

import (
	"errors"
	"net/netip"
	"strings"
	"testing"
	"time"

	"github.com/keyplane/keyplane/ike/message"
	"github.com/keyplane/keyplane/kernelops"
)

func testOpts() Options {
	return Options{
		Getenv: func(k string) (string, bool) {
			if k == "SITE_PSK" {
				return "env-secret", true
			}
			return "", false
		},
		ReadFile: func(p string) ([]byte, error) {
			if p == "site.psk" {
				return []byte("file-secret\n"), nil
			}
			return nil, errors.New("no such file " + p)
		},
	}
}

const good = `
# two sites
daemon {
	control = /tmp/kp.sock
	log_level = debug
	retransmit_timeout = 500ms
	retransmit_tries = 3
	cookie_threshold = 2
	revive_rate = 25.5
	revive_burst = 4
	down_queue_limit = 0
	down_queue_max_age = 90s
}
backend {
	name = nokernel
	params {
		acquire-expires = 10s
	}
}
connections {
	site-a {
		local_addrs = 127.0.0.1
		remote_addrs = 127.0.0.2
		local_port = 15500
		local_port_nat = 15501
		remote_port = 15600
		proposals = aes128gcm16-prfsha256-x25519, aes256-sha256-ecp256
		rekey_time = 2h
		psk_file = site.psk
		local {
			id = a.example.org
			auth = psk
		}
		remote {
			id = "user@b.example.org"   # quoted
		}
		children {
			net {
				local_ts = 10.1.0.0/16, 10.3.0.5[tcp/443]
				remote_ts = 10.2.0.0/16
				esp_proposals = aes256gcm16-esn
				start_action = trap
				rekey_time = 10m
				life_bytes = 1G
				rekey_bytes = 512M
			}
		}
	}
	road {
		remote_addrs = %any
		local_addrs = 192.0.2.1
		psk_env = SITE_PSK
		children {
			road-net {
				mode = transport
			}
		}
	}
}
`

func TestParseGood(t *testing.T) {
	cfg, err := Parse("kp.conf", []byte(good), testOpts())
	if err != nil {
		t.Fatal(err)
	}
	if cfg.Daemon.Control != "/tmp/kp.sock" || cfg.Daemon.RetransmitTimeout != 500*time.Millisecond ||
		cfg.Daemon.RetransmitTries != 3 || cfg.Daemon.CookieThreshold != 2 {
		t.Errorf("daemon %+v", cfg.Daemon)
	}
	if d := cfg.Daemon; d.ReviveRate != 25.5 || d.ReviveBurst != 4 || d.DownQueueLimit != 0 || d.DownQueueMaxAge != 90*time.Second {
		t.Errorf("link settings %+v", d)
	}
	if cfg.Backend.Name != "nokernel" || cfg.Backend.Params["acquire-expires"] != "10s" {
		t.Errorf("backend %+v", cfg.Backend)
	}
	a := cfg.Connection("site-a")
	if a == nil || a.LocalPort != 15500 || a.LocalNATPort != 15501 || a.RemotePort != 15600 || a.RemoteNATPort != 4500 {
		t.Fatalf("site-a %+v", a)
	}
	if string(a.PSK) != "file-secret" || a.PSKSource != "file site.psk" {
		t.Errorf("psk from file: %q %s", a.PSK, a.PSKSource)
	}
	if a.LocalID.Type != message.IDFQDN || a.RemoteID.Type != message.IDRFC822Addr || string(a.RemoteID.Data) != "user@b.example.org" {
		t.Errorf("ids %v %v", a.LocalID, a.RemoteID)
	}
	if len(a.Proposals) != 2 || a.Proposals[1].PRF[0] != message.PRFHMACSHA2256 {
		t.Errorf("proposals %+v", a.Proposals)
	}
	conn, ch := cfg.Child("net")
	if conn != a || ch.StartAction != StartTrap || len(ch.LocalTS) != 2 || ch.LocalTS[1].Port != 443 || ch.LocalTS[1].Proto != 6 {
		t.Fatalf("child %+v", ch)
	}
	if ch.Lifetime.Soft.AddTime != 10*time.Minute || ch.Lifetime.Hard.AddTime != 11*time.Minute ||
		ch.Lifetime.Hard.Bytes != 1<<30 || ch.Lifetime.Soft.Bytes != 512<<20 {
		t.Errorf("lifetime %+v", ch.Lifetime)
	}
	if ch.ESPProposals[0].ESN[0] != message.ESNYes {
		t.Errorf("esn %+v", ch.ESPProposals[0])
	}
	if a.RekeyTime != 2*time.Hour {
		t.Errorf("IKE rekey_time %v, want 2h", a.RekeyTime)
	}
	road := cfg.Connection("road")
	if road.RekeyTime != DefaultIKERekeyTime {
		t.Errorf("default IKE rekey_time %v, want %v", road.RekeyTime, DefaultIKERekeyTime)
	}
	if road.RemoteAddr.IsValid() || !road.RemoteID.Any || string(road.PSK) != "env-secret" {
		t.Errorf("road %+v", road)
	}
	if road.LocalID.Type != message.IDIPv4Addr {
		t.Errorf("default local id %v", road.LocalID)
	}
	if road.Children[0].Mode != kernelops.ModeTransport || !road.Children[0].LocalTS[0].Dynamic {
		t.Errorf("road child %+v", road.Children[0])
	}
}

func TestErrorsNameWhere(t *testing.T) {
	conn := func(body string) string {
		return "connections {\n c1 {\n  remote_addrs = 127.0.0.2\n  local_addrs = 127.0.0.1\n  psk_env = SITE_PSK\n" + body + "\n  children {\n   ch1 {\n   }\n  }\n }\n}\n"
	}
	child := func(body string) string {
		return "connections {\n c1 {\n  remote_addrs = 127.0.0.2\n  local_addrs = 127.0.0.1\n  psk_env = SITE_PSK\n  children {\n   ch1 {\n" + body + "\n   }\n  }\n }\n}\n"
	}
	cases := []struct {
		name, src     string
		line          int
		conn, child   string
		field, substr string
	}{
		{"syntax", "daemon {\n x\n}", 2, "", "", "", "followed by"},
		{"unclosed", "daemon {\n", 1, "", "", "", "never closed"},
		{"unknown top", "foo {\n}\n", 1, "", "", "foo", "unknown section"},
		{"daemon field", "daemon {\n retransmit_tries = lots\n}\n", 2, "", "", "daemon.retransmit_tries", "whole number"},
		{"revive rate", "daemon {\n revive_rate = 0\n}\n", 2, "", "", "daemon.revive_rate", "per second"},
		{"revive burst", "daemon {\n revive_burst = 0\n}\n", 2, "", "", "daemon.revive_burst", "whole number"},
		{"queue age", "daemon {\n down_queue_max_age = 0\n}\n", 2, "", "", "daemon.down_queue_max_age", "duration"},
		{"bad proposal", conn("  proposals = aes128-prfsha256-x25519"), 6, "c1", "", "proposals", "integrity"},
		{"unknown alg", conn("  proposals = aes128gcm16-prfsha256-x448"), 6, "c1", "", "proposals", "unknown algorithm"},
		{"bad port", conn("  local_port = 70000"), 6, "c1", "", "local_port", "1 to 65535"},
		{"ike rekey", conn("  rekey_time = soon"), 6, "c1", "", "rekey_time", "duration"},
		{"typo", conn("  remote_adrs = 1.2.3.4"), 6, "c1", "", "remote_adrs", "unknown setting"},
		{"bad id", conn("  local {\n   id = ipv4:foo\n  }"), 7, "c1", "", "local.id", "not an ipv4"},
		{"bad ts", child("    local_ts = 10.1.0.1/16"), 8, "c1", "ch1", "local_ts", "host bits"},
		{"bad start", child("    start_action = later"), 8, "c1", "ch1", "start_action", "want none"},
		{"esp prf", child("    esp_proposals = aes128gcm16-prfsha256"), 8, "c1", "ch1", "esp_proposals", "PRF is for IKE"},
		{"lifetimes", child("    rekey_bytes = 2G\n    life_bytes = 1G"), 8, "c1", "ch1", "rekey_bytes", "below"},
		{"no psk", "connections {\n c1 {\n  children {\n   x {\n   }\n  }\n }\n}\n", 2, "c1", "", "psk_file", "no pre-shared key"},
		{"missing env", "connections {\n c1 {\n  psk_env = NOPE\n  local_addrs = 1.2.3.4\n  children {\n   x {\n   }\n  }\n }\n}\n", 3, "c1", "", "psk_env", "unset"},
		{"missing file", "connections {\n c1 {\n  psk_file = nope.psk\n  local_addrs = 1.2.3.4\n  children {\n   x {\n   }\n  }\n }\n}\n", 3, "c1", "", "psk_file", "no such file"},
		{"trap any", "connections {\n c1 {\n  psk_env = SITE_PSK\n  local_addrs = 1.2.3.4\n  children {\n   x {\n    start_action = trap\n   }\n  }\n }\n}\n", 7, "c1", "x", "start_action", "remote address"},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			_, err := Parse("kp.conf", []byte(tc.src), testOpts())
			var ce *Error
			if !errors.As(err, &ce) {
				t.Fatalf("error %v (%T), want *Error", err, err)
			}
			if ce.File != "kp.conf" || ce.Line != tc.line || ce.Conn != tc.conn || ce.Child != tc.child || ce.Field != tc.field || !strings.Contains(ce.Msg, tc.substr) {
				t.Errorf("got %+v (%v); want line %d conn %q child %q field %q msg ~%q", ce, err, tc.line, tc.conn, tc.child, tc.field, tc.substr)
			}
		})
	}
}

func TestPSKNeverPrinted(t *testing.T) {
	cfg, err := Parse("kp.conf", []byte(good), testOpts())
	if err != nil {
		t.Fatal(err)
	}
	for _, s := range []string{
		strings.Join([]string{cfg.Connections[0].PSK.String()}, ""),
		func() string { b, _ := cfg.Connections[0].PSK.MarshalText(); return string(b) }(),
	} {
		if strings.Contains(s, "file-secret") {
			t.Errorf("PSK leaked: %s", s)
		}
	}
}

func TestIdentities(t *testing.T) {
	cases := []struct {
		in   string
		typ  message.IDType
		data string
	}{
		{"192.0.2.1", message.IDIPv4Addr, "\xc0\x00\x02\x01"},
		{"2001:db8::1", message.IDIPv6Addr, "\x20\x01\x0d\xb8" + strings.Repeat("\x00", 11) + "\x01"},
		{"@vpn.example.org", message.IDFQDN, "vpn.example.org"},
		{"vpn.example.org", message.IDFQDN, "vpn.example.org"},
		{"alice@example.org", message.IDRFC822Addr, "alice@example.org"},
		{"keyid:abc", message.IDKeyID, "abc"},
		{"@#0102ff", message.IDKeyID, "\x01\x02\xff"},
		{"fqdn:192.0.2.1", message.IDFQDN, "192.0.2.1"},
	}
	for _, c := range cases {
		id, err := ParseIdentity(c.in)
		if err != nil || id.Type != c.typ || string(id.Data) != c.data {
			t.Errorf("%s: %+v %v", c.in, id, err)
		}
	}
	if id, _ := ParseIdentity("%any"); !id.Any || !id.Matches(message.IDFQDN, []byte("x")) {
		t.Errorf("%%any")
	}
}

func TestTS(t *testing.T) {
	ts, err := ParseTSList("10.0.0.0/8, 192.0.2.7[udp/53], dynamic[icmp], 2001:db8::/32")
	if err != nil {
		t.Fatal(err)
	}
	if ts[0].Prefix != netip.MustParsePrefix("10.0.0.0/8") || ts[1].Proto != 17 || ts[1].Port != 53 ||
		ts[1].Prefix.Bits() != 32 || !ts[2].Dynamic || ts[2].Proto != 1 || !ts[3].Prefix.Addr().Is6() {
		t.Errorf("%+v", ts)
	}
	if got := ts[1].String(); got != "192.0.2.7/32[udp/53]" {
		t.Errorf("String %q", got)
	}
	for _, bad := range []string{"10.0.0.0/8[tcp", "x", "10.0.0.0/8[icmp/5]", "10.0.0.0/8[foo]", ""} {
		if _, err := ParseTSList(bad); err == nil {
			t.Errorf("%q accepted", bad)
		}
	}
}

func TestProposals(t *testing.T) {
	ps, err := ParseProposals("aes128gcm16-aes256gcm16-prfsha256-prfsha384-x25519-ecp256-modp2048", true)
	if err != nil {
		t.Fatal(err)
	}
	tr := ps[0].Transforms(true)
	if len(tr) != 7 || tr[0].KeyLength != 128 || tr[1].KeyLength != 256 {
		t.Errorf("%v", tr)
	}
	esp, err := ParseProposals("aes256-sha512-x25519", false)
	if err != nil {
		t.Fatal(err)
	}
	if n := len(esp[0].Transforms(false)); n != 3 { // ENCR INTEG ESN, no KE in IKE_AUTH
		t.Errorf("%d transforms without KE", n)
	}
	for _, bad := range []string{"", "aes128gcm16-sha256-prfsha256-x25519", "aes128-aes128gcm16-sha256-x25519", "sha256-x25519", "aes128gcm16-prfsha256"} {
		if _, err := ParseProposals(bad, true); err == nil {
			t.Errorf("IKE %q accepted", bad)
		}
	}
}

func TestLinkSettingsDefaults(t *testing.T) {
	cfg, err := Parse("kp.conf", []byte("daemon {\n}\n"), testOpts())
	if err != nil {
		t.Fatal(err)
	}
	d := cfg.Daemon
	if d.ReviveRate != DefaultReviveRate || d.ReviveBurst != DefaultReviveBurst ||
		d.DownQueueLimit != DefaultDownQueueLimit || d.DownQueueMaxAge != DefaultDownQueueMaxAge {
		t.Errorf("defaults %+v", d)
	}
}

// TestRandDefaults: rand_time (IKE SA and child), rand_bytes and
// rand_packets with swanctl's defaults — a child's range is its life
// limit minus its rekey limit, each life limit defaulting to 110% of the
// rekey limit; an IKE SA's is over_time's default, a tenth of
// rekey_time — and as set.
func TestRandDefaults(t *testing.T) {
	parse := func(conn, child string) (*Connection, *Child) {
		t.Helper()
		src := "connections {\n c1 {\n  remote_addrs = 127.0.0.2\n  local_addrs = 127.0.0.1\n  psk_env = SITE_PSK\n" + conn +
			"\n  children {\n   ch1 {\n" + child + "\n   }\n  }\n }\n}\n"
		cfg, err := Parse("t.conf", []byte(src), Options{Getenv: func(string) (string, bool) { return "x", true }})
		if err != nil {
			t.Fatal(err)
		}
		return cfg.Connections[0], cfg.Connections[0].Children[0]
	}
	for _, tc := range []struct {
		conn, child  string
		ikeRand      time.Duration
		rand         time.Duration
		hard         time.Duration
		randB, hardB uint64
		randP, hardP uint64
	}{
		{"", "", 24 * time.Minute, 6 * time.Minute, 66 * time.Minute, 0, 0, 0, 0},
		{"rekey_time = 1h", "rekey_time = 10m", 6 * time.Minute, time.Minute, 11 * time.Minute, 0, 0, 0, 0},
		{"rand_time = 5m", "rand_time = 30s", 5 * time.Minute, 30 * time.Second, 66 * time.Minute, 0, 0, 0, 0},
		{"rekey_time = 0", "life_time = 2h", 0, time.Hour, 2 * time.Hour, 0, 0, 0, 0},
		{"", "rand_time = 0\n rekey_bytes = 1000\n rekey_packets = 200", 24 * time.Minute, 0, 66 * time.Minute, 100, 1100, 20, 220},
		{"", "rekey_bytes = 1M\n life_bytes = 2M\n rand_bytes = 10k", 24 * time.Minute, 6 * time.Minute, 66 * time.Minute, 10 << 10, 2 << 20, 0, 0},
	} {
		c, ch := parse(tc.conn, tc.child)
		if c.RandTime != tc.ikeRand {
			t.Errorf("%q: IKE rand_time %v, want %v", tc.conn, c.RandTime, tc.ikeRand)
		}
		lt := ch.Lifetime
		if ch.RandTime != tc.rand || lt.Hard.AddTime != tc.hard || ch.RandBytes != tc.randB || lt.Hard.Bytes != tc.hardB ||
			ch.RandPackets != tc.randP || lt.Hard.Packets != tc.hardP {
			t.Errorf("%q: rand %v/%d/%d life %v/%d/%d; want %v/%d/%d life %v/%d/%d", tc.child, ch.RandTime, ch.RandBytes, ch.RandPackets,
				lt.Hard.AddTime, lt.Hard.Bytes, lt.Hard.Packets, tc.rand, tc.randB, tc.randP, tc.hard, tc.hardB, tc.hardP)
		}
	}
}

func TestIKESocketBuffer(t *testing.T) {
	for _, tc := range []struct {
		text string
		want int
	}{{"", DefaultIKESocketBuffer}, {"ike_socket_buffer = 0", 0}, {"ike_socket_buffer = 512k", 512 << 10},
		{"ike_socket_buffer = 32M", 32 << 20}, {"ike_socket_buffer = 1G", 1 << 30}} {
		cfg, err := Parse("kp.conf", []byte("daemon {\n"+tc.text+"\n}\n"), testOpts())
		if err != nil {
			t.Fatalf("%q: %v", tc.text, err)
		}
		if cfg.Daemon.IKESocketBuffer != tc.want {
			t.Errorf("%q: %d, want %d", tc.text, cfg.Daemon.IKESocketBuffer, tc.want)
		}
	}
	if _, err := Parse("kp.conf", []byte("daemon {\nike_socket_buffer = lots\n}\n"), testOpts()); err == nil ||
		!strings.Contains(err.Error(), "daemon.ike_socket_buffer") {
		t.Errorf("a bad size: %v", err)
	}
}
