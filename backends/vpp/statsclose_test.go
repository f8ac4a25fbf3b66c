//go:build vpp

package vpp_test

import (
	"sync"
	"testing"
	"time"

	"github.com/keyplane/keyplane/kernelops"
	"github.com/stretchr/testify/require"
)

// TestReconnectWhileReadingCounters: a reconnect closes the old session's
// stats segment while counter reads go on (GetSA, and the usage scan every
// millisecond). The segment must not be unmapped under a read: that was a
// SIGSEGV in the stats client, seen under load in TestRestart.
func TestReconnectWhileReadingCounters(t *testing.T) {
	d := double(t, map[string]string{"scan-interval": "1ms"})
	sad := sadOf(t, d)
	ctx := t.Context()
	src, err := kernelops.As[kernelops.EventSource](d.Backend)
	require.NoError(t, err)
	sub, err := src.Subscribe(ctx, kernelops.SubscribeOptions{Kinds: kernelops.KindOverrun})
	require.NoError(t, err)
	defer sub.Close()
	sa := gcmSA(0x5101, local, remote, kernelops.DefaultReqIDMin+11)
	require.NoError(t, sad.AddSA(ctx, sa))

	stop := make(chan struct{})
	var wg sync.WaitGroup
	for range 2 {
		wg.Go(func() {
			for {
				select {
				case <-stop:
					return
				default:
				}
				sad.GetSA(ctx, sa.ID) // fails while reconnecting; must not crash
			}
		})
	}
	defer func() { close(stop); wg.Wait() }()
	for i := range 10 {
		time.Sleep(5 * time.Millisecond)
		d.Server.DropConnections()
		select {
		case <-sub.Events():
		case <-time.After(10 * time.Second):
			t.Fatalf("reconnect %d: no overrun within 10s", i+1)
		}
	}
}
