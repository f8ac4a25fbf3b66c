package main

import (
	"context"
	"fmt"
	"io"
	"log/slog"
	"net/netip"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"

	"github.com/keyplane/keyplane/ike"
	"github.com/keyplane/keyplane/ike/config"
	"github.com/keyplane/keyplane/kernelops"
)

func TestUpdownEnv(t *testing.T) {
	local, remote := netip.MustParseAddr("192.0.2.1"), netip.MustParseAddr("198.51.100.7")
	info := ike.ChildHookInfo{Child: "net", IKEID: 7, ChildID: 9, ReqID: 0x2a, Local: local, Remote: remote,
		LocalID: "gw.example.org", RemoteID: "peer\nname\x00",
		LocalSelectors: []ike.Selector{
			{Prefixes: []netip.Prefix{netip.MustParsePrefix("10.1.0.0/16")}, ToPort: 65535},
			{Prefixes: []netip.Prefix{netip.MustParsePrefix("192.0.2.1/32")}, Proto: 17, FromPort: 53, ToPort: 53},
		},
		RemoteSelectors: []ike.Selector{
			{Prefixes: []netip.Prefix{netip.MustParsePrefix("10.2.0.0/24"), netip.MustParsePrefix("10.2.1.0/24")}, ToPort: 65535},
		},
		UDPEncapPort: 4501}
	envs := updownEnvs(true, info)
	require.Len(t, envs, 4, "2 local × (1 selector of 2 prefixes) remote")
	get := func(env []string, k string) string {
		for _, kv := range env {
			if v, ok := strings.CutPrefix(kv, k+"="); ok {
				return v
			}
		}
		return "(unset)"
	}
	for _, tc := range []struct {
		i                                 int
		verb, my, myPort, myProto, peerCl string
	}{
		{0, "up-client", "10.1.0.0/16", "0", "0", "10.2.0.0/24"},
		{1, "up-client", "10.1.0.0/16", "0", "0", "10.2.1.0/24"},
		{2, "up-host", "192.0.2.1/32", "53", "17", "10.2.0.0/24"},
		{3, "up-host", "192.0.2.1/32", "53", "17", "10.2.1.0/24"},
	} {
		env := envs[tc.i]
		assert.Equal(t, tc.verb, get(env, "PLUTO_VERB"), "run %d", tc.i)
		assert.Equal(t, tc.my, get(env, "PLUTO_MY_CLIENT"), "run %d", tc.i)
		assert.Equal(t, tc.myPort, get(env, "PLUTO_MY_PORT"), "run %d", tc.i)
		assert.Equal(t, tc.myProto, get(env, "PLUTO_MY_PROTOCOL"), "run %d", tc.i)
		assert.Equal(t, tc.peerCl, get(env, "PLUTO_PEER_CLIENT"), "run %d", tc.i)
		assert.Equal(t, "0", get(env, "PLUTO_PEER_PORT"), "run %d", tc.i)
		assert.Equal(t, "42", get(env, "PLUTO_REQID"))
		assert.Equal(t, "7", get(env, "PLUTO_UNIQUEID"))
		assert.Equal(t, "net", get(env, "PLUTO_CONNECTION"))
		assert.Equal(t, "192.0.2.1", get(env, "PLUTO_ME"))
		assert.Equal(t, "198.51.100.7", get(env, "PLUTO_PEER"))
		assert.Equal(t, "peer?name?", get(env, "PLUTO_PEER_ID"), "control bytes of the peer's identity replaced")
		assert.Equal(t, "4501", get(env, "PLUTO_UDP_ENC"))
		assert.Equal(t, "esp", get(env, "PLUTO_PROTO"))
		assert.Equal(t, updownPath, env[0])
	}
	v6 := info
	v6.Local = netip.MustParseAddr("2001:db8::1")
	v6.LocalSelectors = []ike.Selector{{Prefixes: []netip.Prefix{netip.MustParsePrefix("2001:db8:1::/48")}, ToPort: 65535}}
	v6.UDPEncapPort = 0
	env := updownEnvs(false, v6)[0]
	assert.Equal(t, "down-client-v6", get(env, "PLUTO_VERB"))
	assert.Equal(t, "(unset)", get(env, "PLUTO_UDP_ENC"))
	assert.Equal(t, "(unset)", get(env, "PLUTO_MY_SOURCEIP"))
	assert.Equal(t, "(unset)", get(env, "PLUTO_PEER_SOURCEIP"))

	// Virtual IPs: ours (vips) and the peer's (a pool lease).
	vi := info
	vi.VIPs = []netip.Addr{netip.MustParseAddr("10.3.0.1"), netip.MustParseAddr("fd00::1")}
	vi.PeerVIPs = []netip.Addr{netip.MustParseAddr("10.4.0.9")}
	env = updownEnvs(true, vi)[0]
	assert.Equal(t, "10.3.0.1", get(env, "PLUTO_MY_SOURCEIP"))
	assert.Equal(t, "10.3.0.1", get(env, "PLUTO_MY_SOURCEIP4_1"))
	assert.Equal(t, "fd00::1", get(env, "PLUTO_MY_SOURCEIP6_1"))
	assert.Equal(t, "10.4.0.9", get(env, "PLUTO_PEER_SOURCEIP"))
	assert.Equal(t, "10.4.0.9", get(env, "PLUTO_PEER_SOURCEIP4_1"))
}

