package ike

import (
	"bytes"
	"context"
	"crypto/rand"
	"encoding/binary"
	"errors"
	"fmt"
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
	for n := range m.Notifies() {
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
		h := ikecrypto.NATDetectionSum(spii, spir, local)
		natLocal = !bytes.Equal(dst.Data, h[:])
	}
	want := ikecrypto.NATDetectionSum(spii, spir, remote)
	natRemote = true
	for _, s := range srcs {
		if bytes.Equal(s.Data, want[:]) {
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

// NO_NATS_ALLOWED (RFC 4555 §3.9, §4.2.6) carries the addresses and
// ports a request was sent from and to: source address, destination
// address (4 or 16 octets each), source port, destination port.

// ErrNoNATsData is NO_NATS_ALLOWED data of neither the IPv4 (12 octets)
// nor the IPv6 (36 octets) length.
var ErrNoNATsData = errors.New("NO_NATS_ALLOWED data is neither 12 (IPv4) nor 36 (IPv6) octets")

// noNATsData encodes NO_NATS_ALLOWED for a packet from src to dst: in
// the IPv4 form when both are IPv4 (or IPv4-mapped), else in the IPv6
// one (one family for both).
func noNATsData(src, dst netip.AddrPort) []byte {
	s, d := src.Addr().Unmap(), dst.Addr().Unmap()
	var b []byte
	if s.Is4() && d.Is4() {
		b = append(s.AsSlice(), d.AsSlice()...)
	} else {
		s16, d16 := s.As16(), d.As16()
		b = append(s16[:], d16[:]...)
	}
	return binary.BigEndian.AppendUint16(binary.BigEndian.AppendUint16(b, src.Port()), dst.Port())
}

// decodeNoNATs decodes NO_NATS_ALLOWED data.
func decodeNoNATs(b []byte) (src, dst netip.AddrPort, err error) {
	var n int
	switch len(b) {
	case 12:
		n = 4
	case 36:
		n = 16
	default:
		return src, dst, fmt.Errorf("%w: %d octets", ErrNoNATsData, len(b))
	}
	s, _ := netip.AddrFromSlice(b[:n])
	d, _ := netip.AddrFromSlice(b[n : 2*n])
	ports := b[2*n:]
	return netip.AddrPortFrom(s, binary.BigEndian.Uint16(ports)), netip.AddrPortFrom(d, binary.BigEndian.Uint16(ports[2:])), nil
}

// noNATsMismatch checks a request's NO_NATS_ALLOWED against the
// addresses it arrived with (from remote to local): "" when it has none
// or they match, else why not (for the log only: §3.9 forbids any other
// use of the notify's contents).
func noNATsMismatch(m *message.Message, local, remote netip.AddrPort) string {
	n := m.Notify(message.NO_NATS_ALLOWED)
	if n == nil {
		return ""
	}
	src, dst, err := decodeNoNATs(n.Data)
	if err != nil {
		return err.Error()
	}
	unmapped := func(a netip.AddrPort) netip.AddrPort {
		return netip.AddrPortFrom(a.Addr().Unmap().WithZone(""), a.Port())
	}
	if unmapped(src) != unmapped(remote) || unmapped(dst) != unmapped(local) {
		return fmt.Sprintf("sent from %s to %s, arrived from %s to %s", src, dst, unmapped(remote), unmapped(local))
	}
	return ""
}
