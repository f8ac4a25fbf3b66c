package main

import (
	"bytes"
	"context"
	"fmt"
	"io"
	"log/slog"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"

	"github.com/keyplane/keyplane/ike"
	"github.com/keyplane/keyplane/ike/config"
	"github.com/keyplane/keyplane/internal/buildinfo"
	"github.com/keyplane/keyplane/internal/logging"
	"github.com/keyplane/keyplane/internal/metrics"
	"github.com/keyplane/keyplane/kernelops"
)

// The probe "reload that rotates a PSK or narrows remote.id: the revoked
// peer's IKE SA stays up", through the daemon: two real daemons in this
// process (nokernel, loopback); east's key file is rotated and east
// reloaded. The reply names the IKE SA it closed and why, and west's SA
// goes with it.
func TestReloadRotatedKeyClosesSA(t *testing.T) {
	dir := t.TempDir()
	ports, err := freeUDPPorts(4)
	require.NoError(t, err)
	sock := func(n string) string { return filepath.Join(dir, n, n+".sock") }
	for _, c := range []struct {
		name, peer, lts, rts string
		lp, lnp, rp, rnp     int
	}{
		{"west", "east", "10.1.0.0/16", "10.2.0.0/16", ports[0], ports[1], ports[2], ports[3]},
		{"east", "west", "10.2.0.0/16", "10.1.0.0/16", ports[2], ports[3], ports[0], ports[1]},
	} {
		require.NoError(t, os.MkdirAll(filepath.Join(dir, c.name), 0o700))
		require.NoError(t, os.WriteFile(filepath.Join(dir, c.name, "demo.psk"), []byte("the key before the rotation\n"), 0o600))
		text := fmt.Sprintf(demoConf, c.name, sock(c.name), c.lp, c.lnp, c.rp, c.rnp, c.peer, c.lts, c.rts)
		require.NoError(t, os.WriteFile(filepath.Join(dir, c.name, c.name+".conf"), []byte(text), 0o644))
	}
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan int, 2)
	for _, n := range []string{"west", "east"} {
		go func() {
			done <- run(ctx, &env{stdout: io.Discard, stderr: io.Discard}, []string{"daemon", "-c", filepath.Join(dir, n, n+".conf")})
		}()
	}
	defer func() {
		cancel()
		for range 2 {
			assert.Zero(t, <-done, "daemon exit code")
		}
	}()
	for deadline := time.Now().Add(10 * time.Second); ; time.Sleep(20 * time.Millisecond) {
		c1, _, _ := runCLI(t, "child", "list", "-s", sock("west"))
		c2, _, _ := runCLI(t, "child", "list", "-s", sock("east"))
		if c1 == 0 && c2 == 0 {
			break
		}
		require.False(t, time.Now().After(deadline), "daemons' control sockets did not come up")
	}
	code, _, errs := runCLI(t, "initiate", "-s", sock("west"), "west-net")
	require.Zero(t, code, errs)

	// A reload that changes nothing closes nothing.
	code, out, errs := runCLI(t, "reload", "-s", sock("east"))
	require.Zero(t, code, errs)
	assert.Contains(t, out, "\nclosed:   -\n")

	require.NoError(t, os.WriteFile(filepath.Join(dir, "east", "demo.psk"), []byte("the key after the rotation\n"), 0o600))
	code, out, errs = runCLI(t, "reload", "-s", sock("east"))
	require.Zero(t, code, errs)
	assert.Regexp(t, `\nclosed:   east [0-9a-f]{16}_i [0-9a-f]{16}_r \(127\.0\.0\.1:\d+, established\): pre-shared key changed\n`, out)
	assert.Equal(t, 1, strings.Count(out, "closed:"), out)
	for deadline := time.Now().Add(5 * time.Second); ; time.Sleep(20 * time.Millisecond) {
		_, out, _ := runCLI(t, "child", "list", "-s", sock("west"), "-json")
		if strings.TrimSpace(out) == "[]" {
			break
		}
		require.False(t, time.Now().After(deadline), "west still lists children after east's rotation: %s", out)
	}
	// West, with the old key, is refused.
	code, _, errs = runCLI(t, "initiate", "-s", sock("west"), "west-net")
	assert.NotZero(t, code)
	assert.Contains(t, errs, "AUTHENTICATION_FAILED")
}

// A reload wipes the previous configuration's pre-shared keys: the engine
// no longer uses them (ike.Reconfigure).
func TestReloadWipesOldKeys(t *testing.T) {
	ports, err := freeUDPPorts(2)
	require.NoError(t, err)
	d := newTestDaemon(t)
	d.write(t, "info", ports, "")
	cfg, err := config.Load(d.conf)
	require.NoError(t, err)
	old := cfg.Connections[0].PSK
	require.NotEqual(t, make([]byte, len(old)), []byte(old))
	ctx := context.Background()
	b, err := kernelops.Open(ctx, "nokernel", kernelops.Options{})
	require.NoError(t, err)
	defer b.Close()
	log := slog.New(slog.NewTextHandler(io.Discard, nil))
	eng, err := ike.New(ctx, ike.Options{Backend: b, Config: cfg, Logger: log})
	require.NoError(t, err)
	defer eng.Close()
	dm := &daemon{file: d.conf, cfg: cfg, started: cfg, eng: eng, log: log, ctx: ctx,
		logs: logging.New(io.Discard, logging.Options{})}
	dm.metrics = metrics.New(engineSource{dm}, buildinfo.Read())
	_, err = dm.reload(ctx)
	require.NoError(t, err)
	assert.Equal(t, make([]byte, len(old)), []byte(old), "the old configuration's key is wiped")
	assert.False(t, bytes.Equal(make([]byte, len(old)), dm.cfg.Connections[0].PSK), "the running one is not")
}
