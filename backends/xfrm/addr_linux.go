package xfrm

import (
	"context"
	"errors"
	"net"
	"net/netip"
	"syscall"

	"github.com/keyplane/keyplane/kernelops"
	"github.com/vishvananda/netlink"
	"golang.org/x/sys/unix"
)

// Address selection, interfaces, reference-counted addresses and xfrm
// interfaces, through vishvananda/netlink on a handle in the backend's
// namespace.

func (b *driver) setLinkName(idx int, name string) {
	b.mu.Lock()
	defer b.mu.Unlock()
	if name == "" {
		delete(b.ifname, idx)
	} else {
		b.ifname[idx] = name
	}
}

// linkName resolves an interface index in the backend's namespace; ""
// when it is gone.
func (b *driver) linkName(idx int) string {
	if idx <= 0 {
		return ""
	}
	b.mu.Lock()
	n, ok := b.ifname[idx]
	b.mu.Unlock()
	if ok {
		return n
	}
	l, err := b.rt.LinkByIndex(idx)
	if err != nil {
		return ""
	}
	b.setLinkName(idx, l.Attrs().Name)
	return l.Attrs().Name
}

func (b *driver) linkIndex(name string) (int, error) {
	l, err := b.rt.LinkByName(name)
	if err != nil {
		return 0, err
	}
	return l.Attrs().Index, nil
}

// linkErr wraps netlink's LinkNotFoundError into ErrNotFound.
func (b *driver) linkErr(name string, err error) error {
	var lnf netlink.LinkNotFoundError
	if errors.As(err, &lnf) {
		return &kernelops.Error{Object: name, Err: kernelops.ErrNotFound, Errno: syscall.ENODEV, Detail: "no such interface"}
	}
	return b.kerr(name, err)
}

// RouteTo implements kernelops.AddrSelector with RTM_GETROUTE.
func (b *driver) RouteTo(ctx context.Context, dst netip.Addr) (kernelops.Route, error) {
	dst = dst.Unmap()
	routes, err := b.rt.RouteGet(net.IP(dst.AsSlice()))
	if err != nil {
		return kernelops.Route{}, b.kerr(dst.String(), err)
	}
	if len(routes) == 0 {
		return kernelops.Route{}, &kernelops.Error{Object: dst.String(), Err: kernelops.ErrNotFound, Errno: syscall.ENETUNREACH}
	}
	r := routes[0]
	out := kernelops.Route{IfIndex: r.LinkIndex, IfName: b.linkName(r.LinkIndex)}
	if a, ok := netip.AddrFromSlice(r.Src); ok {
		out.Src = a.Unmap()
	}
	if a, ok := netip.AddrFromSlice(r.Gw); ok {
		out.Gateway = a.Unmap()
	}
	return out, nil
}

// Interfaces implements kernelops.AddrSelector.
func (b *driver) Interfaces(ctx context.Context) ([]kernelops.Interface, error) {
	links, err := b.rt.LinkList()
	if err != nil {
		return nil, b.kerr("", err)
	}
	out := make([]kernelops.Interface, 0, len(links))
	for _, l := range links {
		a := l.Attrs()
		it := kernelops.Interface{Index: a.Index, Name: a.Name,
			Up: linkInfo{Flags: uint32(a.RawFlags)}.up()}
		if x, ok := l.(*netlink.Xfrmi); ok {
			it.XfrmIfID = x.Ifid
		}
		addrs, err := b.rt.AddrList(l, netlink.FAMILY_ALL)
		if err != nil {
			return nil, b.kerr(a.Name, err)
		}
		for _, ad := range addrs {
			if p, ok := prefixOf(ad.IPNet); ok {
				it.Addrs = append(it.Addrs, p)
			}
		}
		out = append(out, it)
	}
	return out, nil
}

func prefixOf(n *net.IPNet) (netip.Prefix, bool) {
	if n == nil {
		return netip.Prefix{}, false
	}
	a, ok := netip.AddrFromSlice(n.IP)
	if !ok {
		return netip.Prefix{}, false
	}
	a = a.Unmap()
	ones, _ := n.Mask.Size()
	return netip.PrefixFrom(a, ones), true
}

