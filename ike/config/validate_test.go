package config

import (
	"errors"
	"fmt"
	"log/slog"
	"net/netip"
	"strings"
	"testing"
	"time"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"

	"github.com/keyplane/keyplane/ike/ikecrypto"
	"github.com/keyplane/keyplane/kernelops"
)

// One pass over a file reports every error, syntax and meaning alike,
// in the order of the lines.
func TestParseReportsEveryError(t *testing.T) {
	src := `daemon {
	retransmit_tries = lots
	half_open_timeout = 0
	bogus = 1
	log_format = yaml
}
connections {
	a {
		local_addrs = 127.0.0.1
		psk_env = NOPE
		version = 1
		children {
			x {
				local_ts = 10.1.0.1/16
				hw_offload = sometimes
			}
		}
	}
	b {
		local_addrs = 127.0.0.1, ::1
		remote_addrs = vpn.example.org
		psk_env = SITE_PSK
		local_port = 4500
		children {
			x {
				start_action = later
			}
		}
	}
	c {
		local_addrs = 127.0.0.1
		psk_env = SITE_PSK
		!oops
	}
}
`
	_, err := Parse("kp.conf", []byte(src), testOpts())
	var es Errors
	require.ErrorAs(t, err, &es)
	type where struct {
		line         int
		conn, field  string
		msgSubstring string
	}
	want := []where{
		{2, "", "daemon.retransmit_tries", `"lots": want a whole number from 0 to 20`},
		{3, "", "daemon.half_open_timeout", "above zero"},
		{4, "", "bogus", "unknown setting"},
		{5, "", "daemon.log_format", `"yaml": want text or json`},
		{10, "a", "psk_env", "NOPE is unset"},
		{11, "a", "version", "IKEv1 is not supported"},
		{14, "a", "local_ts", "host bits"},
		{15, "a", "hw_offload", `"sometimes"`},
		{21, "b", "remote_addrs", "host names are not supported"},
		{23, "b", "local_port_nat", "4500 is also local_port"},
		{25, "b", "children", `child name "x" is already used by connection a`},
		{26, "b", "start_action", `"later": want none, start or trap`},
		{30, "c", "children", "at least one child"},
		{33, "", "", `unexpected '!'`},
	}
	got := make([]where, len(es))
	for i, e := range es {
		got[i] = where{e.Line, e.Conn, e.Field, e.Msg}
	}
	require.Len(t, es, len(want), "errors:\n%v", err)
	for i, w := range want {
		assert.Equal(t, w.line, got[i].line, "error %d: %v", i, es[i])
		assert.Equal(t, w.conn, got[i].conn, "error %d: %v", i, es[i])
		assert.Equal(t, w.field, got[i].field, "error %d: %v", i, es[i])
		assert.Contains(t, got[i].msgSubstring, w.msgSubstring, "error %d", i)
	}
	// errors.As finds the first; every one is an *Error with the file.
	var first *Error
	require.ErrorAs(t, err, &first)
	assert.Equal(t, 2, first.Line)
	for _, line := range strings.Split(err.Error(), "\n") {
		assert.True(t, strings.HasPrefix(line, "kp.conf:"), "line %q", line)
	}
}

// A file of garbage gets a bounded answer.
func TestParseErrorsBounded(t *testing.T) {
	src := strings.Repeat("!\n", 10*MaxErrors)
	_, err := Parse("kp.conf", []byte(src), testOpts())
	var es Errors
	require.ErrorAs(t, err, &es)
	assert.LessOrEqual(t, len(es), MaxErrors+1)
}

