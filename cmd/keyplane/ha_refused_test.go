package main

import (
	"fmt"
	"os"
	"path/filepath"
	"testing"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"
)

const haSection = `ha {
	node = gw1
	endpoints = http://127.0.0.1:2379
	vip = 192.0.2.10/24
	interface = eth0
	cluster_key = %s
}
`

// The daemon reads an ha { } section but does not run HA: it refuses to
// start with one and refuses a reload that adds one, saying so, instead
// of running alone as if it were a cluster member.
func TestDaemonRefusesHA(t *testing.T) {
	d := newTestDaemon(t)
	key := filepath.Join(d.dir, "cluster.key")
	require.NoError(t, os.WriteFile(key, make([]byte, 32), 0o600))
	ports, err := freeUDPPorts(2)
	require.NoError(t, err)
	d.write(t, "info", ports, "")
	plain, err := os.ReadFile(d.conf)
	require.NoError(t, err)
	withHA := append([]byte(fmt.Sprintf(haSection, key)), plain...)

	require.NoError(t, os.WriteFile(d.conf, withHA, 0o644))
	code, _, errs := runCLI(t, "config", "check", d.conf)
	assert.Equal(t, 0, code, "the section itself is valid: %s", errs)
	code, _, errs = runCLI(t, "daemon", "-c", d.conf, "-s", d.sock)
	assert.NotEqual(t, 0, code)
	assert.Contains(t, errs, "the daemon does not run high availability yet")

	require.NoError(t, os.WriteFile(d.conf, plain, 0o644))
	startDaemon(t, d)
	require.NoError(t, os.WriteFile(d.conf, withHA, 0o644))
	code, _, errs = runCLI(t, "reload", "-s", d.sock)
	assert.NotEqual(t, 0, code)
	assert.Contains(t, errs, "the daemon does not run high availability yet")
}
