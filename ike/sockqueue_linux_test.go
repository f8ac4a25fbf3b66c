package ike

import (
	"encoding/binary"
	"fmt"
	"net"
	"net/netip"
	"os"
	"slices"
	"sync"
	"testing"
	"time"

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

	// The loop is kept busy while bursts arrive: the readers queue at
	// most maxQueuedInits requests for new IKE SAs and, apart from them,
	// maxQueuedDatagrams of exchanges under way, and drop the rest
	// (Behind); the 2M buffer holds them all until read, so the counts
	// are exact.
	release := make(chan struct{})
	blocked := make(chan struct{}) // the loop is inside before anything is sent
	a.e.post(func() { close(blocked); <-release })
	<-blocked
	// A failed require below ends the test with the loop still held; the
	// engine's cleanup then waits on the loop for ever (a hang until the
	// package's timeout instead of a failure): release it on every way out.
	var releaseOnce sync.Once
	unblock := func() { releaseOnce.Do(func() { close(release) }) }
	defer unblock()
	c, err := net.ListenUDP("udp4", &net.UDPAddr{IP: net.IPv4(127, 0, 0, 1)})
	require.NoError(t, err)
	defer c.Close()
	to := net.UDPAddrFromAddrPort(netip.AddrPortFrom(netip.MustParseAddr("127.0.0.1"), sa.port))
	var spii uint64
	// read is how many datagrams the readers have taken from the plain
	// socket so far: each is queued or dropped as Behind.
	read := func() uint64 {
		st, err := a.e.SocketStats(t.Context())
		require.NoError(t, err)
		plain, _ := byRole(st)
		return uint64(a.e.queuedInits.Load()+a.e.queued.Load()) + plain.Behind
	}
	send := func(n int, init bool) {
		msg := make([]byte, 300) // not valid IKE: the engine drops it once it reads it
		if !init {
			msg[8] = 1 // a responder SPI: an exchange of an existing SA
		}
		for i := range n {
			spii++ // each its own request: a copy of one queued would be dropped as a repeat
			binary.BigEndian.PutUint64(msg, spii)
			_, err := c.WriteToUDP(msg, to)
			require.NoError(t, err)
			// Paced by the readers: a reader starved on a loaded machine
			// let the burst overflow even the 2M buffer, and the kernel's
			// drops made the counts below inexact.
			if i%64 == 63 || i == n-1 {
				waitFor(t, fmt.Sprintf("the readers take datagram %d", spii), 30*time.Second, func() bool { return read() == spii })
			}
		}
	}
	settle := func(inits, others int64, behind uint64) {
		t.Helper()
		waitFor(t, fmt.Sprintf("%d+%d queued, %d dropped", inits, others, behind), 30*time.Second, func() bool {
			st, err := a.e.SocketStats(t.Context())
			require.NoError(t, err)
			plain, _ := byRole(st)
			return a.e.queuedInits.Load() == inits && a.e.queued.Load() == others && plain.Behind == behind
		})
	}
	send(maxQueuedInits+100, true)
	settle(maxQueuedInits, 0, 100)
	send(maxQueuedDatagrams/2, false) // the new SA requests take none of their room
	settle(maxQueuedInits, maxQueuedDatagrams/2, 100)
	send(10, true) // still no room for new SAs
	settle(maxQueuedInits, maxQueuedDatagrams/2, 110)
	send(maxQueuedDatagrams/2+50, false)
	settle(maxQueuedInits, maxQueuedDatagrams, 160)
	st, err = a.e.SocketStats(t.Context())
	unblock()
	require.NoError(t, err)
	plain, nat := byRole(st)
	assert.Zero(t, plain.Drops, "the 2M buffer held every datagram until read")
	assert.Zero(t, nat.Behind)
	assert.Zero(t, a.e.adm.in.fullAll.Load(), "dropped for the byte budget")
	settle(0, 0, plain.Behind)

	// A reload resizes the buffers.
	sa.daemonExtra = "ike_socket_buffer = 4k"
	require.NoError(t, a.e.Reload(t.Context(), sa.config(t, "a")))
	st, err = a.e.SocketStats(t.Context())
	require.NoError(t, err)
	plain, nat = byRole(st)
	assert.Equal(t, 8<<10, plain.RecvBuffer)
	assert.Equal(t, 8<<10, nat.RecvBuffer)

	// The engine still works; a closed one says so.
	_, err = a.e.IKESAs(t.Context())
	require.NoError(t, err)
	require.NoError(t, a.e.Close())
	_, err = a.e.SocketStats(t.Context())
	assert.ErrorIs(t, err, ErrClosed)
}

func TestNewSARequest(t *testing.T) {
	init := make([]byte, 28)
	init[19] = 0x08 // I
	resp := slices.Clone(init)
	resp[19] |= 0x20 // R
	other := slices.Clone(init)
	other[15] = 7 // SPIr
	for _, tc := range []struct {
		name string
		b    []byte
		want bool
	}{{"IKE_SA_INIT request", init, true}, {"its response", resp, false}, {"an SA's exchange", other, false},
		{"short", init[:27], false}, {"empty", nil, false}} {
		assert.Equal(t, tc.want, newSARequest(tc.b), tc.name)
	}
}
