package swan

import (
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/strongswan/govici/vici"
)

func TestStrongswanConf(t *testing.T) {
	conf, err := strongswanConf(Options{}, LibIPsec, "unix:///tmp/x/charon.vici")
	if err != nil {
		t.Fatal(err)
	}
	for _, want := range []string{
		"\tload = random nonce openssl ", "kernel-libipsec kernel-netlink vici\n",
		"\tport = 500\n", "\tport_nat_t = 4500\n", "\tretransmit_tries = 2\n",
		"\t\trig {\n\t\t\tpath = stderr\n\t\t\tdefault = 2\n\t\t\tjob = 1\n",
		"\t\tvici {\n\t\t\tsocket = unix:///tmp/x/charon.vici\n",
	} {
		if !strings.Contains(conf, want) {
			t.Errorf("conf lacks %q:\n%s", want, conf)
		}
	}
	if strings.Contains(conf, "include") || strings.Contains(conf, "updown") || strings.Contains(conf, "stroke") {
		t.Errorf("conf includes or loads what it should not:\n%s", conf)
	}
	conf, err = strongswanConf(Options{Port: 1500, PortNATT: 5500, LogLevel: 4,
		Settings: map[string]string{"retransmit_tries": "5", "plugins.kernel-netlink.mtu": "1400", "filelog.rig.enc": "3"}},
		KernelNetlink, "unix:///s")
	if err != nil {
		t.Fatal(err)
	}
	for _, want := range []string{"\tport = 1500\n", "\tport_nat_t = 5500\n", "\tretransmit_tries = 5\n",
		"\t\tkernel-netlink {\n\t\t\tmtu = 1400\n", "\t\t\tdefault = 4\n", "\t\t\tenc = 3\n"} {
		if !strings.Contains(conf, want) {
			t.Errorf("conf lacks %q:\n%s", want, conf)
		}
	}
	if strings.Contains(conf, "libipsec") || strings.Count(conf, "retransmit_tries") != 1 {
		t.Errorf("kernel-netlink conf:\n%s", conf)
	}
	for name, o := range map[string]Options{
		"LogLevel": {LogLevel: 5}, "Port": {Port: 70000}, "PortNATT": {PortNATT: -1},
		"Port and PortNATT": {Port: 4500}, "Settings": {Settings: map[string]string{"a..b": "1"}},
	} {
		if _, err := strongswanConf(o, LibIPsec, "unix:///s"); err == nil || !strings.Contains(err.Error(), name) {
			t.Errorf("%s: error %v does not name the field", name, err)
		}
	}
}

func TestQuoteConf(t *testing.T) {
	for in, want := range map[string]string{
		"plain": "plain", "": `""`, "a{b": `"a{b"`, `x"y`: `"x\"y"`, " pad": `" pad"`, "#c": `"#c"`,
	} {
		if got := quoteConf(in); got != want {
			t.Errorf("quoteConf(%q) = %s, want %s", in, got, want)
		}
	}
}

// section returns the subsection at a path of m, failing t if absent.
func section(t *testing.T, m *vici.Message, path ...string) *vici.Message {
	t.Helper()
	for _, p := range path {
		s, ok := m.Get(p).(*vici.Message)
		if !ok {
			t.Fatalf("no section %s in\n%s", strings.Join(path, "."), m)
		}
		m = s
	}
	return m
}

func TestConnMessage(t *testing.T) {
	c := Conn{
		Name: "kp", Local: "10.0.0.1", Remote: "%any", RemotePort: 4501, LocalID: "a", RemoteID: "b",
		IKEProposal: "aes128gcm16-prfsha256-x25519, aes256-sha256-ecp256", ESPProposal: "aes128gcm16",
		LocalTS: []string{"10.10.1.0/24"}, RemoteTS: []string{"10.10.2.0/24", "10.10.3.0/24"},
		StartAction: "trap", Mode: "transport", Rekey: 1500 * time.Millisecond,
		Extra: map[string]string{"child.dpd_action": "clear", "local.id": "override", "mobike": "no",
			"children.kp.remote_ts": "10.9.0.0/16,10.8.0.0/16"},
	}
	m, err := connMessage(c, KernelNetlink, 0)
	if err != nil {
		t.Fatal(err)
	}
	k := section(t, m, "kp")
	for key, want := range map[string]any{
		"version": "2", "local_addrs": []string{"10.0.0.1"}, "remote_addrs": []string{"%any"},
		"remote_port": "4501", "proposals": []string{"aes128gcm16-prfsha256-x25519", "aes256-sha256-ecp256"},
		"rekey_time": "2s", "mobike": "no",
	} {
		if got := k.Get(key); !equalValue(got, want) {
			t.Errorf("%s = %v, want %v", key, got, want)
		}
	}
	for _, absent := range []string{"encap", "local_port"} {
		if k.Get(absent) != nil {
			t.Errorf("%s set without being asked: %v", absent, k.Get(absent))
		}
	}
	if l := section(t, m, "kp", "local"); l.Get("auth") != "psk" || l.Get("id") != "override" {
		t.Errorf("local section:\n%s", l)
	}
	ch := section(t, m, "kp", "children", "kp")
	for key, want := range map[string]any{
		"local_ts": []string{"10.10.1.0/24"}, "remote_ts": []string{"10.9.0.0/16", "10.8.0.0/16"},
		"esp_proposals": []string{"aes128gcm16"}, "start_action": "trap", "mode": "transport",
		"rekey_time": "2s", "dpd_action": "clear",
	} {
		if got := ch.Get(key); !equalValue(got, want) {
			t.Errorf("child %s = %v, want %v", key, got, want)
		}
	}

	// libipsec forces UDP encapsulation; a custom charon port becomes the
	// connection's local port; Child names the child.
	m, err = connMessage(Conn{Name: "x", Child: "y"}, LibIPsec, 1500)
	if err != nil {
		t.Fatal(err)
	}
	if k := section(t, m, "x"); k.Get("encap") != "yes" || k.Get("local_port") != "1500" {
		t.Errorf("libipsec conn:\n%s", m)
	}
	section(t, m, "x", "children", "y")
}

