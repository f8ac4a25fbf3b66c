//go:build linux || freebsd || netbsd || darwin

package pfkey

import (
	"context"
	"errors"
	"net"
	"net/netip"
	"syscall"

	"github.com/keyplane/keyplane/kernelops"
)

// Address selection without a routing socket: connecting a UDP socket
// makes the kernel pick the route and source address (nothing is sent),
// the same on every OS; the interface is the one that holds the address.
// Route.Gateway stays unset.

// RouteTo implements kernelops.AddrSelector.
func (b *driver) RouteTo(ctx context.Context, dst netip.Addr) (kernelops.Route, error) {
	if !dst.IsValid() || dst.IsUnspecified() {
		return kernelops.Route{}, kernelops.Invalid("", "", dst.String(), "dst", "want a unicast address")
	}
	dst = dst.Unmap()
	var r kernelops.Route
	err := b.ns.do(func() error {
		c, err := net.DialUDP("udp", nil, net.UDPAddrFromAddrPort(netip.AddrPortFrom(dst, 9)))
		if err != nil {
			return err
		}
		r.Src = c.LocalAddr().(*net.UDPAddr).AddrPort().Addr().Unmap()
		c.Close()
		ifs, err := interfaces()
		if err != nil {
			return err
		}
		for _, i := range ifs {
			for _, p := range i.Addrs {
				if p.Addr() == r.Src {
					r.IfIndex, r.IfName = i.Index, i.Name
					return nil
				}
			}
		}
		return nil
	})
	if err != nil {
		var errno syscall.Errno
		if errors.As(err, &errno) {
			return kernelops.Route{}, kernelops.FromErrno("", "", dst.String(), errno, err.Error())
		}
		return kernelops.Route{}, &kernelops.Error{Object: dst.String(), Err: err}
	}
	return r, nil
}

// Interfaces implements kernelops.AddrSelector.
func (b *driver) Interfaces(ctx context.Context) ([]kernelops.Interface, error) {
	var out []kernelops.Interface
	err := b.ns.do(func() error {
		var err error
		out, err = interfaces()
		return err
	})
	if err != nil {
		return nil, &kernelops.Error{Err: err}
	}
	return out, nil
}

func interfaces() ([]kernelops.Interface, error) {
	ifs, err := net.Interfaces()
	if err != nil {
		return nil, err
	}
	out := make([]kernelops.Interface, 0, len(ifs))
	for _, i := range ifs {
		ki := kernelops.Interface{Index: i.Index, Name: i.Name, Up: i.Flags&net.FlagUp != 0}
		addrs, err := i.Addrs()
		if err != nil {
			return nil, err
		}
		for _, a := range addrs {
			if n, ok := a.(*net.IPNet); ok {
				if ip, ok := netip.AddrFromSlice(n.IP); ok {
					ones, bits := n.Mask.Size()
					if ip.Is4In6() && bits == 128 {
						ones -= 96
					}
					ki.Addrs = append(ki.Addrs, netip.PrefixFrom(ip.Unmap(), ones))
				}
			}
		}
		out = append(out, ki)
	}
	return out, nil
}
