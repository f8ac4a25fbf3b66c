package main

import (
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"strconv"
	"strings"
	"testing"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"
)

// dist/keyplane.service: the capabilities are the two the dataplane and
// the IKE ports need, the commands it runs exist, and systemd (where
// systemd-analyze is installed) accepts it and rates its exposure low.
func TestSystemdUnit(t *testing.T) {
	unit, err := os.ReadFile("../../dist/keyplane.service")
	require.NoError(t, err)
	text := string(unit)
	for _, want := range []string{"Type=notify\n", "WatchdogSec=", "NoNewPrivileges=yes", "ProtectSystem=strict",
		"CapabilityBoundingSet=CAP_NET_ADMIN CAP_NET_BIND_SERVICE\n", "AmbientCapabilities=CAP_NET_ADMIN CAP_NET_BIND_SERVICE\n",
		"RuntimeDirectory=keyplane\n"} {
		assert.Contains(t, text, want)
	}
	var directives []string
	for _, l := range strings.Split(text, "\n") {
		if !strings.HasPrefix(l, "#") {
			directives = append(directives, l)
		}
	}
	assert.NotContains(t, strings.Join(directives, "\n"), "CAP_NET_RAW")
	assert.NotContains(t, strings.Join(directives, "\n"), "CAP_SYS_ADMIN")
	// The socket the unit gives the daemon is the CLI's default.
	assert.Contains(t, defaultSocket(), "/run/keyplane/", "RuntimeDirectory=keyplane is /run/keyplane")
	exec1 := regexp.MustCompile(`(?m)^ExecStart=/usr/local/bin/keyplane (.*)$`).FindStringSubmatch(text)
	reload := regexp.MustCompile(`(?m)^ExecReload=/usr/local/bin/keyplane (.*)$`).FindStringSubmatch(text)
	require.NotNil(t, exec1)
	require.NotNil(t, reload)
	for _, args := range [][]string{strings.Fields(exec1[1]), strings.Fields(reload[1])} {
		code, out, errs := runCLI(t, append(args, "-h")...)
		assert.Equal(t, 0, code, "%v: %s", args, errs)
		assert.Contains(t, out, "usage: keyplane "+args[0], "%v", args)
	}

	sa, err := exec.LookPath("systemd-analyze")
	if err != nil {
		t.Skip("systemd-analyze not installed: the unit's syntax and exposure are not checked here (the checks above ran)")
	}
	// The binary the unit names must exist for verify: this test's.
	dir := t.TempDir()
	local := filepath.Join(dir, "keyplane.service")
	require.NoError(t, os.WriteFile(local, []byte(strings.ReplaceAll(text, "/usr/local/bin/keyplane", os.Args[0])), 0o644))
	out, err := exec.Command(sa, "verify", local).CombinedOutput()
	assert.NoError(t, err, "systemd-analyze verify:\n%s", out)
	assert.NotContains(t, string(out), "ignoring", "systemd-analyze verify:\n%s", out)
	out, _ = exec.Command(sa, "security", "--offline=true", local).CombinedOutput()
	m := regexp.MustCompile(`Overall exposure level for keyplane.service: ([0-9.]+)`).FindSubmatch(out)
	require.NotNil(t, m, "systemd-analyze security:\n%s", out)
	score, err := strconv.ParseFloat(string(m[1]), 64)
	require.NoError(t, err)
	assert.LessOrEqual(t, score, 3.0, "exposure (0 best, 10 worst):\n%s", out)
	t.Logf("systemd-analyze security: exposure %.1f", score)
}
