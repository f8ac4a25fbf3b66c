package main

import (
	"context"
	"fmt"
	"os"
	"path/filepath"
	"testing"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"

	"github.com/keyplane/keyplane/backends/nokernel"
	"github.com/keyplane/keyplane/ike/config"
	"github.com/keyplane/keyplane/kernelops"
)

// noSyncBackend is a named test double: the nokernel model with the sync
// capability withdrawn, standing in for a backend without Syncer (pfkey,
// vpp), which this host cannot open.
type noSyncBackend struct{ *nokernel.Backend }

const noSyncNote = "this test double withdraws xfrm_sync"

func (b noSyncBackend) Capabilities() kernelops.Capabilities {
	c := b.Backend.Capabilities()
	c.Caps &^= kernelops.CapSync
	c.Notes[kernelops.CapSync] = noSyncNote
	return c
}

func init() {
	kernelops.Register("nosync-test", func(ctx context.Context, o kernelops.Options) (kernelops.Backend, error) {
		b, err := nokernel.Open(ctx, o)
		if err != nil {
			return nil, err
		}
		return noSyncBackend{b}, nil
	})
}

const haSection = `ha {
	node = gw1
	endpoints = http://127.0.0.1:9
	cluster_key = %s
}
`

func TestHAUsable(t *testing.T) {
	nk, err := nokernel.Open(t.Context(), kernelops.Options{})
	require.NoError(t, err)
	defer nk.Close()
	cfgHA := loadConfigText(t, fmt.Sprintf(haSection, clusterKeyFile(t))+"backend {\n\tname = nokernel\n}\n")
	require.NoError(t, haUsable(cfgHA, nk), "nokernel has Syncer and events")
	err = haUsable(cfgHA, noSyncBackend{nk})
	var be *HABackendError
	require.ErrorAs(t, err, &be)
	assert.ErrorIs(t, err, ErrHANoSync)
	assert.Equal(t, noSyncNote, be.Note)
	assert.NoError(t, haUsable(loadConfigText(t, "backend {\n\tname = nokernel\n}\n"), noSyncBackend{nk}), "no ha section: nothing to refuse")
}

func clusterKeyFile(t *testing.T) string {
	key := filepath.Join(t.TempDir(), "cluster.key")
	require.NoError(t, os.WriteFile(key, []byte("0123456789abcdef0123456789abcdef"), 0o600))
	return key
}

// A backend without Syncer refuses ha { } when the daemon starts and
// when a reload adds it, quoting the capability's note; so does a
// reload that adds ha { } on a backend that has it (a restart setting).
func TestDaemonHARefused(t *testing.T) {
	d := newTestDaemon(t)
	key := clusterKeyFile(t)
	ports, err := freeUDPPorts(2)
	require.NoError(t, err)
	for _, backend := range []string{"nosync-test", "nokernel"} {
		t.Run(backend, func(t *testing.T) {
			d.write(t, "info", ports, "")
			plain, err := os.ReadFile(d.conf)
			require.NoError(t, err)
			plain = append(plain, []byte("backend {\n\tname = "+backend+"\n}\n")...)
			withHA := append([]byte(fmt.Sprintf(haSection, key)), plain...)
			if backend == "nosync-test" {
				require.NoError(t, os.WriteFile(d.conf, withHA, 0o644))
				code, _, errs := runCLI(t, "daemon", "-c", d.conf, "-s", d.sock)
				assert.NotEqual(t, 0, code)
				assert.Contains(t, errs, "backend nosync-test cannot sync SA counters to a standby (capability sync: "+noSyncNote+")")
			}
			require.NoError(t, os.WriteFile(d.conf, plain, 0o644))
			startDaemon(t, d)
			defer func() { d.stop(); d.stop = nil }()
			require.NoError(t, os.WriteFile(d.conf, withHA, 0o644))
			code, _, errs := runCLI(t, "reload", "-s", d.sock)
			assert.NotEqual(t, 0, code)
			if backend == "nosync-test" {
				assert.Contains(t, errs, "capability sync: "+noSyncNote)
			} else {
				assert.Contains(t, errs, "the ha section needs a restart of the daemon")
			}
			code, _, errs = runCLI(t, "ha", "status", "-s", d.sock)
			assert.NotEqual(t, 0, code)
			assert.Contains(t, errs, "runs no HA")
		})
	}
}

func loadConfigText(t *testing.T, src string) *config.Config {
	cfg, err := config.Parse("ha-test.conf", []byte(src), config.Options{})
	require.NoError(t, err)
	return cfg
}