func TestSwanctlAddressLists(t *testing.T) {
	src := "connections {\n c {\n  local_addrs = 192.0.2.1, 192.0.2.2\n  remote_addrs = 198.51.100.1,198.51.100.2 , 198.51.100.3\n  psk_env = SITE_PSK\n  version = 2\n  children {\n   x {\n   }\n  }\n }\n}\n"
	cfg, err := Parse("kp.conf", []byte(src), testOpts())
	require.NoError(t, err)
	c := cfg.Connections[0]
	assert.Equal(t, netip.MustParseAddr("192.0.2.1"), c.LocalAddr)
	assert.Equal(t, netip.MustParseAddr("198.51.100.1"), c.RemoteAddr)
	assert.Len(t, c.LocalAddrs, 2)
	assert.Len(t, c.RemoteAddrs, 3)
	require.GreaterOrEqual(t, len(cfg.Warnings), 2)
	assert.Equal(t, "local_addrs", cfg.Warnings[0].Field)
	assert.Equal(t, 3, cfg.Warnings[0].Line)
	assert.Contains(t, cfg.Warnings[0].Msg, "only the first address, 192.0.2.1, is used")
	assert.Equal(t, "remote_addrs", cfg.Warnings[1].Field)
	assert.Contains(t, cfg.Warnings[1].Msg, "the other 2 are ignored")

	for _, bad := range []struct{ value, msg string }{
		{"%any, 192.0.2.1", "%any stands alone"},
		{"192.0.2.0/24", "prefixes and ranges"},
		{"192.0.2.1-192.0.2.9", "prefixes and ranges"},
		{"gw.example.org", "host names are not supported"},
		{"fe80::1%eth0", "want IPv4 or IPv6 addresses"},
	} {
		src := fmt.Sprintf("connections {\n c {\n  remote_addrs = %s\n  local_addrs = 192.0.2.1\n  psk_env = SITE_PSK\n  children {\n   x {\n   }\n  }\n }\n}\n", bad.value)
		_, err := Parse("kp.conf", []byte(src), testOpts())
		var ce *Error
		if assert.ErrorAs(t, err, &ce, bad.value) {
			assert.Equal(t, "remote_addrs", ce.Field)
			assert.Equal(t, 3, ce.Line)
			assert.Contains(t, ce.Msg, bad.msg, bad.value)
		}
	}
}

func TestSwanctlVersion(t *testing.T) {
	for _, c := range []struct{ value, err string }{
		{"2", ""},
		{"1", "IKEv1 is not supported"},
		{"0", "0 (any IKE version) is not supported"},
		{"3", `"3": want 2`},
	} {
		src := fmt.Sprintf("connections {\n c {\n  version = %s\n  local_addrs = 192.0.2.1\n  psk_env = SITE_PSK\n  children {\n   x {\n   }\n  }\n }\n}\n", c.value)
		_, err := Parse("kp.conf", []byte(src), testOpts())
		if c.err == "" {
			assert.NoError(t, err, c.value)
			continue
		}
		var ce *Error
		if assert.ErrorAs(t, err, &ce, c.value) {
			assert.Equal(t, "version", ce.Field)
			assert.Contains(t, ce.Msg, c.err)
		}
	}
}

func TestDaemonObservabilitySettings(t *testing.T) {
	src := "daemon {\n log_format = json\n metrics = 127.0.0.1:9417\n}\nconnections {\n c {\n  local_addrs = 192.0.2.1\n  psk_env = SITE_PSK\n  log_level = debug\n  children {\n   x {\n   }\n  }\n }\n}\n"
	cfg, err := Parse("kp.conf", []byte(src), testOpts())
	require.NoError(t, err)
	assert.Equal(t, LogJSON, cfg.Daemon.LogFormat)
	assert.Equal(t, netip.MustParseAddrPort("127.0.0.1:9417"), cfg.Daemon.Metrics)
	require.NotNil(t, cfg.Connections[0].LogLevel)
	assert.Equal(t, slog.LevelDebug, *cfg.Connections[0].LogLevel)

	cfg, err = Parse("kp.conf", []byte("daemon {\n metrics = [::1]:9417\n}\n"), testOpts())
	require.NoError(t, err)
	assert.True(t, cfg.Daemon.Metrics.Addr().Is6())
	cfg, err = Parse("kp.conf", []byte(""), testOpts())
	require.NoError(t, err)
	assert.False(t, cfg.Daemon.Metrics.IsValid(), "metrics are opt-in")
	assert.Equal(t, LogText, cfg.Daemon.LogFormat)

	for _, bad := range []string{"localhost:9417", "127.0.0.1", "127.0.0.1:0", ":9417"} {
		_, err := Parse("kp.conf", []byte("daemon {\n metrics = "+bad+"\n}\n"), testOpts())
		var ce *Error
		if assert.ErrorAs(t, err, &ce, bad) {
			assert.Equal(t, "daemon.metrics", ce.Field)
			assert.Contains(t, ce.Msg, "want ADDRESS:PORT")
		}
	}
}

