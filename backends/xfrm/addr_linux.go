package xfrm

import (
	"context"
	"errors"
	"fmt"
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

func (b *Backend) setLinkName(idx int, name string) {
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
func (b *Backend) linkName(idx int) string {
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

func (b *Backend) linkIndex(name string) (int, error) {
	l, err := b.rt.LinkByName(name)
	if err != nil {
		return 0, err
	}
	return l.Attrs().Index, nil
}

// notFoundLink wraps netlink's LinkNotFoundError into ErrNotFound.
func (b *Backend) linkErr(op, name string, err error) error {
	var lnf netlink.LinkNotFoundError
	if errors.As(err, &lnf) {
		return &kernelops.Error{Backend: Name, Op: op, Object: name, Err: kernelops.ErrNotFound, Errno: syscall.ENODEV, Detail: "no such interface"}
	}
	return b.kerr(op, name, err)
}

// RouteTo implements kernelops.AddrSelector with RTM_GETROUTE.
func (b *Backend) RouteTo(ctx context.Context, dst netip.Addr) (kernelops.Route, error) {
	const op = "route to"
	if err := b.checkOpen(op); err != nil {
		return kernelops.Route{}, err
	}
	if !dst.IsValid() {
		return kernelops.Route{}, kernelops.Invalid(Name, op, "", "dst", "invalid address")
	}
	dst = dst.Unmap()
	routes, err := b.rt.RouteGet(net.IP(dst.AsSlice()))
	if err != nil {
		return kernelops.Route{}, b.kerr(op, dst.String(), err)
	}
	if len(routes) == 0 {
		return kernelops.Route{}, &kernelops.Error{Backend: Name, Op: op, Object: dst.String(), Err: kernelops.ErrNotFound, Errno: syscall.ENETUNREACH}
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
func (b *Backend) Interfaces(ctx context.Context) ([]kernelops.Interface, error) {
	const op = "interfaces"
	if err := b.checkOpen(op); err != nil {
		return nil, err
	}
	links, err := b.rt.LinkList()
	if err != nil {
		return nil, b.kerr(op, "", err)
	}
	out := make([]kernelops.Interface, 0, len(links))
	for _, l := range links {
		a := l.Attrs()
		it := kernelops.Interface{Index: a.Index, Name: a.Name,
			Up: linkInfo{Flags: uint32(a.RawFlags)}.up()}
		addrs, err := b.rt.AddrList(l, netlink.FAMILY_ALL)
		if err != nil {
			return nil, b.kerr(op, a.Name, err)
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

// AddAddress implements kernelops.AddrManager with reference counts
// (kernelops/addrref).
func (b *Backend) AddAddress(ctx context.Context, ifname string, p netip.Prefix) error {
	const op = "add address"
	if err := b.checkOpen(op); err != nil {
		return err
	}
	if !p.IsValid() || p.Addr().Is4In6() {
		return kernelops.Invalid(Name, op, ifname, "Prefix", "invalid address %s", p)
	}
	if err := b.addrs.Add(ctx, ifname, p); err != nil {
		return b.addrErr(op, ifname, p, err)
	}
	return nil
}

// RemoveAddress implements kernelops.AddrManager.
func (b *Backend) RemoveAddress(ctx context.Context, ifname string, p netip.Prefix) error {
	const op = "remove address"
	if err := b.checkOpen(op); err != nil {
		return err
	}
	if err := b.addrs.Remove(ctx, ifname, p); err != nil {
		return b.addrErr(op, ifname, p, err)
	}
	return nil
}

func (b *Backend) addrErr(op, ifname string, p netip.Prefix, err error) error {
	var ke *kernelops.Error
	if errors.As(err, &ke) {
		return err
	}
	obj := fmt.Sprintf("%s on %s", p, ifname)
	if errors.Is(err, kernelops.ErrNotFound) || errors.Is(err, kernelops.ErrInvalid) {
		e := &kernelops.Error{Backend: Name, Op: op, Object: obj, Err: kernelops.ErrNotFound, Detail: err.Error()}
		if errors.Is(err, kernelops.ErrInvalid) {
			e.Err = kernelops.ErrInvalid
		}
		return e
	}
	return b.kerr(op, obj, err)
}

// addrDataplane adds and removes addresses for addrref.
type addrDataplane struct{ b *Backend }

func (d addrDataplane) link(op, ifname string) (netlink.Link, error) {
	l, err := d.b.rt.LinkByName(ifname)
	if err != nil {
		return nil, d.b.linkErr(op, ifname, err)
	}
	return l, nil
}

func (d addrDataplane) HasAddress(ctx context.Context, ifname string, p netip.Prefix) (bool, error) {
	l, err := d.link("add address", ifname)
	if err != nil {
		return false, err
	}
	fam := netlink.FAMILY_V4
	if p.Addr().Is6() {
		fam = netlink.FAMILY_V6
	}
	addrs, err := d.b.rt.AddrList(l, fam)
	if err != nil {
		return false, d.b.kerr("add address", ifname, err)
	}
	for _, a := range addrs {
		if q, ok := prefixOf(a.IPNet); ok && q == p {
			return true, nil
		}
	}
	return false, nil
}

func netlinkAddr(p netip.Prefix) *netlink.Addr {
	a := &netlink.Addr{IPNet: &net.IPNet{IP: net.IP(p.Addr().AsSlice()), Mask: net.CIDRMask(p.Bits(), p.Addr().BitLen())}}
	if p.Addr().Is6() {
		// Usable at once: IKE binds to it right after adding it.
		a.Flags = unix.IFA_F_NODAD
	}
	return a
}

func (d addrDataplane) AddAddress(ctx context.Context, ifname string, p netip.Prefix) error {
	l, err := d.link("add address", ifname)
	if err != nil {
		return err
	}
	if err := d.b.rt.AddrAdd(l, netlinkAddr(p)); err != nil {
		return d.b.kerr("add address", p.String()+" on "+ifname, err)
	}
	return nil
}

func (d addrDataplane) DeleteAddress(ctx context.Context, ifname string, p netip.Prefix) error {
	l, err := d.link("remove address", ifname)
	if err != nil {
		return err
	}
	if err := d.b.rt.AddrDel(l, netlinkAddr(p)); err != nil {
		return d.b.kerr("remove address", p.String()+" on "+ifname, err)
	}
	return nil
}

// AddXfrmInterface implements kernelops.XfrmInterfaces.
func (b *Backend) AddXfrmInterface(ctx context.Context, x kernelops.XfrmInterface) error {
	const op = "add xfrm interface"
	if err := b.checkOpen(op); err != nil {
		return err
	}
	switch {
	case x.Name == "" || len(x.Name) >= unix.IFNAMSIZ:
		return kernelops.Invalid(Name, op, x.Name, "Name", "interface name must be 1..%d bytes", unix.IFNAMSIZ-1)
	case x.IfID == 0:
		return kernelops.Invalid(Name, op, x.Name, "IfID", "if_id 0 is reserved (no interface)")
	}
	if err := b.caps.Require(Name, op, kernelops.CapXfrmInterfaces); err != nil {
		return err
	}
	xi := &netlink.Xfrmi{LinkAttrs: netlink.LinkAttrs{Name: x.Name}, Ifid: x.IfID}
	if x.Underlay != "" {
		idx, err := b.linkIndex(x.Underlay)
		if err != nil {
			return b.linkErr(op, x.Underlay, err)
		}
		xi.ParentIndex = idx
	}
	if err := b.rt.LinkAdd(xi); err != nil {
		return b.kerr(op, x.Name, err)
	}
	if err := b.rt.LinkSetUp(xi); err != nil {
		_ = b.rt.LinkDel(xi)
		return b.kerr(op, x.Name, err)
	}
	return nil
}

// DeleteXfrmInterface implements kernelops.XfrmInterfaces; it refuses to
// delete an interface that is not an xfrm interface.
func (b *Backend) DeleteXfrmInterface(ctx context.Context, name string) error {
	const op = "delete xfrm interface"
	if err := b.checkOpen(op); err != nil {
		return err
	}
	l, err := b.rt.LinkByName(name)
	if err != nil {
		return b.linkErr(op, name, err)
	}
	if l.Type() != "xfrm" {
		return kernelops.Invalid(Name, op, name, "name", "%s is a %s interface, not an xfrm interface", name, l.Type())
	}
	if err := b.rt.LinkDel(l); err != nil {
		return b.kerr(op, name, err)
	}
	return nil
}
