package ike

import (
	"context"
	"errors"
	"testing"
	"time"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"
)

// TestCallTimedOut: a call whose context ends while the loop is busy
// returns the context's error, and its function never runs afterwards
// (its caller may already read what the function would write: the
// watchdog's Handshakes raced with it).
func TestCallTimedOut(t *testing.T) {
	p, _, _ := responder(t, "")
	release, blocked := make(chan struct{}), make(chan struct{})
	p.e.post(func() { close(blocked); <-release })
	<-blocked
	ran := false
	ctx, cancel := context.WithTimeout(t.Context(), 20*time.Millisecond)
	defer cancel()
	err := p.e.call(ctx, func() { ran = true })
	assert.True(t, errors.Is(err, context.DeadlineExceeded), "err %v", err)
	close(release)
	require.NoError(t, p.e.call(t.Context(), func() {}))
	assert.False(t, ran, "the abandoned function ran")
}
