//go:build vpp

package vpp

import (
	"context"
	"fmt"
	"net/netip"
	"strings"

	"github.com/keyplane/keyplane/kernelops"
	"go.fd.io/govpp/api"
	"go.fd.io/govpp/binapi/fib_types"
	"go.fd.io/govpp/binapi/interface"
	"go.fd.io/govpp/binapi/interface_types"
	"go.fd.io/govpp/binapi/ip"
	"go.fd.io/govpp/binapi/ip_types"
)

type ifInfo struct {
	index uint32
	name  string
	up    bool
}

type ifList []ifInfo

func (l ifList) byName(name string) (uint32, bool) {
	for _, i := range l {
		if i.name == name {
			return i.index, true
		}
	}
	return 0, false
}

func ifUp(f interface_types.IfStatusFlags) bool {
	return f&interface_types.IF_STATUS_API_FLAG_ADMIN_UP != 0 && f&interface_types.IF_STATUS_API_FLAG_LINK_UP != 0
}

// dumpInterfaces lists VPP's interfaces (sw_if_index ~0 means all; the
// zero value would ask for local0 alone).
func (b *driver) dumpInterfaces(ctx context.Context, s *session) (ifList, error) {
	ds, err := dump[*interfaces.SwInterfaceDetails](ctx, s, &interfaces.SwInterfaceDump{SwIfIndex: ^interface_types.InterfaceIndex(0)})
	if err != nil {
		return nil, err
	}
	out := make(ifList, 0, len(ds))
	for _, d := range ds {
		out = append(out, ifInfo{index: uint32(d.SwIfIndex), name: strings.TrimRight(d.InterfaceName, "\x00"), up: ifUp(d.Flags)})
	}
	return out, nil
}

func (b *driver) dumpAddrs(ctx context.Context, s *session, idx uint32) ([]netip.Prefix, error) {
	var out []netip.Prefix
	for _, v6 := range []bool{false, true} {
		ds, err := dump[*ip.IPAddressDetails](ctx, s, &ip.IPAddressDump{SwIfIndex: interface_types.InterfaceIndex(idx), IsIPv6: v6})
		if err != nil {
			return nil, err
		}
		for _, d := range ds {
			if p := fromPrefix(ip_types.Prefix(d.Prefix)); p.IsValid() {
				out = append(out, p)
			}
		}
	}
	return out, nil
}

// readSession returns the live session for requests that change nothing.
func (b *driver) readSession(ctx context.Context) (*session, error) {
	s, err := b.lockSession(ctx)
	if err != nil {
		return nil, err
	}
	b.mu.Unlock()
	return s, nil
}

// Interfaces lists VPP's interfaces and their addresses.
func (b *driver) Interfaces(ctx context.Context) ([]kernelops.Interface, error) {
	s, err := b.readSession(ctx)
	if err != nil {
		return nil, wrap("", err, nil)
	}
	ifs, err := b.dumpInterfaces(ctx, s)
	if err != nil {
		return nil, wrap("", b.checkRead(s, err), nil)
	}
	out := make([]kernelops.Interface, 0, len(ifs))
	for _, i := range ifs {
		addrs, err := b.dumpAddrs(ctx, s, i.index)
		if err != nil {
			return nil, wrap(i.name, b.checkRead(s, err), nil)
		}
		out = append(out, kernelops.Interface{Index: int(i.index), Name: i.name, Up: i.up, Addrs: addrs})
	}
	b.mu.Lock()
	for _, i := range ifs {
		b.ifNames[i.index] = i.name
	}
	b.mu.Unlock()
	return out, nil
}

func (b *driver) checkRead(s *session, err error) error {
	if isTransport(err) && !s.isDead() {
		go b.lost(s, err)
	}
	return err
}

