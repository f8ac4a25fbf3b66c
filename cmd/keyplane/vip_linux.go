package main

import (
	"errors"
	"fmt"
	"net"
	"net/netip"

	"github.com/vishvananda/netlink"
	"golang.org/x/sys/unix"

	"github.com/keyplane/keyplane/internal/netnsexec"
)

// dropStaleVIP removes p from ifname in network namespace netns (the
// backend's netns parameter; "": this process's) if it is there. The
// AddrManager facet removes only what it added itself, so a VIP left by
// a killed daemon (kill -9 leaves the address) needs this at start.
// Returns whether it was there.
func dropStaleVIP(netns, ifname string, p netip.Prefix) (bool, error) {
	found := false
	err := netnsexec.In(netns, func() error {
		l, err := netlink.LinkByName(ifname)
		if err != nil {
			return fmt.Errorf("interface %s: %w", ifname, err)
		}
		a := &netlink.Addr{IPNet: &net.IPNet{IP: p.Addr().AsSlice(), Mask: net.CIDRMask(p.Bits(), p.Addr().BitLen())}}
		err = netlink.AddrDel(l, a)
		if errors.Is(err, unix.EADDRNOTAVAIL) {
			return nil
		}
		found = err == nil
		return err
	})
	return found, err
}
