package ike

import (
	"context"
	"fmt"
	"net/netip"

	"github.com/keyplane/keyplane/ike/config"
)

// InitiateTo is Initiate to a peer whose address is known only at run
// time: name is a child (or a connection, for its first child) of a
// connection with remote_addrs = %any, and remote the peer's address
// (port 0: the connection's remote_port). The IKE SA and its children
// are the connection's, bound to that address; an established IKE SA of
// the connection with that peer carries the child (an installed one of
// that name with that peer: nothing to do), else a new IKE SA is made.
func (e *Engine) InitiateTo(ctx context.Context, name string, remote netip.AddrPort) error {
	addr := remote.Addr().Unmap()
	if !addr.IsValid() || addr.IsUnspecified() || addr.IsMulticast() {
		return fmt.Errorf("ike: initiate %s: %q is not a peer address", name, remote)
	}
	done := make(chan error, 1)
	var err error
	if cerr := e.call(ctx, func() {
		c, ch := e.childNamed(name)
		switch {
		case ch == nil:
			err = fmt.Errorf("%w: %q", ErrNotFound, name)
		case c.RemoteAddr.IsValid():
			err = fmt.Errorf("ike: connection %s has remote_addrs = %s; an address at run time is for remote_addrs = %%any", c.Name, c.RemoteAddr)
		case c.LocalAddr.IsValid() && c.LocalAddr.Is4() != addr.Is4():
			err = fmt.Errorf("ike: connection %s: %s and local address %s are of different families", c.Name, addr, c.LocalAddr)
		case e.sockets[listenAddr(c.LocalAddr, addr, c.LocalPort)] == nil:
			err = fmt.Errorf("ike: connection %s: no IKE socket to reach %s from", c.Name, addr)
		default:
			rc := *c // this peer's connection: the configured one, bound to addr
			rc.RemoteAddr = addr
			if remote.Port() != 0 {
				rc.RemotePort = remote.Port()
			}
			e.initiateAt(&rc, ch, done)
		}
	}); cerr != nil {
		return cerr
	}
	return waitInitiated(ctx, err, done)
}

// initiateAt starts child ch of rc (a %any connection bound to a peer
// address) on an IKE SA with that peer only. Runs on the loop.
func (e *Engine) initiateAt(rc *config.Connection, ch *config.Child, done chan error) {
	nc := e.newChild(ch)
	nr := made(&nc.rec)
	nr.waiters = append(nr.waiters, done)
	for _, sa := range e.sasOf(rc.Name) {
		if sa.remote.Addr().Unmap() != rc.RemoteAddr || sa.state != ikeEstablished || sa.pendingOf != nil {
			continue
		}
		for _, x := range sa.children {
			if x.cfg.Name == ch.Name && x.state == childInstalled {
				nc.notify(nil)
				return
			}
		}
		e.log.Info("initiating an additional child", "connection", rc.Name, "child", ch.Name, "remote", sa.remote)
		sa.createChild(nc)
		return
	}
	e.log.Info("initiating", "connection", rc.Name, "child", ch.Name, "remote", netip.AddrPortFrom(rc.RemoteAddr, rc.RemotePort))
	e.startIKE(rc, nc)
}
