package xfrm

import (
	"github.com/keyplane/keyplane/internal/netnsexec"
	"github.com/vishvananda/netns"
)

// nsRef is the network namespace the backend operates in. Sockets are
// bound to the namespace they are created in, so every socket is created
// through do; after that they can be used from any goroutine.
type nsRef struct {
	ns *netnsexec.NS // nil: the caller's namespace, whichever it is
}

// openNS resolves the "netns" parameter: a path, or a name under
// /run/netns as `ip netns` keeps them.
func openNS(param string) (*nsRef, error) {
	if param == "" {
		return &nsRef{}, nil
	}
	ns, err := netnsexec.Open(netnsexec.PathOf(param))
	if err != nil {
		return nil, err
	}
	return &nsRef{ns: ns}, nil
}

// handle returns the namespace handle for netlink.NewHandleAt; for the
// caller's own namespace it opens one.
func (n *nsRef) handle() (netns.NsHandle, func(), error) {
	if n.ns != nil {
		return netns.NsHandle(n.ns.Fd()), func() {}, nil
	}
	h, err := netns.Get()
	if err != nil {
		return netns.None(), nil, err
	}
	return h, func() { h.Close() }, nil
}

// do runs fn with the current OS thread in the namespace.
func (n *nsRef) do(fn func() error) error {
	if n == nil || n.ns == nil {
		return fn()
	}
	return n.ns.Do(fn)
}

func (n *nsRef) close() {
	if n != nil && n.ns != nil {
		n.ns.Close()
	}
}

func (n *nsRef) String() string {
	if n == nil || n.ns == nil {
		return "current"
	}
	return n.ns.Path()
}
