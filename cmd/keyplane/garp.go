package main

import (
	"errors"
	"fmt"
	"log/slog"
	"net/netip"
)

// ErrAnnounceUnsupported: this system cannot send a gratuitous ARP or an
// unsolicited neighbour advertisement (not Linux).
var ErrAnnounceUnsupported = errors.New("gratuitous ARP / unsolicited NA not supported on this system")

// AnnounceError says which announcement of addr on ifname failed.
type AnnounceError struct {
	Interface string
	Addr      netip.Addr
	Err       error
}

func (e *AnnounceError) Error() string {
	kind := "gratuitous ARP"
	if e.Addr.Is6() {
		kind = "unsolicited neighbour advertisement"
	}
	return fmt.Sprintf("%s for %s on %s: %v", kind, e.Addr, e.Interface, e.Err)
}
func (e *AnnounceError) Unwrap() error { return e.Err }

// announceVIP tells the segment that addr is now at this node's link
// address, so that neighbours (the peer's next hop) update their caches
// at once instead of when their entries go stale. Failure is logged, not
// fatal: the VIP still works once the caches expire. It returns what it
// did, for ha status. netns is the backend's namespace parameter (where
// the VIP was added; "": this process's).
func announceVIP(netns, ifname string, addr netip.Addr, log *slog.Logger) string {
	if err := sendAnnouncementIn(netns, ifname, addr); err != nil {
		log.Warn("ha: vip not announced", "err", err)
		return "not sent: " + err.Error()
	}
	kind := "gratuitous ARP"
	if addr.Is6() {
		kind = "unsolicited NA"
	}
	return kind + " sent on " + ifname
}