// goConf is a valid configuration built in Go from the defaults.
func goConf() *Config {
	cfg := Defaults()
	c := DefaultConnection("site")
	c.LocalAddr = netip.MustParseAddr("192.0.2.1")
	c.RemoteAddr = netip.MustParseAddr("198.51.100.7")
	c.LocalID = AddrIdentity(c.LocalAddr)
	c.PSK = ikecrypto.Key("a long enough pre-shared key")
	c.Children = append(c.Children, DefaultChild("lan"))
	cfg.Connections = append(cfg.Connections, c)
	return cfg
}

// The defaults are the parser's: a file with the fewest settings and a
// Config from Defaults hold the same values.
func TestDefaultsAreTheParsers(t *testing.T) {
	src := "connections {\n site {\n  local_addrs = 192.0.2.1\n  remote_addrs = 198.51.100.7\n  psk_env = K\n  children {\n   lan {\n   }\n  }\n }\n}\n"
	parsed, err := Parse("kp.conf", []byte(src), Options{Getenv: func(string) (string, bool) { return "a long enough pre-shared key", true }})
	require.NoError(t, err)
	built := goConf()
	require.NoError(t, built.Validate())
	assert.Equal(t, built.Daemon, parsed.Daemon)
	assert.Equal(t, built.Backend, parsed.Backend)
	pc, bc := parsed.Connections[0], built.Connections[0]
	assert.Equal(t, bc.LocalPort, pc.LocalPort)
	assert.Equal(t, bc.RemoteNATPort, pc.RemoteNATPort)
	assert.Equal(t, bc.RekeyTime, pc.RekeyTime)
	assert.Equal(t, bc.RandTime, pc.RandTime)
	assert.Equal(t, DefaultIKERekeyTime/10, pc.RandTime, "swanctl's rand_time: over_time's default, a tenth of rekey_time")
	assert.Equal(t, bc.RemoteID, pc.RemoteID)
	assert.Equal(t, bc.LocalID, pc.LocalID)
	assert.Equal(t, fmt.Sprint(bc.Proposals), fmt.Sprint(pc.Proposals))
	pch, bch := pc.Children[0], bc.Children[0]
	assert.Equal(t, bch.Lifetime, pch.Lifetime)
	assert.Equal(t, [3]any{bch.RandTime, bch.RandBytes, bch.RandPackets}, [3]any{pch.RandTime, pch.RandBytes, pch.RandPackets})
	assert.Equal(t, DefaultChildRekeyTime/10, pch.RandTime, "swanctl's rand_time: life_time - rekey_time")
	assert.Equal(t, bch.Mode, pch.Mode)
	assert.Equal(t, bch.ReplayWindow, pch.ReplayWindow)
	assert.Equal(t, fmt.Sprint(bch.ESPProposals, bch.LocalTS, bch.RemoteTS), fmt.Sprint(pch.ESPProposals, pch.LocalTS, pch.RemoteTS))
	assert.Equal(t, DefaultChildRekeyTime+DefaultChildRekeyTime/10, pch.Lifetime.Hard.AddTime)
}