const updownRespConf = `daemon {
	control = %[1]s
	log_level = debug
}
connections {
	resp {
		local_addrs = 127.0.0.1
		local_port = %[2]d
		local_port_nat = %[3]d
		psk_file = k.psk
		local {
			id = resp.keyplane.test
		}
		remote {
			id = %%any
		}
		children {
			resp-net {
				local_ts = 10.2.0.0/16
				remote_ts = 10.1.0.0/16
				updown = /bin/sh %[4]s tag-one
			}
			resp-fail {
				local_ts = 10.4.0.0/16
				remote_ts = 10.3.0.0/16
				updown = echo the script said boom; exit 3
			}
		}
	}
}
`

// TestUpdown: the daemon, responder, runs a child's updown command when
// the CHILD SA comes up and when it goes down, with the PLUTO_*
// variables, its arguments, and not the daemon's own environment; a
// failing command is logged with its output and exit status and the
// tunnel stays up.
func TestUpdown(t *testing.T) {
	t.Setenv("KEYPLANE_UPDOWN_TEST_SECRET", "must not reach the script")
	d := newTestDaemon(t)
	out := filepath.Join(d.dir, "updown.out")
	script := filepath.Join(d.dir, "updown.sh")
	require.NoError(t, os.WriteFile(script, []byte(fmt.Sprintf(
		"{ echo \"== $1\"; env | grep -e '^PLUTO_' -e SECRET | sort; } >> %s\n", out)), 0o644))
	ports, err := freeUDPPorts(2)
	require.NoError(t, err)
	require.NoError(t, os.WriteFile(d.conf, []byte(fmt.Sprintf(updownRespConf, d.sock, ports[0], ports[1], script)), 0o644))
	startDaemon(t, d)

	peer := updownPeer(t, ports[0], ports[1])
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	require.NoError(t, peer.Initiate(ctx, "init-net"))
	read := func() string { b, _ := os.ReadFile(out); return string(b) }
	waitUntil(t, "the up run", 5*time.Second, func() bool { return strings.Contains(read(), "PLUTO_VERB=up-client") })
	up := read()
	for _, want := range []string{"== tag-one", "PLUTO_CONNECTION=resp-net", "PLUTO_ME=127.0.0.1", "PLUTO_PEER=127.0.0.1",
		"PLUTO_MY_CLIENT=10.2.0.0/16", "PLUTO_PEER_CLIENT=10.1.0.0/16", "PLUTO_MY_ID=resp.keyplane.test",
		"PLUTO_PEER_ID=init.keyplane.test", "PLUTO_PROTO=esp", "PLUTO_VERSION=1.1"} {
		assert.Contains(t, up, want)
	}
	assert.NotContains(t, up, "SECRET", "the daemon's environment is not passed")
	require.NoError(t, peer.Terminate(ctx, "init"))
	waitUntil(t, "the down run", 5*time.Second, func() bool { return strings.Contains(read(), "PLUTO_VERB=down-client") })
	assert.Equal(t, 2, strings.Count(read(), "== tag-one"), "one run up, one down")

	require.NoError(t, peer.Initiate(ctx, "init-fail"))
	waitUntil(t, "the failed command logged", 5*time.Second, func() bool {
		return strings.Contains(d.stderr.String(), "updown command failed")
	})
	log := d.stderr.String()
	assert.Contains(t, log, "the script said boom")
	assert.Contains(t, log, "exit status 3")
	code, text, _ := runCLI(t, "child", "list", "-s", d.sock)
	require.Equal(t, 0, code)
	assert.Contains(t, text, "resp-fail", "a failing updown leaves the CHILD SA up")
}

