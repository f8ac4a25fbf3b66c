package xfrm

import (
	"fmt"
	"net/netip"

	"github.com/keyplane/keyplane/kernelops"
	"golang.org/x/sys/unix"
)

// Decoders of the rtnetlink notifications the change-event facet needs:
// addresses, links and routes. Only the fields kernelops events carry are
// read.

const (
	sizeIfAddrmsg = unix.SizeofIfAddrmsg // 8
	sizeIfInfomsg = unix.SizeofIfInfomsg // 16
	sizeRtmsg     = unix.SizeofRtMsg     // 12
)

func rtAddr(b []byte, fam uint8) (netip.Addr, bool) {
	switch {
	case fam == unix.AF_INET && len(b) == 4:
		return netip.AddrFrom4([4]byte(b)), true
	case fam == unix.AF_INET6 && len(b) == 16:
		return netip.AddrFrom16([16]byte(b)), true
	}
	return netip.Addr{}, false
}

// decodeAddrMsg reads RTM_NEWADDR/RTM_DELADDR. The interface name is
// IFA_LABEL where the kernel gives one (IPv4); otherwise empty, for the
// caller to resolve from the index.
func decodeAddrMsg(typ uint16, b []byte) (*kernelops.AddrEvent, error) {
	if len(b) < sizeIfAddrmsg {
		return nil, fmt.Errorf("ifaddrmsg: %w", errShort)
	}
	fam, plen := b[0], int(b[1])
	ev := &kernelops.AddrEvent{Added: typ == unix.RTM_NEWADDR, IfIndex: int(ne.Uint32(b[4:]))}
	var local, addr netip.Addr
	it := newAttrIter(b[align4(sizeIfAddrmsg):])
	for a, ok := it.next(); ok; a, ok = it.next() {
		switch a.Type {
		case unix.IFA_ADDRESS:
			addr, _ = rtAddr(a.Data, fam)
		case unix.IFA_LOCAL:
			local, _ = rtAddr(a.Data, fam)
		case unix.IFA_LABEL:
			ev.IfName = cString(a.Data)
		}
	}
	if it.err != nil {
		return nil, it.err
	}
	// IFA_LOCAL is the interface's own address; IFA_ADDRESS is the peer's
	// on point-to-point links.
	if local.IsValid() {
		addr = local
	}
	if !addr.IsValid() || plen > addr.BitLen() {
		return nil, fmt.Errorf("ifaddrmsg: no usable address (family %d, prefix %d)", fam, plen)
	}
	ev.Prefix = netip.PrefixFrom(addr, plen)
	return ev, nil
}

// linkInfo is a decoded RTM_NEWLINK/RTM_DELLINK.
type linkInfo struct {
	Index int
	Name  string
	Flags uint32
}

// up is whether the link carries traffic: administratively up and with
// its carrier (IFF_RUNNING mirrors the RFC 2863 operational state).
func (l linkInfo) up() bool { return l.Flags&unix.IFF_UP != 0 && l.Flags&unix.IFF_RUNNING != 0 }

func decodeLinkMsg(b []byte) (linkInfo, error) {
	if len(b) < sizeIfInfomsg {
		return linkInfo{}, fmt.Errorf("ifinfomsg: %w", errShort)
	}
	li := linkInfo{Index: int(int32(ne.Uint32(b[4:]))), Flags: ne.Uint32(b[8:])}
	it := newAttrIter(b[sizeIfInfomsg:])
	for a, ok := it.next(); ok; a, ok = it.next() {
		if a.Type == unix.IFLA_IFNAME {
			li.Name = cString(a.Data)
		}
	}
	return li, it.err
}

// decodeRouteMsg reads RTM_NEWROUTE/RTM_DELROUTE. Cloned (cache) routes
// return nil: they are not configuration changes.
func decodeRouteMsg(typ uint16, b []byte) (*kernelops.RouteEvent, error) {
	if len(b) < sizeRtmsg {
		return nil, fmt.Errorf("rtmsg: %w", errShort)
	}
	fam, dlen := b[0], int(b[1])
	if ne.Uint32(b[8:])&unix.RTM_F_CLONED != 0 {
		return nil, nil
	}
	ev := &kernelops.RouteEvent{Added: typ == unix.RTM_NEWROUTE, Table: int(b[4])}
	var dst netip.Addr
	it := newAttrIter(b[sizeRtmsg:])
	for a, ok := it.next(); ok; a, ok = it.next() {
		switch a.Type {
		case unix.RTA_DST:
			dst, _ = rtAddr(a.Data, fam)
		case unix.RTA_GATEWAY:
			ev.Gateway, _ = rtAddr(a.Data, fam)
		case unix.RTA_PREFSRC:
			ev.Src, _ = rtAddr(a.Data, fam)
		case unix.RTA_OIF:
			if len(a.Data) >= 4 {
				ev.IfIndex = int(int32(ne.Uint32(a.Data)))
			}
		case unix.RTA_TABLE:
			if len(a.Data) >= 4 {
				ev.Table = int(ne.Uint32(a.Data))
			}
		}
	}
	if it.err != nil {
		return nil, it.err
	}
	if !dst.IsValid() {
		// The default route carries no RTA_DST.
		switch fam {
		case unix.AF_INET:
			dst = netip.IPv4Unspecified()
		case unix.AF_INET6:
			dst = netip.IPv6Unspecified()
		default:
			return nil, fmt.Errorf("rtmsg: family %d", fam)
		}
	}
	if dlen > dst.BitLen() {
		return nil, fmt.Errorf("rtmsg: prefix length %d", dlen)
	}
	ev.Dst = netip.PrefixFrom(dst, dlen)
	return ev, nil
}