// Validate gives a Config built in Go the errors the parser gives the
// same values written in a file: same field, same wording.
func TestValidateMatchesTheParser(t *testing.T) {
	cases := []struct {
		name    string
		setting string // in daemon { }, the connection or the child
		where   string // "daemon", "conn" or "child"
		mutate  func(*Config)
		field   string
		msg     string // the message after the value
	}{
		{"zero half-open timeout", "half_open_timeout = 0", "daemon",
			func(c *Config) { c.Daemon.HalfOpenTimeout = 0 }, "daemon.half_open_timeout", wantPositiveDur},
		{"zero retransmit timeout", "retransmit_timeout = 0", "daemon",
			func(c *Config) { c.Daemon.RetransmitTimeout = 0 }, "daemon.retransmit_timeout", wantPositiveDur},
		{"retransmit base", "retransmit_base = 11", "daemon",
			func(c *Config) { c.Daemon.RetransmitBase = 11 }, "daemon.retransmit_base", wantBase},
		{"retransmit tries", "retransmit_tries = 21", "daemon",
			func(c *Config) { c.Daemon.RetransmitTries = 21 }, "daemon.retransmit_tries", wantWhole(0, 20)},
		{"cookie threshold per address", "cookie_threshold_ip = 2000000", "daemon",
			func(c *Config) { c.Daemon.CookieThresholdIP = 2000000 }, "daemon.cookie_threshold_ip", wantWhole(0, maxCookieThreshold)},
		{"block threshold", "block_threshold = 2000000", "daemon",
			func(c *Config) { c.Daemon.BlockThreshold = 2000000 }, "daemon.block_threshold", wantWhole(0, maxCookieThreshold)},
		{"half-open limit", "init_limit_half_open = 2000000", "daemon",
			func(c *Config) { c.Daemon.InitLimitHalfOpen = 2000000 }, "daemon.init_limit_half_open", wantWhole(0, maxCookieThreshold)},
		{"small max packet", "max_packet = 1000", "daemon",
			func(c *Config) { c.Daemon.MaxPacket = 1000 }, "daemon.max_packet", wantWhole(minMaxPacket, maxMaxPacket)},
		{"revive rate", "revive_rate = 0", "daemon",
			func(c *Config) { c.Daemon.ReviveRate = 0 }, "daemon.revive_rate", wantReviveRate},
		{"revive burst", "revive_burst = 0", "daemon",
			func(c *Config) { c.Daemon.ReviveBurst = 0 }, "daemon.revive_burst", wantWhole(1, maxReviveBurst)},
		{"down queue", "down_queue_limit = 2000", "daemon",
			func(c *Config) { c.Daemon.DownQueueLimit = 2000 }, "daemon.down_queue_limit", wantWhole(0, maxDownQueueLimit)},
		{"down queue age", "down_queue_max_age = 0", "daemon",
			func(c *Config) { c.Daemon.DownQueueMaxAge = 0 }, "daemon.down_queue_max_age", wantPositiveDur},
		{"socket buffer", "ike_socket_buffer = 2G", "daemon",
			func(c *Config) { c.Daemon.IKESocketBuffer = 2 << 30 }, "daemon.ike_socket_buffer", wantSocketBuffer},
		{"NAT port is the IKE port", "local_port_nat = 500", "conn",
			func(c *Config) { c.Connections[0].LocalNATPort = 500 }, "local_port_nat", "500 is also local_port; set local_port_nat to another port"},
		{"families", "remote_addrs = 2001:db8::1", "conn",
			func(c *Config) { c.Connections[0].RemoteAddr = netip.MustParseAddr("2001:db8::1") }, "remote_addrs", "2001:db8::1 and local address 192.0.2.1 are of different families"},
		{"replay window", "replay_window = 5000", "child",
			func(c *Config) { c.Connections[0].Children[0].ReplayWindow = 5000 }, "replay_window", wantWhole(0, maxReplayWindow)},
		{"lifetimes", "rekey_bytes = 2G\nlife_bytes = 1G", "child",
			func(c *Config) {
				l := &c.Connections[0].Children[0].Lifetime
				l.Soft.Bytes, l.Hard.Bytes = 2<<30, 1<<30
			}, "rekey_bytes", "rekey limit 2147483648 must be below the life limit 1073741824"},
		{"rekey after life", "rekey_time = 2h\nlife_time = 1h", "child",
			func(c *Config) {
				l := &c.Connections[0].Children[0].Lifetime
				l.Soft.AddTime, l.Hard.AddTime = 2*time.Hour, time.Hour
			}, "rekey_time", "rekey time 2h0m0s must be below the life time 1h0m0s"},
		{"negative IKE rand time", "rand_time = -1m", "conn",
			func(c *Config) { c.Connections[0].RandTime = -time.Minute }, "rand_time", wantDuration},
		{"negative child rand time", "rand_time = -1m", "child",
			func(c *Config) { c.Connections[0].Children[0].RandTime = -time.Minute }, "rand_time", wantDuration},
		{"packets", "rekey_packets = 200\nlife_packets = 100", "child",
			func(c *Config) {
				l := &c.Connections[0].Children[0].Lifetime
				l.Soft.Packets, l.Hard.Packets = 200, 100
			}, "rekey_packets", "rekey limit 200 must be below the life limit 100"},
		{"start needs a peer", "start_action = start", "child",
			func(c *Config) {
				c.Connections[0].RemoteAddr = netip.Addr{}
				c.Connections[0].Children[0].StartAction = StartStart
			}, "start_action", "start needs a remote address (remote_addrs is %any)"},
		{"dpd restart needs a peer", "dpd_action = restart", "child",
			func(c *Config) {
				c.Connections[0].RemoteAddr = netip.Addr{}
				c.Connections[0].Children[0].DPDAction = DPDRestart
			}, "dpd_action", "restart needs a remote address (remote_addrs is %any)"},
		{"close start needs a peer", "close_action = start", "child",
			func(c *Config) {
				c.Connections[0].RemoteAddr = netip.Addr{}
				c.Connections[0].Children[0].CloseAction = CloseStart
			}, "close_action", "start needs a remote address (remote_addrs is %any)"},
		{"negative down timeout", "down_timeout = -1m", "daemon",
			func(c *Config) { c.Daemon.DownTimeout = -time.Minute }, "daemon.down_timeout", wantDuration},
		{"negative keep_alive", "keep_alive = -1m", "daemon",
			func(c *Config) { c.Daemon.KeepAlive = -time.Minute }, "daemon.keep_alive", wantDuration},
		{"negative reauth time", "reauth_time = -1m", "conn",
			func(c *Config) { c.Connections[0].ReauthTime = -time.Minute }, "reauth_time", wantDuration},
		{"negative over time", "over_time = -1m", "conn",
			func(c *Config) { c.Connections[0].OverTime = -time.Minute }, "over_time", wantDuration},
		{"keyingtries", "keyingtries = 2000000", "conn",
			func(c *Config) { c.Connections[0].KeyingTries = 2000000 }, "keyingtries", wantWhole(0, maxKeyingTries)},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			cfg := goConf()
			tc.mutate(cfg)
			verr := cfg.Validate()
			var ve *Error
			require.ErrorAs(t, verr, &ve)
			assert.Equal(t, tc.field, ve.Field)
			assert.True(t, strings.HasSuffix(ve.Msg, tc.msg), "Validate: %q lacks %q", ve.Msg, tc.msg)

			var daemon, conn, child string
			switch tc.where {
			case "daemon":
				daemon = tc.setting
			case "conn":
				conn = tc.setting
			case "child":
				child = tc.setting
			}
			if strings.HasSuffix(tc.name, "needs a peer") {
				conn = "# remote_addrs = %any"
			}
			remote := "remote_addrs = 198.51.100.7"
			if strings.HasPrefix(conn, "remote_addrs") || strings.HasPrefix(conn, "#") {
				remote = ""
			}
			src := fmt.Sprintf("daemon {\n%s\n}\nconnections {\n site {\n  local_addrs = 192.0.2.1\n  %s\n  psk_env = K\n%s\n  children {\n   lan {\n%s\n   }\n  }\n }\n}\n",
				daemon, remote, conn, child)
			_, perr := Parse("kp.conf", []byte(src), Options{Getenv: func(string) (string, bool) { return "a long enough pre-shared key", true }})
			var pe *Error
			require.ErrorAs(t, perr, &pe, src)
			assert.Equal(t, tc.field, pe.Field)
			assert.True(t, strings.HasSuffix(pe.Msg, tc.msg), "Parse: %q lacks %q", pe.Msg, tc.msg)
			if tc.where != "daemon" {
				assert.Equal(t, "site", ve.Conn)
				assert.Equal(t, ve.Conn, pe.Conn)
				assert.Equal(t, ve.Child, pe.Child)
			}
			assert.Positive(t, pe.Line, "the parser names the line")
		})
	}
}