// RouteTo looks dst up in VPP's default FIB (table 0) and picks a source
// address on the outgoing interface: one whose prefix holds the next hop
// (or dst), else the interface's first of the family.
func (b *driver) RouteTo(ctx context.Context, dst netip.Addr) (kernelops.Route, error) {
	if !dst.IsValid() {
		return kernelops.Route{}, kernelops.Invalid("", "", "", "dst", "invalid address")
	}
	dst = dst.Unmap()
	s, err := b.readSession(ctx)
	if err != nil {
		return kernelops.Route{}, wrap(dst.String(), err, nil)
	}
	reply := &ip.IPRouteLookupReply{}
	err = s.invoke(ctx, &ip.IPRouteLookup{Prefix: toPrefix(netip.PrefixFrom(dst, dst.BitLen()))}, reply)
	if err != nil {
		return kernelops.Route{}, wrap(dst.String(), b.checkRead(s, err), nil)
	}
	var path *fib_types.FibPath
	for i := range reply.Route.Paths {
		p := &reply.Route.Paths[i]
		if p.Type == fib_types.FIB_API_PATH_TYPE_NORMAL && p.SwIfIndex != ^uint32(0) {
			path = p
			break
		}
	}
	if path == nil {
		return kernelops.Route{}, &kernelops.Error{Object: dst.String(), Err: kernelops.ErrNotFound,
			Detail: "no route in VPP's table 0"}
	}
	rt := kernelops.Route{IfIndex: int(path.SwIfIndex)}
	var gw netip.Addr
	if dst.Is4() {
		gw = netip.AddrFrom4(path.Nh.Address.GetIP4())
	} else {
		gw = netip.AddrFrom16(path.Nh.Address.GetIP6())
	}
	if !gw.IsUnspecified() {
		rt.Gateway = gw
	}
	addrs, err := b.dumpAddrs(ctx, s, path.SwIfIndex)
	if err != nil {
		return kernelops.Route{}, wrap(dst.String(), b.checkRead(s, err), nil)
	}
	target := dst
	if rt.Gateway.IsValid() {
		target = rt.Gateway
	}
	for _, a := range addrs {
		if a.Addr().Is4() != dst.Is4() {
			continue
		}
		if !rt.Src.IsValid() || a.Contains(target) {
			rt.Src = a.Addr()
		}
		if a.Contains(target) {
			break
		}
	}
	if !rt.Src.IsValid() {
		return kernelops.Route{}, &kernelops.Error{Object: dst.String(), Err: kernelops.ErrNotFound,
			Detail: fmt.Sprintf("interface %d has no address of the family", path.SwIfIndex)}
	}
	ifs, err := b.dumpInterfaces(ctx, s)
	if err == nil {
		for _, i := range ifs {
			if i.index == path.SwIfIndex {
				rt.IfName = i.name
			}
		}
	}
	return rt, nil
}

// ifIndex finds a VPP interface by name.
func (b *driver) ifIndex(ctx context.Context, s *session, ifname string) (uint32, error) {
	ifs, err := b.dumpInterfaces(ctx, s)
	if err != nil {
		return 0, err
	}
	idx, ok := ifs.byName(ifname)
	if !ok {
		return 0, &kernelops.Error{Object: ifname, Err: kernelops.ErrNotFound, Detail: "VPP has no interface of that name"}
	}
	return idx, nil
}

// HasAddress, AssignAddress and UnassignAddress are the driver side of
// AddrManager; the front end counts references.
func (b *driver) HasAddress(ctx context.Context, ifname string, p netip.Prefix) (bool, error) {
	s, err := b.readSession(ctx)
	if err != nil {
		return false, err
	}
	idx, err := b.ifIndex(ctx, s, ifname)
	if err != nil {
		return false, err
	}
	addrs, err := b.dumpAddrs(ctx, s, idx)
	if err != nil {
		return false, err
	}
	for _, x := range addrs {
		if x == p {
			return true, nil
		}
	}
	return false, nil
}

func (b *driver) AssignAddress(ctx context.Context, ifname string, p netip.Prefix) error {
	return b.addDelAddress(ctx, ifname, p, true)
}

func (b *driver) UnassignAddress(ctx context.Context, ifname string, p netip.Prefix) error {
	return b.addDelAddress(ctx, ifname, p, false)
}

func (b *driver) addDelAddress(ctx context.Context, ifname string, p netip.Prefix, add bool) error {
	s, err := b.readSession(ctx)
	if err != nil {
		return wrap(ifname, err, nil)
	}
	idx, err := b.ifIndex(ctx, s, ifname)
	if err != nil {
		return wrap(ifname, b.checkRead(s, err), nil)
	}
	req := &interfaces.SwInterfaceAddDelAddress{SwIfIndex: interface_types.InterfaceIndex(idx), IsAdd: add,
		Prefix: ip_types.AddressWithPrefix(toPrefix(p))}
	if err := s.invoke(ctx, req, &interfaces.SwInterfaceAddDelAddressReply{}); err != nil {
		return wrap(ifname+" "+p.String(), b.checkRead(s, err), map[api.VPPApiError]error{})
	}
	b.mu.Lock()
	k := addrKey{idx, p}
	if b.addrSeen != nil {
		b.addrSeen[k] = add
		if !add {
			delete(b.addrSeen, k)
		}
	}
	b.mu.Unlock()
	b.env.Publish(&kernelops.AddrEvent{Added: add, IfIndex: int(idx), IfName: ifname, Prefix: p})
	return nil
}

// isLocal reports whether a is an address of one of VPP's interfaces, as
// last seen by the address poll. b.mu is held.
func (b *driver) isLocal(a netip.Addr) bool {
	for k := range b.addrSeen {
		if k.p.Addr() == a {
			return true
		}
	}
	return false
}
