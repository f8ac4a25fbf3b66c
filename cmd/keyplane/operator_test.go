package main

import (
	"context"
	"fmt"
	"os"
	"strings"
	"testing"
	"time"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"
)

// edit rewrites daemon n's file with f.
func (p *pair) edit(t *testing.T, n string, f func(string) string) {
	t.Helper()
	b, err := os.ReadFile(p.conf(n))
	require.NoError(t, err)
	require.NoError(t, os.WriteFile(p.conf(n), []byte(f(string(b))), 0o644))
}

func waitFor(t *testing.T, what string, cond func() bool) {
	t.Helper()
	for deadline := time.Now().Add(10 * time.Second); !cond(); time.Sleep(20 * time.Millisecond) {
		if time.Now().After(deadline) {
			t.Fatalf("timed out waiting for %s", what)
		}
	}
}

// A reload says what it added, removed, changed and started, and its
// warnings; a start child added to a connection that is up is started;
// a backend change is refused with exit status 1.
func TestReloadReport(t *testing.T) {
	p, logs := startPair(t, nil)
	west := p.sock("west")
	code, _, errs := runCLI(t, "initiate", "-s", west, "-q", "west-net")
	require.Equal(t, 0, code, errs)
	original, err := os.ReadFile(p.conf("west"))
	require.NoError(t, err)

	deadPorts, err := freeUDPPorts(2)
	require.NoError(t, err)
	dead := fmt.Sprintf(`	dead {
		local_addrs = 127.0.0.1
		remote_addrs = 127.0.0.1
		local_port = %d
		local_port_nat = %d
		remote_port = 9
		psk_file = demo.psk
		children {
			dead-net {
			}
		}
	}`, deadPorts[0], deadPorts[1])
	p.edit(t, "west", func(s string) string {
		s = strings.Replace(s, "\t\t\t\tstart_action = none\n\t\t\t}\n", "\t\t\t\tstart_action = none\n\t\t\t}\n"+
			"\t\t\twest-extra {\n\t\t\t\tlocal_ts = 10.1.5.0/24\n\t\t\t\tremote_ts = 10.2.5.0/24\n\t\t\t\tesp_proposals = aes128gcm16\n\t\t\t\tstart_action = start\n\t\t\t}\n", 1)
		s = strings.Replace(s, "local_ts = 10.1.0.0/16", "local_ts = 10.1.0.0/17", 1)
		s = strings.Replace(s, "retransmit_timeout = 1s", "retransmit_timeout = 2s", 1)
		return s[:strings.LastIndex(s, "}")] + dead + "\n}\n"
	})
	code, out, errs := runCLI(t, "reload", "-s", west)
	require.Equal(t, 0, code, errs)
	for _, want := range []string{"configuration reloaded: 2 connections; log level INFO (from daemon.log_level)",
		"added:    connections dead; children west-extra, dead-net", "removed:  -", "changed:  children west-net",
		"settings: daemon.retransmit_timeout", "started:  west-extra"} {
		assert.Contains(t, out, want)
	}
	// The added start child of the existing connection comes up.
	waitFor(t, "west-extra installed", func() bool {
		_, out, _ := runCLI(t, "child", "list", "-s", west, "-json")
		for _, c := range jsonArray(t, out) {
			if c["name"] == "west-extra" && c["state"] == "installed" {
				return true
			}
		}
		return false
	})

	// conns list: configured, and what is up.
	code, out, errs = runCLI(t, "conns", "list", "-s", west)
	require.Equal(t, 0, code, errs)
	assert.Regexp(t, `west\s+127\.0\.0\.1:\d+\s+127\.0\.0\.1:\d+\s+west\.example\.org -> east\.example\.org\s+1/1\s+west-net\s+tunnel\s+none\s+10\.1\.0\.0/17`, out)
	assert.Regexp(t, `west-extra\s+tunnel\s+start\s+10\.1\.5\.0/24\s+10\.2\.5\.0/24\s+1`, out)
	assert.Regexp(t, `dead\s+127\.0\.0\.1:\d+\s+127\.0\.0\.1:9\s+127\.0\.0\.1 -> %any\s+0/0\s+dead-net`, out)
	assert.Contains(t, out, "2 connections, 3 children")
	code, out, _ = runCLI(t, "conns", "list", "-s", west, "-json")
	require.Equal(t, 0, code)
	conns := jsonArray(t, out)
	require.Len(t, conns, 2)
	assert.EqualValues(t, 1, conns[0]["up"])
	assert.Equal(t, "file demo.psk", conns[0]["psk"])
	assert.NotContains(t, out, "ctl test secret", "never the key")

	// initiate towards a dead peer: a plain message when the wait ends.
	start := time.Now()
	code, out, errs = runCLI(t, "initiate", "dead-net", "-s", west, "--timeout", "300ms")
	assert.Equal(t, 1, code)
	assert.Less(t, time.Since(start), 5*time.Second)
	assert.Contains(t, out, "ike       dead       init-sent", "progress before the timeout")
	assert.Contains(t, errs, "keyplane initiate: dead-net: no result within 300ms; the daemon goes on trying")
	assert.NotContains(t, errs, "context deadline exceeded")
	code, out, errs = runCLI(t, "initiate", "dead-net", "-s", west, "--timeout", "200ms", "-json")
	assert.Equal(t, 1, code)
	assert.Empty(t, out)
	assert.Equal(t, "timeout", jsonObject(t, errs)["code"])

	// JSON: the same report as one object.
	p.edit(t, "west", func(string) string { return string(original) })
	code, out, errs = runCLI(t, "reload", "-s", west, "-json")
	require.Equal(t, 0, code, errs)
	m := jsonObject(t, out)
	assert.Equal(t, map[string]any{"connections": []any{"dead"}, "children": []any{"west-extra", "dead-net"}}, m["removed"])
	assert.Equal(t, map[string]any{"connections": []any{}, "children": []any{}}, m["added"])
	assert.Equal(t, []any{}, m["started"])
	// The IKE SA "dead" still tries to set up goes with its connection.
	if closed, ok := m["closed"].([]any); assert.True(t, ok, "closed: %v", m["closed"]) && assert.Len(t, closed, 1) {
		c, _ := closed[0].(map[string]any)
		assert.Equal(t, "dead", c["name"])
		assert.Equal(t, "connection removed from the configuration", c["reason"])
	}
	assert.EqualValues(t, 1, m["connections"])
	assert.Equal(t, "INFO", m["log_level"])

	// Restart-only settings: warned about, kept.
	p.edit(t, "west", func(s string) string {
		return strings.Replace(s, "control = "+west, "control = "+west+".new", 1)
	})
	code, out, errs = runCLI(t, "reload", "-s", west)
	require.Equal(t, 0, code, errs)
	assert.Contains(t, out, "warning:  daemon.control changes need a restart; the running one is kept")
	p.edit(t, "west", func(string) string { return string(original) })

	// A backend change: refused, exit 1, nothing changed.
	p.edit(t, "west", func(s string) string {
		return strings.Replace(s, "name = nokernel", "name = xfrm", 1) + "\n"
	})
	p.edit(t, "west", func(s string) string {
		return strings.Replace(s, "local_ts = 10.1.0.0/16", "local_ts = 10.1.0.0/18", 1)
	})
	code, out, errs = runCLI(t, "reload", "-s", west)
	assert.Equal(t, 1, code)
	assert.Empty(t, out)
	assert.Contains(t, errs, "reload refused, the running configuration is kept: refused: backend.name changed (running nokernel map[], file xfrm map[]); a backend change needs a restart")
	code, _, errs = runCLI(t, "reload", "-s", west, "-json")
	assert.Equal(t, 1, code)
	assert.Equal(t, "refused", jsonObject(t, errs)["code"])
	_, out, _ = runCLI(t, "conns", "list", "-s", west)
	assert.Contains(t, out, "10.1.0.0/16", "the refused file's selectors were not applied")
	assert.Contains(t, logs["west"].String(), "reload refused")

	// A file with errors: every error in the reply.
	p.edit(t, "west", func(string) string {
		return strings.Replace(strings.Replace(string(original), "retransmit_timeout = 1s", "retransmit_timeout = 0", 1),
			"esp_proposals = aes128gcm16", "esp_proposals = nope", 1)
	})
	code, _, errs = runCLI(t, "reload", "-s", west)
	assert.Equal(t, 1, code)
	assert.Contains(t, errs, "daemon.retransmit_timeout")
	assert.Contains(t, errs, "esp_proposals")
}