// A Config built in Go with nothing but zero values is refused with
// every missing piece named, not accepted to kill SAs at run time.
func TestValidateZeroValues(t *testing.T) {
	cfg := &Config{Connections: []*Connection{{Name: "c", Children: []*Child{{Name: "x"}}}}}
	err := cfg.Validate()
	var es Errors
	require.ErrorAs(t, err, &es)
	fields := map[string]bool{}
	for _, e := range es {
		fields[e.Field] = true
		assert.True(t, strings.HasPrefix(e.Error(), "config: "), e.Error())
	}
	for _, f := range []string{"daemon.control", "daemon.half_open_timeout", "daemon.retransmit_timeout", "backend.name",
		"local_port", "proposals", "psk_file", "local.id", "local_ts", "esp_proposals", "mode"} {
		assert.True(t, fields[f], "no error for %s in\n%v", f, err)
	}
	assert.True(t, errors.Is(err, es[0]))
	assert.NoError(t, goConf().Validate())
	// Every default child is valid in a transport-mode connection too.
	c := goConf()
	c.Connections[0].Children[0].Mode = kernelops.ModeTransport
	assert.NoError(t, c.Validate())
}

// ExternalCerts lets a pubkey connection lack local.certs and
// remote.cacerts (the engine's CertCredentials supplies them), and only
// that: a certificate without its key, or CAs without a trust store, are
// still refused.
func TestValidateExternalCerts(t *testing.T) {
	cfg := goConf()
	c := cfg.Connections[0]
	c.PSK, c.LocalAuth, c.RemoteAuth = nil, AuthPubkey, AuthPubkey
	fields := func(err error) []string {
		var es Errors
		if !errors.As(err, &es) {
			return nil
		}
		var out []string
		for _, e := range es {
			out = append(out, e.Field)
		}
		return out
	}
	assert.Equal(t, []string{"local.certs", "remote.cacerts"}, fields(cfg.Validate()))
	assert.Equal(t, []string{"local.certs", "remote.cacerts"}, fields(cfg.ValidateWith(ValidateOptions{ExternalPSK: true})), "ExternalPSK is not ExternalCerts")
	require.NoError(t, cfg.ValidateWith(ValidateOptions{ExternalCerts: true}))

	c.LocalCerts = []LocalCert{{Cert: Cert{File: "gw.pem"}}}
	c.CACerts = []Cert{{File: "ca.pem"}}
	err := cfg.ValidateWith(ValidateOptions{ExternalCerts: true})
	assert.Equal(t, []string{"local.certs", "remote.cacerts"}, fields(err))
	assert.ErrorContains(t, err, "gw.pem: a certificate without its private key")
	assert.ErrorContains(t, err, "no trust store")
}
