package main

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"syscall"
	"testing"
	"time"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"

	"github.com/keyplane/keyplane/ike"
	"github.com/keyplane/keyplane/ike/config"
	"github.com/keyplane/keyplane/kernelops"
)

// busyEngine is a test double for the engine's Reconfigure: it fails
// with errs in turn, then succeeds.
type busyEngine struct {
	errs  []error
	calls int
}

func (b *busyEngine) Reconfigure(context.Context, *config.Config) (ike.ReloadResult, error) {
	b.calls++
	if len(b.errs) > 0 {
		err := b.errs[0]
		b.errs = b.errs[1:]
		return ike.ReloadResult{}, err
	}
	return ike.ReloadResult{}, nil
}

func inUse(errno syscall.Errno) error {
	return fmt.Errorf("ike: open IKE socket 127.0.0.1:500: %w", &kernelops.Error{Op: "listen IKE", Errno: errno})
}

// A takeover waits for an IKE address still in use or not yet available,
// and for nothing else.
func TestStartConnectionsRetries(t *testing.T) {
	log := slog.New(slog.DiscardHandler)
	ctx := context.Background()

	b := &busyEngine{errs: []error{inUse(syscall.EADDRINUSE), inUse(syscall.EADDRNOTAVAIL)}}
	require.NoError(t, startConnections(ctx, b, nil, 2*time.Second, log))
	assert.Equal(t, 3, b.calls, "two retries, then started")

	other := errors.New("config refused")
	b = &busyEngine{errs: []error{other}}
	assert.ErrorIs(t, startConnections(ctx, b, nil, 2*time.Second, log), other)
	assert.Equal(t, 1, b.calls, "no retry for other errors")

	b = &busyEngine{errs: []error{inUse(syscall.EADDRINUSE), inUse(syscall.EADDRINUSE), inUse(syscall.EADDRINUSE), inUse(syscall.EADDRINUSE)}}
	err := startConnections(ctx, b, nil, 150*time.Millisecond, log)
	assert.ErrorIs(t, err, syscall.EADDRINUSE, "gives up after the wait")
	assert.Less(t, b.calls, 4)

	cctx, cancel := context.WithCancel(ctx)
	cancel()
	b = &busyEngine{errs: []error{inUse(syscall.EADDRINUSE)}}
	assert.ErrorIs(t, startConnections(cctx, b, nil, 2*time.Second, log), context.Canceled)
}