func equalValue(got, want any) bool {
	switch w := want.(type) {
	case string:
		g, ok := got.(string)
		return ok && g == w
	case []string:
		g, ok := got.([]string)
		return ok && slices.Equal(g, w)
	}
	return false
}

func TestConfigRejects(t *testing.T) {
	for field, o := range map[string]Options{
		"Mode":           {Mode: 9},
		"Name":           {Conns: []Conn{{}}},
		"StartAction":    {Conns: []Conn{{Name: "a", StartAction: "begin"}}},
		"Conns[0]: Mode": {Conns: []Conn{{Name: "a", Mode: "tunnle"}}},
		"LocalPort":      {Conns: []Conn{{Name: "a", LocalPort: 65536}}},
		"Rekey":          {Conns: []Conn{{Name: "a", Rekey: -time.Second}}},
		"Extra":          {Conns: []Conn{{Name: "a", Extra: map[string]string{"local.": "x"}}}},
		"used twice":     {Conns: []Conn{{Name: "a"}, {Name: "a", Child: "b"}}},
		"child \"a\"":    {Conns: []Conn{{Name: "a"}, {Name: "b", Child: "a"}}},
		"dots":           {Conns: []Conn{{Name: "a.b"}}},
	} {
		if _, err := buildConfig(o, "unix:///s"); err == nil || !strings.Contains(err.Error(), field) {
			t.Errorf("%s: error %v does not name it", field, err)
		}
	}
	cfg, err := buildConfig(Options{Mode: KernelNetlink, Conns: []Conn{{Name: "a", PSK: "k"}, {Name: "b", Child: "bc"}}}, "unix:///s")
	if err != nil {
		t.Fatal(err)
	}
	if ike, ok := cfg.connOf("bc"); !ok || ike != "b" || len(cfg.secrets) != 1 || !slices.Equal(cfg.order, []string{"a", "b"}) {
		t.Errorf("config: childOf %v secrets %d order %v", cfg.childOf, len(cfg.secrets), cfg.order)
	}
}

func TestSecretMessage(t *testing.T) {
	if secretMessage(Conn{Name: "a"}) != nil {
		t.Error("a secret without a PSK")
	}
	m := secretMessage(Conn{Name: "a", PSK: "k", LocalID: "x", RemoteID: "%any"})
	if m.Get("type") != "IKE" || m.Get("data") != "k" || m.Get("id") != "psk-a" || !equalValue(m.Get("owners"), []string{"x"}) {
		t.Errorf("secret:\n%s", m)
	}
	if m := secretMessage(Conn{Name: "a", PSK: "k"}); m.Get("owners") != nil {
		t.Errorf("owners without IDs: %v", m.Get("owners"))
	}
}

func TestTail(t *testing.T) {
	for _, tc := range []struct {
		in   string
		n    int
		want string
	}{{"a\nb\nc\n", 2, "b\nc"}, {"a\nb", 5, "a\nb"}, {"", 3, ""}, {"a\nb\nc", 1, "c"}, {"a\nb", 0, ""}} {
		if got := tail(tc.in, tc.n); got != tc.want {
			t.Errorf("tail(%q, %d) = %q, want %q", tc.in, tc.n, got, tc.want)
		}
	}
}

func TestWithoutChatter(t *testing.T) {
	in := "06:32:03.407 03[CFG] vici client 517 registered for: list-sa\n" +
		"06:32:03.408 09[IKE] <kp|1> IKE_SA kp[1] established\n" +
		"06:32:03.409 02[CFG] vici client 517 disconnected\n" +
		"06:32:03.410 02[CFG] vici client 3 requests: list-sas\n" +
		"06:32:03.411 02[CFG] vici client 4 requests: initiate\n"
	want := "06:32:03.408 09[IKE] <kp|1> IKE_SA kp[1] established\n" +
		"06:32:03.411 02[CFG] vici client 4 requests: initiate\n"
	if got := withoutChatter(in); got != want {
		t.Errorf("withoutChatter = %q, want %q", got, want)
	}
}

// TestConnPubkey: a Conn with Pubkey authenticates both ends with
// certificates: local certs and remote cacerts carry the PEM data (vici
// takes the data, not file names), revocation is set.
func TestConnPubkey(t *testing.T) {
	tr, err := connTree(Conn{Name: "kp", LocalID: "b.test", RemoteID: "a.test",
		Pubkey: &Pubkey{Cert: []byte("CERT"), CACerts: [][]byte{[]byte("CA1"), []byte("CA2")}, Revocation: "strict"}}, KernelNetlink, 0)
	if err != nil {
		t.Fatal(err)
	}
	for path, want := range map[string]any{
		"local.auth": "pubkey", "local.certs": []string{"CERT"}, "local.id": "b.test",
		"remote.auth": "pubkey", "remote.cacerts": []string{"CA1", "CA2"}, "remote.revocation": "strict",
	} {
		got := tr.get(path)
		if s, ok := want.([]string); ok {
			if g, ok := got.([]string); !ok || !slices.Equal(g, s) {
				t.Errorf("%s = %v, want %v", path, got, want)
			}
		} else if got != want {
			t.Errorf("%s = %v, want %v", path, got, want)
		}
	}
}
