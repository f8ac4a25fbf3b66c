//go:build !linux

package main

import "net/netip"

func sendAnnouncement(ifname string, addr netip.Addr) error {
	return &AnnounceError{Interface: ifname, Addr: addr, Err: ErrAnnounceUnsupported}
}
