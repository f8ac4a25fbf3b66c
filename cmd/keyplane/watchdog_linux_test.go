package main

import (
	"context"
	"log/slog"
	"net"
	"path/filepath"
	"testing"
	"time"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"

	"github.com/keyplane/keyplane/backends/nokernel"
	"github.com/keyplane/keyplane/ike"
	"github.com/keyplane/keyplane/ike/config"
	"github.com/keyplane/keyplane/internal/sdnotify"
	"github.com/keyplane/keyplane/kernelops"
)

// WATCHDOG=1 goes out only while the engine's loop answers: an engine
// that does not (here: closed) stops the pings, so systemd restarts the
// daemon.
func TestWatchdogNeedsAnAnsweringEngine(t *testing.T) {
	nsock := filepath.Join(t.TempDir(), "notify.sock")
	ln, err := net.ListenUnixgram("unixgram", &net.UnixAddr{Name: nsock, Net: "unixgram"})
	require.NoError(t, err)
	defer ln.Close()
	t.Setenv("WATCHDOG_USEC", "40000") // a ping every 20 ms
	t.Setenv("WATCHDOG_PID", "")
	b, err := nokernel.Open(t.Context(), kernelops.Options{})
	require.NoError(t, err)
	defer b.Close()
	eng, err := ike.New(t.Context(), ike.Options{Backend: b, Config: config.Defaults()})
	require.NoError(t, err)
	logs := &syncBuffer{}
	d := &daemon{eng: eng, notify: sdnotify.New(nsock), log: slog.New(slog.NewTextHandler(logs, nil))}
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan struct{})
	go func() { d.watchdog(ctx); close(done) }()
	defer func() { cancel(); <-done }()

	pings := func(within time.Duration) int {
		n := 0
		buf := make([]byte, 64)
		deadline := time.Now().Add(within)
		for {
			require.NoError(t, ln.SetReadDeadline(deadline))
			k, err := ln.Read(buf)
			if err != nil {
				return n
			}
			if string(buf[:k]) == sdnotify.Watchdog {
				n++
			}
		}
	}
	assert.Greater(t, pings(200*time.Millisecond), 2, "pings while the engine answers")
	require.NoError(t, eng.Close())
	pings(100 * time.Millisecond) // one may be on its way
	assert.Equal(t, 0, pings(200*time.Millisecond), "pings after the engine stopped answering")
	assert.Contains(t, logs.String(), "systemd watchdog: the engine does not answer; not pinging")
}
