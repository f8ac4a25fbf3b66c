//go:build !linux

package main

import (
	"errors"
	"net/netip"
)

// dropStaleVIP: only Linux is handled; elsewhere a VIP a killed daemon
// left stays until removed by hand.
func dropStaleVIP(netns, ifname string, p netip.Prefix) (bool, error) {
	return false, errors.New("removing a stale VIP is implemented on Linux only")
}
