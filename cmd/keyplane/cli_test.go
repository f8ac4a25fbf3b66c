package main

import (
	"context"
	"os"
	"path/filepath"
	"sort"
	"testing"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"
)

// Every command and subcommand answers -h with its help on stdout and
// exit status 0, without doing anything (no daemon, no dataplane).
func TestHelpForEveryCommand(t *testing.T) {
	var names []string
	for n := range commands {
		names = append(names, n)
	}
	sort.Strings(names)
	for _, n := range names {
		c := commands[n]
		for _, h := range []string{"-h", "--help"} {
			code, out, errs := runCLI(t, n, h)
			assert.Equal(t, 0, code, "%s %s: %s", n, h, errs)
			assert.Contains(t, out, "usage: keyplane "+n, "%s %s", n, h)
			assert.Empty(t, errs, "%s %s", n, h)
		}
		for _, s := range c.subs {
			code, out, errs := runCLI(t, n, s.name, "-h")
			assert.Equal(t, 0, code, "%s %s -h: %s", n, s.name, errs)
			assert.Contains(t, out, "usage: keyplane "+n+" "+s.name, "%s %s -h", n, s.name)
			code, out2, _ := runCLI(t, "help", n, s.name)
			assert.Equal(t, 0, code)
			assert.Equal(t, out, out2, "help %s %s", n, s.name)
		}
		if c.subs != nil {
			// A group without its subcommand is a usage error naming them.
			code, _, errs := runCLI(t, n)
			assert.Equal(t, 2, code, n)
			assert.Contains(t, errs, "keyplane "+n+" "+c.subs[0].name, n)
			code, _, errs = runCLI(t, n, "bogus")
			assert.Equal(t, 2, code, n)
			assert.Contains(t, errs, `unknown subcommand "bogus"`, n)
		}
	}
	// The four the issue named, and what their help says.
	for _, g := range []string{"ike", "child", "sa", "policy"} {
		code, out, _ := runCLI(t, g, "-h")
		assert.Equal(t, 0, code, g)
		assert.Contains(t, out, "subcommands:\n  list", g)
	}
	_, out, _ := runCLI(t, "ike", "list", "-h")
	assert.Contains(t, out, "-stream")
	assert.Contains(t, out, "-s string")
	_, out, _ = runCLI(t, "initiate", "-h")
	assert.Contains(t, out, "usage: keyplane initiate [flags] NAME")
	assert.Contains(t, out, "-timeout duration")
	code, out, _ := runCLI(t, "-h")
	assert.Equal(t, 0, code)
	assert.Contains(t, out, "usage: keyplane [-s SOCKET] <command>")
	for _, n := range names {
		assert.Contains(t, out, "  "+n+" ", "the command list names %s", n)
	}
}

func TestUsageErrors(t *testing.T) {
	for _, c := range []struct {
		args []string
		msg  string
	}{
		{[]string{"initiate"}, "want one NAME"},
		{[]string{"initiate", "a", "b"}, "want one NAME"},
		{[]string{"initiate", "-bogus", "x"}, "flag provided but not defined: -bogus"},
		{[]string{"initiate", "--timeout", "2h", "x"}, "--timeout 2h0m0s: want a duration from 1ms to 1h0m0s"},
		{[]string{"ike", "list", "extra"}, "no arguments"},
		{[]string{"config", "check"}, "want one FILE"},
	} {
		code, out, errs := runCLI(t, c.args...)
		assert.Equal(t, 2, code, "%v", c.args)
		assert.Empty(t, out)
		assert.Contains(t, errs, c.msg, "%v", c.args)
		assert.Contains(t, errs, "-h' for help", "%v", c.args)
		// Under -json, the same error as a JSON object on stderr.
		code, out, errs = runCLI(t, append(c.args, "-json")...)
		assert.Equal(t, 2, code, "%v -json", c.args)
		assert.Empty(t, out)
		m := jsonObject(t, errs)
		assert.Equal(t, "usage", m["code"])
		assert.Contains(t, m["error"], c.msg)
	}
	code, _, errs := runCLI(t, "-x", "ike", "list")
	assert.Equal(t, 2, code)
	assert.Contains(t, errs, "unknown global flag -x")
	code, _, errs = runCLI(t, "-s")
	assert.Equal(t, 2, code)
	assert.Contains(t, errs, "-s needs a socket path")
	// "--" ends the flags: a name that starts with a dash.
	code, _, errs = runCLI(t, "initiate", "-s", filepath.Join(t.TempDir(), "x.sock"), "--", "-odd-name")
	assert.Equal(t, 1, code, "reached the socket, not a usage error: %s", errs)
}