func waitUntil(t *testing.T, what string, d time.Duration, ok func() bool) {
	t.Helper()
	for deadline := time.Now().Add(d); !ok(); time.Sleep(20 * time.Millisecond) {
		if time.Now().After(deadline) {
			t.Fatalf("timed out waiting for %s", what)
		}
	}
}

// testDaemonPSK is the key newTestDaemon writes to k.psk.
const testDaemonPSK = "a reload test secret, long enough"

// updownPeer is an initiator in this process on the nokernel model.
func updownPeer(t *testing.T, port, natPort int) *ike.Engine {
	t.Helper()
	ports, err := freeUDPPorts(2)
	require.NoError(t, err)
	src := fmt.Sprintf(`connections {
	init {
		local_addrs = 127.0.0.1
		remote_addrs = 127.0.0.1
		local_port = %d
		local_port_nat = %d
		remote_port = %d
		remote_port_nat = %d
		psk_env = PSK
		local {
			id = init.keyplane.test
		}
		remote {
			id = resp.keyplane.test
		}
		children {
			init-net {
				local_ts = 10.1.0.0/16
				remote_ts = 10.2.0.0/16
			}
			init-fail {
				local_ts = 10.3.0.0/16
				remote_ts = 10.4.0.0/16
			}
		}
	}
}
`, ports[0], ports[1], port, natPort)
	return nokernelPeer(t, "init.conf", src, testDaemonPSK)
}

// nokernelPeer is an engine in this process on the nokernel model, with
// the configuration src whose psk_env reads psk; closed by the test's
// cleanup.
func nokernelPeer(t *testing.T, name, src, psk string) *ike.Engine {
	t.Helper()
	cfg, err := config.Parse(name, []byte(src), config.Options{Getenv: func(string) (string, bool) { return psk, true }})
	require.NoError(t, err)
	b, err := kernelops.Open(t.Context(), "nokernel", kernelops.Options{})
	require.NoError(t, err)
	t.Cleanup(func() { b.Close() })
	e, err := ike.New(t.Context(), ike.Options{Backend: b, Config: cfg, Logger: slog.New(slog.NewTextHandler(io.Discard, nil))})
	require.NoError(t, err)
	t.Cleanup(func() { e.Close() })
	return e
}

// The limits docs/config.md states: nothing runs for a rekey's down, a
// command past its time is ended and logged, and only the first
// updownOutput bytes of its output are kept.
func TestUpdownLimits(t *testing.T) {
	dir := t.TempDir()
	mark := filepath.Join(dir, "ran")
	var log syncBuffer
	cfg := func(cmd string) func() *config.Config {
		return func() *config.Config {
			return &config.Config{Connections: []*config.Connection{{Name: "c", Children: []*config.Child{{Name: "n", Updown: cmd}}}}}
		}
	}
	info := ike.ChildHookInfo{Child: "n", Local: netip.MustParseAddr("192.0.2.1"), Remote: netip.MustParseAddr("192.0.2.2"),
		LocalSelectors:  []ike.Selector{{Prefixes: []netip.Prefix{netip.MustParsePrefix("10.1.0.0/16")}, ToPort: 65535}},
		RemoteSelectors: []ike.Selector{{Prefixes: []netip.Prefix{netip.MustParsePrefix("10.2.0.0/16")}, ToPort: 65535}}}
	h := updownHooks{config: cfg("touch " + mark), log: slog.New(slog.NewTextHandler(&log, nil))}
	rekeyed := info
	rekeyed.Rekeyed = true
	h.ChildDown(rekeyed)
	_, err := os.Stat(mark)
	assert.ErrorIs(t, err, os.ErrNotExist, "a rekey's down ran the command")
	h.ChildDown(info)
	_, err = os.Stat(mark)
	assert.NoError(t, err, "a down did not run the command")

	h = updownHooks{config: cfg("sleep 10"), log: slog.New(slog.NewTextHandler(&log, nil)), timeout: 200 * time.Millisecond}
	start := time.Now()
	h.ChildUp(info)
	assert.Less(t, time.Since(start), 5*time.Second, "the command was not ended at its limit")
	assert.Contains(t, log.String(), "ended after 200ms")

	h = updownHooks{config: cfg("head -c 10000 /dev/zero | tr '\\0' x; exit 1"), log: slog.New(slog.NewTextHandler(&log, nil))}
	h.ChildUp(info)
	i := strings.LastIndex(log.String(), "output=")
	require.GreaterOrEqual(t, i, 0)
	out, _, _ := strings.Cut(log.String()[i+len("output="):], " ")
	assert.Equal(t, strings.Repeat("x", updownOutput), out, "output kept")
}

