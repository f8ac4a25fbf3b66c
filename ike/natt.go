package ike

import (
	"bytes"
	"context"
	"crypto/rand"
	"net/netip"

	"github.com/keyplane/keyplane/ike/ikecrypto"
	"github.com/keyplane/keyplane/ike/message"
	"github.com/keyplane/keyplane/kernelops"
)

// natNotifies are NAT_DETECTION_SOURCE_IP and _DESTINATION_IP (RFC 7296
// §2.23). With fake set (encap = yes) the source hash is random, which
// makes both ends see a NAT and encapsulate ESP, as strongSwan does.
func natNotifies(spii, spir uint64, local, remote netip.AddrPort, fake bool) []message.Payload {
	src := ikecrypto.NATDetectionHash(spii, spir, local)
	if fake {
		src = make([]byte, len(src))
		rand.Read(src)
	}
	return []message.Payload{
		&message.Notify{NotifyType: message.NAT_DETECTION_SOURCE_IP, Data: src},
		&message.Notify{NotifyType: message.NAT_DETECTION_DESTINATION_IP, Data: ikecrypto.NATDetectionHash(spii, spir, remote)},
	}
}

// detectNAT compares the peer's NAT detection hashes with the addresses
// seen: natLocal when the peer saw us elsewhere, natRemote when the peer
// is not where it says. No notifies at all means no NAT-T support: no NAT.
func detectNAT(m *message.Message, spii, spir uint64, local, remote netip.AddrPort) (natLocal, natRemote bool) {
	var srcs []*message.Notify
	var dst *message.Notify
	for _, n := range m.Notifies() {
		switch n.NotifyType {
		case message.NAT_DETECTION_SOURCE_IP:
			srcs = append(srcs, n)
		case message.NAT_DETECTION_DESTINATION_IP:
			dst = n
		}
	}
	if dst == nil && srcs == nil {
		return false, false
	}
	if dst != nil {
		natLocal = !bytes.Equal(dst.Data, ikecrypto.NATDetectionHash(spii, spir, local))
	}
	want := ikecrypto.NATDetectionHash(spii, spir, remote)
	natRemote = true
	for _, s := range srcs {
		if bytes.Equal(s.Data, want) {
			natRemote = false
		}
	}
	return natLocal, natRemote
}

// sourceFor picks our address towards remote when the socket is bound to
// a wildcard: the configured one, else the dataplane's route.
func (e *Engine) sourceFor(configured, remote netip.Addr) netip.Addr {
	if configured.IsValid() {
		return configured
	}
	if as, err := kernelops.As[kernelops.AddrSelector](e.b); err == nil {
		if r, err := as.RouteTo(context.Background(), remote); err == nil && r.Src.IsValid() {
			return r.Src
		}
	}
	if remote.Is6() {
		return netip.IPv6Unspecified()
	}
	return netip.IPv4Unspecified()
}
