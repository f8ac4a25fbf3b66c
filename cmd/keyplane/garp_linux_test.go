package main

import (
	"bytes"
	"encoding/binary"
	"errors"
	"net"
	"net/netip"
	"testing"
	"time"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"
	"golang.org/x/sys/unix"

	"github.com/keyplane/keyplane/internal/kerneltest"
)

// capture opens a packet socket on ifname in namespace ns that sees
// every frame (ETH_P_ALL), with a read timeout.
func capture(t *testing.T, ns, ifname string) int {
	var fd int
	require.NoError(t, kerneltest.Do(ns, func() error {
		ifi, err := net.InterfaceByName(ifname)
		if err != nil {
			return err
		}
		fd, err = unix.Socket(unix.AF_PACKET, unix.SOCK_RAW|unix.SOCK_CLOEXEC, int(htons(unix.ETH_P_ALL)))
		if err != nil {
			return err
		}
		tv := unix.NsecToTimeval(int64(200 * time.Millisecond))
		if err := unix.SetsockoptTimeval(fd, unix.SOL_SOCKET, unix.SO_RCVTIMEO, &tv); err != nil {
			return err
		}
		return unix.Bind(fd, &unix.SockaddrLinklayer{Protocol: htons(unix.ETH_P_ALL), Ifindex: ifi.Index})
	}))
	t.Cleanup(func() { unix.Close(fd) })
	return fd
}

// frameWhere sends (again every 200ms: a veth just made drops frames
// until its carrier is up) and reads frames until one satisfies match,
// or 5s pass.
func frameWhere(t *testing.T, fd int, send func() error, match func([]byte) bool) []byte {
	buf := make([]byte, 2048)
	last := time.Time{}
	for deadline := time.Now().Add(5 * time.Second); time.Now().Before(deadline); {
		if time.Since(last) > 200*time.Millisecond {
			require.NoError(t, send())
			last = time.Now()
		}
		n, _, err := unix.Recvfrom(fd, buf, 0)
		if err != nil {
			if errors.Is(err, unix.EAGAIN) || errors.Is(err, unix.EINTR) {
				continue
			}
			t.Fatal(err)
		}
		if match(buf[:n]) {
			return append([]byte(nil), buf[:n]...)
		}
	}
	t.Fatal("no matching frame captured")
	return nil
}

// The announcement a takeover sends, captured at the other end of a veth
// pair in a namespace: a gratuitous ARP request (sender and target the
// VIP, from the sender's MAC, to broadcast) for IPv4, an unsolicited NA
// (to all nodes, hop limit 255, Override, target and its link-layer
// address) for IPv6.
func TestAnnounceVIP(t *testing.T) {
	tp := kerneltest.NewTopology(t)
	var mac net.HardwareAddr
	require.NoError(t, kerneltest.Do(tp.A, func() error {
		ifi, err := net.InterfaceByName(tp.IfA)
		mac = ifi.HardwareAddr
		return err
	}))
	fd := capture(t, tp.B, tp.IfB)

	t.Run("ipv4", func(t *testing.T) {
		vip := netip.MustParseAddr("10.77.0.10")
		send := func() error { return kerneltest.Do(tp.A, func() error { return sendAnnouncement(tp.IfA, vip) }) }
		f := frameWhere(t, fd, send, func(f []byte) bool {
			return len(f) >= 42 && binary.BigEndian.Uint16(f[12:]) == unix.ETH_P_ARP
		})
		assert.Equal(t, net.HardwareAddr{0xff, 0xff, 0xff, 0xff, 0xff, 0xff}, net.HardwareAddr(f[0:6]), "to broadcast")
		assert.Equal(t, mac, net.HardwareAddr(f[6:12]))
		arp := f[14:]
		assert.Equal(t, uint16(1), binary.BigEndian.Uint16(arp[6:]), "a request")
		assert.Equal(t, []byte(mac), arp[8:14], "sender MAC")
		assert.Equal(t, vip.AsSlice(), arp[14:18], "sender address")
		assert.Equal(t, vip.AsSlice(), arp[24:28], "target address")
	})
	t.Run("ipv6", func(t *testing.T) {
		vip := netip.MustParseAddr("2001:db8:77::10")
		// Until the new veth's link-local address has passed DAD there is
		// no source address to send from (EADDRNOTAVAIL): retried.
		send := func() error {
			err := kerneltest.Do(tp.A, func() error { return sendAnnouncement(tp.IfA, vip) })
			if errors.Is(err, unix.EADDRNOTAVAIL) {
				return nil
			}
			return err
		}
		f := frameWhere(t, fd, send, func(f []byte) bool {
			return len(f) >= 14+40+32 && binary.BigEndian.Uint16(f[12:]) == unix.ETH_P_IPV6 && f[14+6] == unix.IPPROTO_ICMPV6 && f[14+40] == 136
		})
		ip := f[14:]
		assert.Equal(t, byte(255), ip[7], "hop limit")
		assert.Equal(t, netip.MustParseAddr("ff02::1").AsSlice(), ip[24:40], "to all nodes")
		na := ip[40:]
		assert.Equal(t, byte(0x20), na[4], "flags: Override only")
		assert.Equal(t, vip.AsSlice(), na[8:24], "target")
		assert.True(t, bytes.Equal([]byte{2, 1}, na[24:26]) && bytes.Equal(mac, na[26:32]), "target link-layer address option: %x", na[24:])
	})
	t.Run("in the backend's namespace", func(t *testing.T) {
		// As the daemon does with backend { params { netns } }: from
		// this process's namespace, the frame leaves in A's.
		vip := netip.MustParseAddr("10.77.0.11")
		f := frameWhere(t, fd, func() error { return sendAnnouncementIn(tp.A, tp.IfA, vip) }, func(f []byte) bool {
			return len(f) >= 42 && binary.BigEndian.Uint16(f[12:]) == unix.ETH_P_ARP && bytes.Equal(f[14+14:14+18], vip.AsSlice())
		})
		assert.Equal(t, mac, net.HardwareAddr(f[6:12]))
	})
	t.Run("stale vip", func(t *testing.T) {
		vip := netip.MustParsePrefix("10.77.0.12/24")
		_, err := tp.Run(tp.A, "ip", "addr", "add", vip.String(), "dev", tp.IfA)
		require.NoError(t, err)
		was, err := dropStaleVIP(tp.A, tp.IfA, vip)
		require.NoError(t, err)
		assert.True(t, was)
		out, err := tp.Run(tp.A, "ip", "addr", "show", "dev", tp.IfA)
		require.NoError(t, err)
		assert.NotContains(t, out, "10.77.0.12")
		was, err = dropStaleVIP(tp.A, tp.IfA, vip)
		require.NoError(t, err)
		assert.False(t, was, "not there any more")
	})
	t.Run("no such interface", func(t *testing.T) {
		err := sendAnnouncement("kp-none0", netip.MustParseAddr("192.0.2.10"))
		var ae *AnnounceError
		require.ErrorAs(t, err, &ae)
		assert.Equal(t, "kp-none0", ae.Interface)
	})
}