// TestUpdownAfterReload: the engine's hook filter (the children with an
// updown command, a snapshot the daemon replaces at a reload) follows
// the reload: a child whose updown the reload added runs it when it
// comes up next, and one without runs nothing.
func TestUpdownAfterReload(t *testing.T) {
	d := newTestDaemon(t)
	out := filepath.Join(d.dir, "updown.out")
	script := filepath.Join(d.dir, "updown.sh")
	require.NoError(t, os.WriteFile(script, []byte(fmt.Sprintf("echo \"== $1 $PLUTO_VERB\" >> %s\n", out)), 0o644))
	ports, err := freeUDPPorts(2)
	require.NoError(t, err)
	with := fmt.Sprintf(updownRespConf, d.sock, ports[0], ports[1], script)
	without := strings.Replace(with, "updown = /bin/sh "+script+" tag-one", "", 1)
	require.NotEqual(t, with, without)
	require.NoError(t, os.WriteFile(d.conf, []byte(without), 0o644))
	startDaemon(t, d)

	peer := updownPeer(t, ports[0], ports[1])
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	read := func() string { b, _ := os.ReadFile(out); return string(b) }
	require.NoError(t, peer.Initiate(ctx, "init-net"))
	require.NoError(t, peer.Terminate(ctx, "init"))

	require.NoError(t, os.WriteFile(d.conf, []byte(with), 0o644))
	code, _, errs := runCLI(t, "reload", "-s", d.sock)
	require.Equal(t, 0, code, errs)
	require.NoError(t, peer.Initiate(ctx, "init-net"))
	waitUntil(t, "the up run", 5*time.Second, func() bool { return strings.Contains(read(), "up-client") })
	assert.Equal(t, "== tag-one up-client\n", read(), "one run: the child's up after the reload")
}

// TestUpdownNames: the hooks' filter wants the children with an updown
// command in any of the configurations it was set from, and everything
// when it was never set (a hook built without it).
func TestUpdownNames(t *testing.T) {
	parse := func(src string) *config.Config {
		cfg, err := config.Parse("t.conf", []byte(src), config.Options{Getenv: func(string) (string, bool) { return "a long enough secret here", true }})
		require.NoError(t, err)
		return cfg
	}
	conf := `connections {
	c {
		remote_addrs = 127.0.0.1
		psk_env = P
		local {
			id = a.test
		}
		remote {
			id = b.test
		}
		children {
			%s {
				updown = true
			}
			plain {
			}
		}
	}
}
`
	one, two := parse(fmt.Sprintf(conf, "one")), parse(fmt.Sprintf(conf, "two"))
	var nilNames *updownNames
	assert.True(t, nilNames.wants("plain"), "no filter: everything")
	u := &updownNames{}
	assert.True(t, u.wants("plain"), "never set: everything")
	u.set(one)
	assert.Equal(t, []bool{true, false, false}, []bool{u.wants("one"), u.wants("two"), u.wants("plain")})
	u.set(one, two)
	assert.Equal(t, []bool{true, true, false}, []bool{u.wants("one"), u.wants("two"), u.wants("plain")})
	u.set(two)
	assert.Equal(t, []bool{false, true, false}, []bool{u.wants("one"), u.wants("two"), u.wants("plain")})
	h := updownHooks{names: u}
	var _ ike.HookFilter = h
	assert.True(t, h.WantsChild("two"))
}
