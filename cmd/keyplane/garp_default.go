//go:build !linux

package main

import "net/netip"

func sendAnnouncementIn(netns, ifname string, addr netip.Addr) error {
	return sendAnnouncement(ifname, addr)
}

func sendAnnouncement(ifname string, addr netip.Addr) error {
	return &AnnounceError{Interface: ifname, Addr: addr, Err: ErrAnnounceUnsupported}
}
