package main

import (
	"encoding/binary"
	"errors"
	"fmt"
	"net"
	"net/netip"

	"github.com/keyplane/keyplane/internal/netnsexec"

	"golang.org/x/sys/unix"
)

// sendAnnouncementIn sends the announcement from network namespace netns
// (a path, or a name under /run/netns as the xfrm backend's netns
// parameter takes it; "": this process's own).
func sendAnnouncementIn(netns, ifname string, addr netip.Addr) error {
	err := netnsexec.In(netns, func() error { return sendAnnouncement(ifname, addr) })
	var ae *AnnounceError
	if err != nil && !errors.As(err, &ae) {
		err = &AnnounceError{Interface: ifname, Addr: addr, Err: err} // the namespace did not open
	}
	return err
}

// sendAnnouncement sends one gratuitous ARP request (IPv4: sender and
// target address both addr, to the broadcast address) or one unsolicited
// neighbour advertisement (IPv6, RFC 4861 §7.2.6: to all nodes, Override
// set, with the target link-layer address) on ifname, from this
// process's network namespace.
func sendAnnouncement(ifname string, addr netip.Addr) error {
	ifi, err := net.InterfaceByName(ifname)
	if err == nil && len(ifi.HardwareAddr) != 6 {
		err = fmt.Errorf("no Ethernet address (%q)", ifi.HardwareAddr)
	}
	if err == nil {
		if addr.Is4() {
			err = sendGARP(ifi, addr)
		} else {
			err = sendUnsolicitedNA(ifi, addr)
		}
	}
	if err != nil {
		return &AnnounceError{Interface: ifname, Addr: addr, Err: err}
	}
	return nil
}

func htons(v uint16) uint16 { return v<<8 | v>>8 }

// garpFrame is the Ethernet frame of a gratuitous ARP request.
func garpFrame(mac net.HardwareAddr, addr netip.Addr) []byte {
	f := make([]byte, 0, 42)
	f = append(f, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff)
	f = append(f, mac...)
	f = binary.BigEndian.AppendUint16(f, unix.ETH_P_ARP)
	f = binary.BigEndian.AppendUint16(f, 1)      // hardware: Ethernet
	f = binary.BigEndian.AppendUint16(f, 0x0800) // protocol: IPv4
	f = append(f, 6, 4)
	f = binary.BigEndian.AppendUint16(f, 1) // request
	a := addr.As4()
	f = append(f, mac...)
	f = append(f, a[:]...)
	f = append(f, 0, 0, 0, 0, 0, 0)
	f = append(f, a[:]...)
	return f
}

func sendGARP(ifi *net.Interface, addr netip.Addr) error {
	fd, err := unix.Socket(unix.AF_PACKET, unix.SOCK_RAW|unix.SOCK_CLOEXEC, int(htons(unix.ETH_P_ARP)))
	if err != nil {
		return fmt.Errorf("packet socket: %w", err)
	}
	defer unix.Close(fd)
	to := &unix.SockaddrLinklayer{Protocol: htons(unix.ETH_P_ARP), Ifindex: ifi.Index, Halen: 6}
	copy(to.Addr[:], []byte{0xff, 0xff, 0xff, 0xff, 0xff, 0xff})
	if err := unix.Sendto(fd, garpFrame(ifi.HardwareAddr, addr), 0, to); err != nil {
		return fmt.Errorf("send: %w", err)
	}
	return nil
}

// naMessage is an unsolicited neighbour advertisement for addr (the
// kernel fills in the ICMPv6 checksum).
func naMessage(mac net.HardwareAddr, addr netip.Addr) []byte {
	m := make([]byte, 0, 32)
	m = append(m, 136, 0, 0, 0)  // type NA, code, checksum
	m = append(m, 0x20, 0, 0, 0) // flags: Override
	a := addr.As16()
	m = append(m, a[:]...)
	m = append(m, 2, 1) // option: target link-layer address, 8 octets
	m = append(m, mac...)
	return m
}

func sendUnsolicitedNA(ifi *net.Interface, addr netip.Addr) error {
	fd, err := unix.Socket(unix.AF_INET6, unix.SOCK_RAW|unix.SOCK_CLOEXEC, unix.IPPROTO_ICMPV6)
	if err != nil {
		return fmt.Errorf("ICMPv6 socket: %w", err)
	}
	defer unix.Close(fd)
	// RFC 4861: neighbour discovery is sent with hop limit 255.
	if err := unix.SetsockoptInt(fd, unix.IPPROTO_IPV6, unix.IPV6_MULTICAST_HOPS, 255); err != nil {
		return err
	}
	if err := unix.SetsockoptInt(fd, unix.IPPROTO_IPV6, unix.IPV6_MULTICAST_IF, ifi.Index); err != nil {
		return err
	}
	to := &unix.SockaddrInet6{ZoneId: uint32(ifi.Index)}
	to.Addr = netip.MustParseAddr("ff02::1").As16()
	if err := unix.Sendto(fd, naMessage(ifi.HardwareAddr, addr), 0, to); err != nil {
		return fmt.Errorf("send: %w", err)
	}
	return nil
}