// stats, events and version against a daemon, in text and JSON.
func TestStatsEventsVersion(t *testing.T) {
	p, _ := startPair(t, nil)
	west := p.sock("west")
	ctx, cancel := context.WithCancel(context.Background())
	type result struct {
		code     int
		out, err string
	}
	evs := make(chan result, 1)
	go func() {
		code, out, errs := runCLIContext(ctx, "events", "-s", west, "-json")
		evs <- result{code, out, errs}
	}()
	waitFor(t, "the events subscriber", func() bool {
		_, out, _ := runCLI(t, "stats", "-s", west, "-json")
		return strings.Contains(out, `"uptime"`)
	})
	time.Sleep(100 * time.Millisecond) // the subscription is served before the initiate
	code, _, errs := runCLI(t, "initiate", "-s", west, "-q", "west-net")
	require.Equal(t, 0, code, errs)
	time.Sleep(100 * time.Millisecond)
	cancel()
	r := <-evs
	require.Equal(t, 0, r.code, r.err)
	lines := strings.Split(strings.TrimSpace(r.out), "\n")
	require.NotEmpty(t, lines)
	var installed map[string]any
	for _, l := range lines {
		m := jsonObject(t, l)
		assert.Contains(t, []string{"engine", "dataplane"}, m["source"])
		if m["kind"] == "child" && m["state"] == "installed" {
			installed = m
		}
	}
	require.NotNil(t, installed, "no child installed event in\n%s", r.out)
	assert.Regexp(t, `^0x[0-9a-f]{8}_i 0x[0-9a-f]{8}_o$`, installed["spis"])
	assert.EqualValues(t, 1, installed["ike_id"], "the SAs' unique IDs")
	assert.EqualValues(t, 1, installed["child_id"])

	code, out, errs := runCLI(t, "stats", "-s", west)
	require.Equal(t, 0, code, errs)
	assert.Regexp(t, `IKE SAs\s+established 1`, out)
	assert.Regexp(t, `child SAs\s+installed 1`, out)
	assert.Regexp(t, `handshakes\s+1 measured, average \S+`, out)
	assert.Contains(t, out, "child installed 1")
	assert.Contains(t, out, "not measured yet  cookies sent, datagrams dropped, handshake failures, retransmits")
	code, out, _ = runCLI(t, "stats", "-s", west, "-json")
	require.Equal(t, 0, code)
	m := jsonObject(t, out)
	assert.EqualValues(t, 1, m["ike_sas"].(map[string]any)["established"])
	assert.EqualValues(t, 1, m["handshakes"].(map[string]any)["count"])

	code, out, errs = runCLI(t, "version", "--daemon", "-s", west)
	require.Equal(t, 0, code, errs)
	assert.Regexp(t, `daemon    pid \d+, running since \S+, backend nokernel, config `, out)
	code, out, _ = runCLI(t, "-s", west, "version", "--daemon", "-json")
	require.Equal(t, 0, code)
	m = jsonObject(t, out)
	assert.Equal(t, "nokernel", m["backend"])
	assert.EqualValues(t, os.Getpid(), m["pid"])
}
