package ike

import (
	"net"
	"net/netip"
	"os"
	"testing"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"
)

// TestSocketStats: the engine's IKE sockets get daemon.ike_socket_buffer,
// a reload resizes them, and datagrams the kernel drops for a full
// buffer are counted (Linux: the drop count the kernel keeps per socket).
func TestSocketStats(t *testing.T) {
	sa, _ := pairSides(t)
	sa.daemonExtra = "ike_socket_buffer = 2M"
	a := newPeer(t, "a", sa.config(t, "a"))
	st, err := a.e.SocketStats(t.Context())
	require.NoError(t, err)
	require.Len(t, st, 2)
	for _, s := range st {
		assert.True(t, s.Measured, "%+v", s)
		assert.Zero(t, s.Drops)
		if os.Geteuid() == 0 {
			assert.Equal(t, 4<<20, s.RecvBuffer, "%s: 2M asked, doubled by the kernel", s.Addr)
		}
	}
	// plain and NAT-T: the sockets by role (the list is sorted by
	// address, and the test's ports are random).
	byRole := func(st []SocketStats) (plain, nat SocketStats) {
		t.Helper()
		require.Len(t, st, 2)
		if st[0].NATT {
			st[0], st[1] = st[1], st[0]
		}
		require.False(t, st[0].NATT)
		require.True(t, st[1].NATT)
		return st[0], st[1]
	}
	plain, _ := byRole(st)
	assert.Equal(t, netip.AddrPortFrom(netip.MustParseAddr("127.0.0.1"), sa.port).String(), plain.Addr)

	// A reload to a buffer that holds a few datagrams; the loop is kept
	// busy while a burst arrives, so the readers stop once they have
	// queued maxQueuedDatagrams and the socket overflows.
	sa.daemonExtra = "ike_socket_buffer = 4k"
	require.NoError(t, a.e.Reload(t.Context(), sa.config(t, "a")))
	st, err = a.e.SocketStats(t.Context())
	require.NoError(t, err)
	plain, nat := byRole(st)
	assert.Equal(t, 8<<10, plain.RecvBuffer)
	assert.Equal(t, 8<<10, nat.RecvBuffer)
	release := make(chan struct{})
	a.e.post(func() { <-release })
	c, err := net.ListenUDP("udp4", &net.UDPAddr{IP: net.IPv4(127, 0, 0, 1)})
	require.NoError(t, err)
	defer c.Close()
	to := net.UDPAddrFromAddrPort(netip.AddrPortFrom(netip.MustParseAddr("127.0.0.1"), sa.port))
	junk := make([]byte, 500) // not IKE: the engine drops it once it reads it
	const extra = 300
	for range maxQueuedDatagrams + extra {
		_, err := c.WriteToUDP(junk, to)
		require.NoError(t, err)
	}
	// SocketStats answers while the loop is blocked.
	st, err = a.e.SocketStats(t.Context())
	close(release)
	require.NoError(t, err)
	plain, nat = byRole(st)
	assert.Greater(t, plain.Drops, uint64(extra-20),
		"at most %d datagrams queued for the loop and a few in an 8 KiB buffer", maxQueuedDatagrams)
	assert.Zero(t, nat.Drops)
	t.Logf("%d of %d datagrams dropped", plain.Drops, maxQueuedDatagrams+extra)

	// The engine still works after the burst; a closed one says so.
	_, err = a.e.IKESAs(t.Context())
	require.NoError(t, err)
	require.NoError(t, a.e.Close())
	_, err = a.e.SocketStats(t.Context())
	assert.ErrorIs(t, err, ErrClosed)
}