// HasAddress, AssignAddress and UnassignAddress are the driver side of
// AddrManager (RTM_NEWADDR, RTM_DELADDR); the front end counts references.
func (b *driver) HasAddress(ctx context.Context, ifname string, p netip.Prefix) (bool, error) {
	l, err := b.link(ifname)
	if err != nil {
		return false, err
	}
	fam := netlink.FAMILY_V4
	if p.Addr().Is6() {
		fam = netlink.FAMILY_V6
	}
	addrs, err := b.rt.AddrList(l, fam)
	if err != nil {
		return false, b.kerr(ifname, err)
	}
	for _, a := range addrs {
		if q, ok := prefixOf(a.IPNet); ok && q == p {
			return true, nil
		}
	}
	return false, nil
}

func (b *driver) link(ifname string) (netlink.Link, error) {
	l, err := b.rt.LinkByName(ifname)
	if err != nil {
		return nil, b.linkErr(ifname, err)
	}
	return l, nil
}

func netlinkAddr(p netip.Prefix) *netlink.Addr {
	a := &netlink.Addr{IPNet: &net.IPNet{IP: net.IP(p.Addr().AsSlice()), Mask: net.CIDRMask(p.Bits(), p.Addr().BitLen())}}
	if p.Addr().Is6() {
		// Usable at once: IKE binds to it right after adding it.
		a.Flags = unix.IFA_F_NODAD
	}
	return a
}

func (b *driver) AssignAddress(ctx context.Context, ifname string, p netip.Prefix) error {
	l, err := b.link(ifname)
	if err != nil {
		return err
	}
	return b.kerr(p.String()+" on "+ifname, b.rt.AddrAdd(l, netlinkAddr(p)))
}

func (b *driver) UnassignAddress(ctx context.Context, ifname string, p netip.Prefix) error {
	l, err := b.link(ifname)
	if err != nil {
		return err
	}
	return b.kerr(p.String()+" on "+ifname, b.rt.AddrDel(l, netlinkAddr(p)))
}

// AddXfrmInterface implements kernelops.XfrmInterfaces.
func (b *driver) AddXfrmInterface(ctx context.Context, x kernelops.XfrmInterface) error {
	switch {
	case x.Name == "" || len(x.Name) >= unix.IFNAMSIZ:
		return kernelops.Invalid("", "", x.Name, "Name", "interface name must be 1..%d bytes", unix.IFNAMSIZ-1)
	case x.IfID == 0:
		return kernelops.Invalid("", "", x.Name, "IfID", "if_id 0 is reserved (no interface)")
	}
	xi := &netlink.Xfrmi{LinkAttrs: netlink.LinkAttrs{Name: x.Name}, Ifid: x.IfID}
	if x.Underlay != "" {
		idx, err := b.linkIndex(x.Underlay)
		if err != nil {
			return b.linkErr(x.Underlay, err)
		}
		xi.ParentIndex = idx
	}
	if err := b.rt.LinkAdd(xi); err != nil {
		return b.kerr(x.Name, err)
	}
	if err := b.rt.LinkSetUp(xi); err != nil {
		_ = b.rt.LinkDel(xi)
		return b.kerr(x.Name, err)
	}
	return nil
}

// DeleteXfrmInterface implements kernelops.XfrmInterfaces; it refuses to
// delete an interface that is not an xfrm interface.
func (b *driver) DeleteXfrmInterface(ctx context.Context, name string) error {
	l, err := b.rt.LinkByName(name)
	if err != nil {
		return b.linkErr(name, err)
	}
	if l.Type() != "xfrm" {
		return kernelops.Invalid("", "", name, "name", "%s is a %s interface, not an xfrm interface", name, l.Type())
	}
	if err := b.rt.LinkDel(l); err != nil {
		return b.kerr(name, err)
	}
	return nil
}
