// Package ikesock is the IKE socket every kernel-facing backend hands out
// (kernelops.Sockets): a UDP socket that reports the local address each
// datagram arrived on, picks the source address of what it sends, and
// frames IKE on the NAT-T socket with the non-ESP marker. What differs
// between dataplanes — the per-socket bypass policy and the kernel's
// ESP-in-UDP decapsulation — comes in through Config.Control.
//
// Addresses: an IPv4 address opens an IPv4 socket, an IPv6 one an
// IPv6-only socket (IPV6_V6ONLY), as IKE daemons do, so that 0.0.0.0:500
// and [::]:500 can both be open, as the engine opens them for IPv4 and
// IPv6 peers. IPv4-mapped addresses are unmapped on the way in and out.
//
// On the NAT-T socket (IKEListen.Encap) only datagrams that begin with the
// four zero bytes of the non-ESP marker (RFC 3948) reach the reader, with
// the marker stripped; everything else — ESP, NAT keepalives — is the
// dataplane's and is dropped here, so a dataplane without kernel ESP (the
// nokernel model) behaves as the kernel does with UDP_ENCAP_ESPINUDP.
// WriteTo prepends the marker.
package ikesock

import (
	"context"
	"errors"
	"net"
	"net/netip"
	"syscall"

	"github.com/keyplane/keyplane/kernelops"
)

// Config describes one IKE socket to open.
type Config struct {
	Backend string // names the backend in every *kernelops.Error
	Listen  kernelops.IKEListen
	// Control, when set, sets the dataplane's socket options (bypass
	// policy, UDP encapsulation) on the new socket before it is bound. v6
	// tells the socket's family, encap that it is the NAT-T socket.
	Control func(fd uintptr, v6, encap bool) error
	// Do, when set, runs the socket's creation in another context (inside
	// a network namespace); the socket stays in that namespace.
	Do func(func() error) error
	// Group, when set, tracks the socket so that Group.Close closes it;
	// Listen on a closed group fails with kernelops.ErrClosed.
	Group *Group
}

const opListen = "listen IKE"

// Listen opens the socket c describes.
func Listen(ctx context.Context, c Config) (kernelops.IKEConn, error) {
	l := c.Listen
	if !l.Addr.IsValid() {
		return nil, kernelops.Invalid(c.Backend, opListen, l.Addr.String(), "Addr", "missing address (use 0.0.0.0 or :: for all)")
	}
	addr := netip.AddrPortFrom(l.Addr.Addr().Unmap(), l.Addr.Port())
	obj := addr.String()
	if c.Group != nil && c.Group.isClosed() {
		return nil, &kernelops.Error{Backend: c.Backend, Op: opListen, Object: obj, Err: kernelops.ErrClosed}
	}
	if err := checkRecvBuffer(c.Backend, obj, l.RecvBuffer); err != nil {
		return nil, err
	}
	v6 := addr.Addr().Is6()
	wildcard := addr.Addr().IsUnspecified()
	network := "udp4"
	if v6 {
		network = "udp6" // IPV6_V6ONLY: Go sets it for "udp6"
	}
	lc := net.ListenConfig{Control: func(_, _ string, rc syscall.RawConn) error {
		var serr error
		err := rc.Control(func(fd uintptr) {
			if c.Control != nil {
				if serr = c.Control(fd, v6, l.Encap); serr != nil {
					return
				}
			}
			if l.RecvBuffer > 0 {
				if serr = setRecvBuffer(int(fd), l.RecvBuffer); serr != nil {
					return
				}
			}
			if wildcard {
				serr = enableDstInfo(int(fd), v6)
			}
		})
		if err != nil {
			return err
		}
		return serr
	}}
	var pc net.PacketConn
	listen := func() (err error) {
		pc, err = lc.ListenPacket(ctx, network, obj)
		return err
	}
	var err error
	if c.Do != nil {
		err = c.Do(listen)
	} else {
		err = listen()
	}
	if err != nil {
		return nil, wrap(c.Backend, opListen, obj, err)
	}
	uc := pc.(*net.UDPConn)
	bound := uc.LocalAddr().(*net.UDPAddr).AddrPort()
	k := &conn{
		backend:  c.Backend,
		uc:       uc,
		local:    netip.AddrPortFrom(bound.Addr().Unmap(), bound.Port()),
		v6:       v6,
		wildcard: wildcard,
		encap:    l.Encap,
		group:    c.Group,
	}
	k.obj = k.local.String()
	if c.Group != nil && !c.Group.add(k) {
		uc.Close()
		return nil, &kernelops.Error{Backend: c.Backend, Op: opListen, Object: obj, Err: kernelops.ErrClosed}
	}
	return k, nil
}

// wrap turns a socket error into a *kernelops.Error. A closed socket
// satisfies both errors.Is(err, kernelops.ErrClosed) and
// errors.Is(err, net.ErrClosed); an errno maps onto its sentinel.
func wrap(backend, op, obj string, err error) error {
	var ke *kernelops.Error
	switch {
	case errors.As(err, &ke):
		return ke // the dataplane's own, from Control or Do
	case errors.Is(err, net.ErrClosed):
		return &kernelops.Error{Backend: backend, Op: op, Object: obj, Err: closedError{err}}
	case errors.Is(err, context.Canceled), errors.Is(err, context.DeadlineExceeded):
		return &kernelops.Error{Backend: backend, Op: op, Object: obj, Err: err}
	}
	var errno syscall.Errno
	if errors.As(err, &errno) {
		return kernelops.FromErrno(backend, op, obj, errno, err.Error())
	}
	return &kernelops.Error{Backend: backend, Op: op, Object: obj, Err: err}
}

// closedError is a closed socket's error: it is kernelops.ErrClosed and
// still unwraps to the net package's own.
type closedError struct{ err error }

func (e closedError) Error() string        { return net.ErrClosed.Error() }
func (e closedError) Unwrap() error        { return e.err }
func (e closedError) Is(target error) bool { return target == kernelops.ErrClosed }
