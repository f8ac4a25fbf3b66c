package ike

import (
	"sync/atomic"
	"testing"
	"time"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"
)

// filteredHooks is a Hooks test double with a HookFilter that wants
// children only while want is set, and counts what it was asked.
type filteredHooks struct {
	hookLog
	want  atomic.Bool
	asked atomic.Int64
}

func (h *filteredHooks) WantsChild(name string) bool {
	h.asked.Add(1)
	return h.want.Load() && name == "a-net"
}

// TestHookFilter: a child the HookFilter does not want makes no hook call
// (asked once, nothing queued: the down that follows, in order, is the
// first call); once wanted, its calls come as before.
func TestHookFilter(t *testing.T) {
	noLeaks(t)
	sa, sb := pairSides(t)
	h := &filteredHooks{}
	a := newPeer(t, "a", sa.config(t, "a"), withEngineOptions(func(o *Options) { o.Hooks = h }))
	b := newPeer(t, "b", sb.config(t, "b"))
	establish(t, a, b, "a-net")
	settle(t, a)
	assert.EqualValues(t, 1, h.asked.Load(), "the filter asked for the up")
	h.want.Store(true)
	require.NoError(t, a.e.Terminate(ctxT(t, 5*time.Second), "a"))
	waitFor(t, "down hook", 3*time.Second, func() bool { c, _ := h.get(); return len(c) == 1 })
	calls, infos := h.get()
	assert.Equal(t, []string{"down"}, calls, "the up was filtered")
	assert.Equal(t, "a-net", infos[0].Child)
	assert.EqualValues(t, 2, h.asked.Load())
}
