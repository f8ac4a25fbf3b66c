package ike

import (
	"testing"

	"github.com/stretchr/testify/assert"
)

// TestWindowResync: a window taken over (HA) at synced peerNext 5
// takes, until it answers one, a request from ID 4 (answered by the old
// node, answer lost with it) to 5+resyncSpan-1 as the next; then the
// usual rules hold again.
func TestWindowResync(t *testing.T) {
	w := window{peerNext: 5, resync: true}
	for _, tc := range []struct {
		id   uint32
		want reqKind
	}{
		{3, reqOutside},
		{4, reqNew},
		{5, reqNew},
		{9, reqNew},
		{5 + resyncSpan - 1, reqNew},
		{5 + resyncSpan, reqOutside},
		{^uint32(0), reqOutside},
	} {
		assert.Equal(t, tc.want, w.classify(tc.id), "resyncing window at 5, request %d", tc.id)
	}
	w.answered(9, []byte("answer 9"))
	assert.False(t, w.resync)
	for _, tc := range []struct {
		id   uint32
		want reqKind
	}{{9, reqRetransmit}, {10, reqNew}, {11, reqOutside}, {4, reqOutside}} {
		assert.Equal(t, tc.want, w.classify(tc.id), "after answering 9, request %d", tc.id)
	}
}
