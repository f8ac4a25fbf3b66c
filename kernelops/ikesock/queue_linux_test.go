package ikesock_test

import (
	"net/netip"
	"os"
	"strconv"
	"testing"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"

	"github.com/keyplane/keyplane/kernelops"
	"github.com/keyplane/keyplane/kernelops/ikesock"
)

func queueOf(t *testing.T, k kernelops.IKEConn) kernelops.IKEQueue {
	t.Helper()
	q, ok := k.(kernelops.IKEQueue)
	require.True(t, ok, "an ikesock socket is a kernelops.IKEQueue")
	return q
}

// TestRecvBuffer: the buffer asked for at listen and later is what the
// kernel accounts (Linux doubles it), past net.core.rmem_max as root
// (SO_RCVBUFFORCE) and capped by it otherwise.
func TestRecvBuffer(t *testing.T) {
	const want = 8 << 20
	k := listen(t, ikesock.Config{Listen: kernelops.IKEListen{Addr: netip.MustParseAddrPort("127.0.0.1:0"), RecvBuffer: want}})
	q := queueOf(t, k)
	st, err := q.QueueStats()
	require.NoError(t, err)
	assert.True(t, st.DropsCounted)
	assert.Zero(t, st.Drops)
	if os.Geteuid() == 0 {
		assert.Equal(t, 2*want, st.RecvBuffer, "SO_RCVBUFFORCE as root: the kernel's doubled figure")
	} else {
		assert.Greater(t, st.RecvBuffer, 0)
	}
	require.NoError(t, q.SetRecvBuffer(64<<10))
	st, err = q.QueueStats()
	require.NoError(t, err)
	assert.Equal(t, 2*(64<<10), st.RecvBuffer)

	// The OS default when none is asked for.
	d := listen(t, ikesock.Config{Listen: kernelops.IKEListen{Addr: netip.MustParseAddrPort("127.0.0.1:0")}})
	st, err = queueOf(t, d).QueueStats()
	require.NoError(t, err)
	def, err := os.ReadFile("/proc/sys/net/core/rmem_default")
	if err == nil {
		assert.Equal(t, string(def), strconv.Itoa(st.RecvBuffer)+"\n", "net.core.rmem_default")
	}

	for _, bad := range []int{-1, 1<<30 + 1} {
		_, err := ikesock.Listen(t.Context(), ikesock.Config{Backend: backend, Listen: kernelops.IKEListen{Addr: netip.MustParseAddrPort("127.0.0.1:0"), RecvBuffer: bad}})
		assert.ErrorIs(t, err, kernelops.ErrInvalid, "RecvBuffer %d", bad)
		assert.ErrorIs(t, q.SetRecvBuffer(bad), kernelops.ErrInvalid, "SetRecvBuffer(%d)", bad)
	}
	require.NoError(t, k.Close())
	_, err = q.QueueStats()
	assert.ErrorIs(t, err, kernelops.ErrClosed)
}

// TestQueueDrops: datagrams that find the receive buffer full are
// counted, exactly: sent = read + dropped.
func TestQueueDrops(t *testing.T) {
	k := listen(t, ikesock.Config{Listen: kernelops.IKEListen{Addr: netip.MustParseAddrPort("127.0.0.1:0"), RecvBuffer: 4096}})
	peer := udp(t, nil, "127.0.0.1:0")
	const sent = 200
	msg := make([]byte, 300)
	for range sent {
		_, err := peer.WriteToUDPAddrPort(msg, k.LocalAddr())
		require.NoError(t, err)
	}
	st, err := queueOf(t, k).QueueStats()
	require.NoError(t, err)
	require.Greater(t, st.Drops, uint64(0), "a 4 KiB buffer cannot hold %d datagrams", sent)
	read := 0
	for uint64(read)+st.Drops < sent {
		next(t, k)
		read++
	}
	assert.EqualValues(t, sent, uint64(read)+st.Drops)
}