// sa list, policy list and monitor open the dataplane themselves: on
// nokernel that would be a fresh, empty model, so they refuse it.
func TestProcessLocalBackendRefused(t *testing.T) {
	for _, args := range [][]string{{"sa", "list"}, {"policy", "list"}, {"monitor"}, {"sa", "list", "--backend", "nokernel", "-json"}} {
		code, out, errs := runCLI(t, args...)
		assert.Equal(t, 1, code, "%v", args)
		assert.Empty(t, out, "%v", args)
		assert.Contains(t, errs, "the nokernel backend keeps its state inside the process that opened it", "%v", args)
		assert.Contains(t, errs, "keyplane child list", "%v", args)
	}
}

func TestVersion(t *testing.T) {
	code, out, errs := runCLI(t, "version")
	require.Equal(t, 0, code, errs)
	for _, want := range []string{"keyplane  ", "commit    ", "go        go1.", "backends  ", "nokernel"} {
		assert.Contains(t, out, want)
	}
	code, out, _ = runCLI(t, "version", "-json")
	require.Equal(t, 0, code)
	m := jsonObject(t, out)
	assert.Contains(t, m["backends"], "nokernel")
	assert.NotEmpty(t, m["commit"])
	assert.NotEmpty(t, m["go_version"])
	// go test builds with the environment's GOFLAGS (-buildvcs=false on
	// these machines): the commit is unknown, and said why.
	if m["commit"] == "unknown" {
		assert.Contains(t, m["commit_note"], "-buildvcs=false")
	}
}

// config check reports every error of a file in one pass, with exit
// status 1; a valid file passes with its warnings.
func TestConfigCheck(t *testing.T) {
	dir := t.TempDir()
	require.NoError(t, os.WriteFile(filepath.Join(dir, "k.psk"), []byte("short\n"), 0o600))
	good := filepath.Join(dir, "good.conf")
	require.NoError(t, os.WriteFile(good, []byte("connections {\n c {\n  local_addrs = 127.0.0.1, 127.0.0.2\n  psk_file = k.psk\n  children {\n   x {\n   }\n  }\n }\n}\n"), 0o644))
	code, out, errs := runCLI(t, "config", "check", good)
	require.Equal(t, 0, code, errs)
	assert.Contains(t, out, "warning: "+good+":3: connection c: local_addrs: only the first address")
	assert.Contains(t, out, "warning: "+good+":4: connection c: psk_file: the pre-shared key is 5 bytes")
	assert.Contains(t, out, good+": valid: 1 connections, 1 children, 2 warnings")
	code, out, _ = runCLI(t, "config", "check", "-json", good)
	require.Equal(t, 0, code)
	m := jsonObject(t, out)
	assert.Equal(t, true, m["valid"])
	assert.Len(t, m["warnings"], 2)
	assert.Equal(t, []any{}, m["errors"])

	bad := filepath.Join(dir, "bad.conf")
	require.NoError(t, os.WriteFile(bad, []byte("daemon {\n half_open_timeout = 0\n}\nconnections {\n c {\n  version = 1\n  psk_file = nope.psk\n  children {\n   x {\n    start_action = later\n   }\n  }\n }\n}\n"), 0o644))
	code, out, errs = runCLI(t, "config", "check", bad)
	assert.Equal(t, 1, code)
	for _, want := range []string{bad + ":2: daemon.half_open_timeout:", bad + ":6: connection c: version:",
		bad + ":7: connection c: psk_file:", bad + ":10: connection c: child x: start_action:", bad + ":5: connection c: local.id:"} {
		assert.Contains(t, out, want)
	}
	assert.Contains(t, errs, bad+": 5 errors")
	code, out, errs = runCLI(t, bad, "-json", "config", "check")
	assert.Equal(t, 2, code, "a file name is not a command")
	code, out, errs = runCLI(t, "config", "check", bad, "-json")
	assert.Equal(t, 1, code)
	m = jsonObject(t, out)
	assert.Equal(t, false, m["valid"])
	es := m["errors"].([]any)
	require.Len(t, es, 5)
	first := es[0].(map[string]any)
	assert.EqualValues(t, 2, first["line"])
	assert.Equal(t, "daemon.half_open_timeout", first["setting"])
	assert.Equal(t, "failed", jsonObject(t, errs)["code"])

	code, _, errs = runCLI(t, "config", "check", filepath.Join(dir, "missing.conf"))
	assert.Equal(t, 1, code)
	assert.Contains(t, errs, "no such file")
}

const swanctlConf = `# a gateway's swanctl.conf
connections {
    site-b {
        version = 2
        local_addrs = 192.0.2.1
        remote_addrs = 198.51.100.7, 198.51.100.8
        proposals = aes256-sha256-modp2048, default
        mobike = no
        fragmentation = accept
        reauth_time = 0
        local {
            auth = psk
            id = gw-a.example.org
        }
        remote {
            auth = psk
            id = gw-b.example.org
        }
        children {
            lan {
                local_ts = 10.1.0.0/16
                remote_ts = 10.2.0.0/16
                esp_proposals = aes128gcm16, aes256-sha256-foo
                start_action = trap
                dpd_action = restart
                updown = /usr/local/libexec/ipsec/_updown iptables
                rekey_time = 1h
            }
        }
    }
    road : base {
        remote_addrs = vpn.example.org
        local_addrs = 192.0.2.1
        local-cert {
            auth = pubkey
            certs = gw.pem
        }
        children {
            r {
            }
        }
    }
}
secrets {
    ike-b {
        id-1 = gw-b.example.org
        secret = "not copied"
    }
    eap-x {
        secret = x
    }
}
pools {
    p {
        addrs = 10.9.0.0/24
    }
}
include conf.d/*.conf
`

func TestConfigImport(t *testing.T) {
	dir := t.TempDir()
	swan := filepath.Join(dir, "swanctl.conf")
	require.NoError(t, os.WriteFile(swan, []byte(swanctlConf), 0o644))
	code, out, errs := runCLI(t, "config", "import", swan)
	require.Equal(t, 0, code, errs)
	for _, want := range []string{"name = xfrm", "site-b {", "remote_addrs = 198.51.100.7, 198.51.100.8", "version = 2",
		"proposals = aes256-sha256-modp2048\n", "fragmentation = accept", "psk_file = site-b.psk", "id = gw-a.example.org", "start_action = trap",
		"esp_proposals = aes128gcm16\n", "dpd_action = restart\n", "\n                updown = /usr/local/libexec/ipsec/_updown iptables\n",
		"mobike = no\n", "# not converted: auth = pubkey", "pools {\n    p {\n        addrs = 10.9.0.0/24\n    }\n}\n"} {
		assert.Contains(t, out, want)
	}
	assert.NotContains(t, errs, "dpd_action", "swanctl's dpd_action is keyplane's")
	assert.NotContains(t, out, "not copied", "secrets are never copied")
	assert.NotContains(t, errs, "not copied")
	for _, want := range []string{"converted 2 connections, 2 children", "road : base: templates are not followed",
		"connections.site-b.proposals: default: strongSwan's default proposals differ",
		"esp_proposals: aes256-sha256-foo", "include conf.d/*.conf: includes are not followed",
		"secrets.eap-x: only IKE pre-shared keys", "connections.road.remote_addrs: keyplane takes IP addresses",
		"connection site-b: write its pre-shared key to site-b.psk", "its key is the secret of secrets.ike-b",
		"connections.road.local-cert.auth: certificates are not converted"} {
		assert.Contains(t, errs, want)
	}

	// -o, then the operator writes the keys: the result is valid.
	conv := filepath.Join(dir, "keyplane.conf")
	code, out, errs = runCLI(t, "config", "import", "-o", conv, swan)
	require.Equal(t, 0, code, errs)
	assert.Empty(t, out)
	for _, n := range []string{"site-b", "road"} {
		require.NoError(t, os.WriteFile(filepath.Join(dir, n+".psk"), []byte("a key of some thirty-two bytes..\n"), 0o600))
	}
	code, out, errs = runCLI(t, "config", "check", conv)
	assert.Equal(t, 0, code, "converted file:\n%s\n%s%s", func() string { b, _ := os.ReadFile(conv); return string(b) }(), out, errs)

	code, out, _ = runCLI(t, "config", "import", "-json", swan)
	require.Equal(t, 0, code)
	m := jsonObject(t, out)
	assert.EqualValues(t, 2, m["connections"])
	assert.Contains(t, m["config"], "site-b {")
	assert.NotEmpty(t, m["skipped"])
	assert.Len(t, m["todo"], 2)

	// Not swanctl syntax at all: every syntax error, exit 1.
	junk := filepath.Join(dir, "junk.conf")
	require.NoError(t, os.WriteFile(junk, []byte("connections {\n !x\n"), 0o644))
	code, _, errs = runCLI(t, "config", "import", junk)
	assert.Equal(t, 1, code)
	assert.Contains(t, errs, "junk.conf:2: unexpected '!'")
	assert.Contains(t, errs, "never closed")
}

// runCLIContext is runCLI with a context (for commands that stream).
func runCLIContext(ctx context.Context, args ...string) (int, string, string) {
	out, errb := &syncBuffer{}, &syncBuffer{}
	code := run(ctx, &env{stdout: out, stderr: errb}, args)
	return code, out.String(), errb.String()
}
