package ike

import (
	"context"
	"errors"
	"fmt"
	"time"

	"github.com/keyplane/keyplane/ike/config"
	"github.com/keyplane/keyplane/kernelops"
)

// ErrNotFound is returned for an unknown connection or child name.
var ErrNotFound = errors.New("ike: no such connection or child")

// childBusy reports whether the child is installed or being negotiated.
func (e *Engine) childBusy(conn, child string) bool {
	for _, sa := range e.sasOf(conn) {
		if sa.state == ikeDead || sa.state == ikeDeleting || sa.state == ikeRekeyed {
			continue
		}
		if sa.first != nil && sa.first.cfg.Name == child {
			return true
		}
		for _, ch := range sa.children {
			if ch.cfg.Name == child && (ch.state == childInstalled || ch.state == childNegotiating) {
				return true
			}
		}
	}
	return false
}

// childComing is the child's negotiation under way when it is not
// installed anywhere (nil otherwise): what recovery waits on instead of
// starting the child again (recovery.go).
func (e *Engine) childComing(conn, child string) *childSA {
	var coming *childSA
	for _, sa := range e.sasOf(conn) {
		if sa.state == ikeDead || sa.state == ikeDeleting || sa.state == ikeRekeyed {
			continue
		}
		if f := sa.first; f != nil && f.cfg.Name == child && f.state == childNegotiating && coming == nil {
			coming = f
		}
		for _, ch := range sa.children {
			if ch.cfg.Name != child {
				continue
			}
			switch {
			case ch.state == childInstalled:
				return nil
			case ch.state == childNegotiating && coming == nil:
				coming = ch
			}
		}
	}
	return coming
}

// initiate starts child ch of connection c: on an established IKE SA
// of c, or a new IKE SA carries it in IKE_AUTH. done, if not nil,
// receives the outcome.
func (e *Engine) initiate(c *config.Connection, ch *config.Child, acq *kernelops.AcquireEvent, done chan error) {
	nc := e.newChild(ch)
	if acq != nil {
		made(&nc.rec).acquire = acq
		if nc.reqid == 0 {
			// The trap's: its SPI allocation takes over the kernel's
			// acquire state; the negotiated selectors decide at
			// installation.
			nc.reqid = acq.ReqID
		}
	}
	if done != nil {
		nr := made(&nc.rec)
		nr.waiters = append(nr.waiters, done)
	}
	e.initiateChild(c, nc)
}

// initiateChild starts nc, a child of c under negotiation with whoever
// waits for it: nothing to do if a child of its name is up or coming
// (the waiters wait for that one), else on an established IKE SA of c,
// else on a new IKE SA (always on a new one for a reauthentication).
func (e *Engine) initiateChild(c *config.Connection, nc *childSA) {
	if !c.RemoteAddr.IsValid() {
		nc.failf("connection %s has no remote address to initiate to", c.Name)
		return
	}
	join := func(x *childSA) {
		if nr := nc.rec; nr != nil {
			xr := made(&x.rec)
			xr.waiters = append(xr.waiters, nr.waiters...)
			xr.onDone = append(xr.onDone, nr.onDone...)
			nr.waiters, nr.onDone = nil, nil
		}
	}
	for _, sa := range e.sasOf(c.Name) {
		if nc.rec != nil && nc.rec.newIKE {
			break
		}
		if sa.state == ikeDead || sa.state == ikeDeleting || sa.state == ikeRekeyed {
			continue
		}
		if sa.first != nil && sa.first.cfg.Name == nc.cfg.Name {
			join(sa.first)
			return
		}
		for _, x := range sa.children {
			if x.cfg.Name == nc.cfg.Name && x.state == childInstalled {
				nc.notify(nil)
				return
			}
		}
		for _, x := range sa.children {
			if x.cfg.Name == nc.cfg.Name && x.state == childNegotiating {
				join(x)
				return
			}
		}
		if sa.state == ikeEstablished {
			e.log.Info("initiating an additional child", "connection", c.Name, "child", nc.cfg.Name)
			sa.createChild(nc)
			return
		}
	}
	e.log.Info("initiating", "connection", c.Name, "child", nc.cfg.Name, "remote", fmt.Sprintf("%s:%d", c.RemoteAddr, c.RemotePort))
	e.startIKE(c, nc)
}

// Initiate brings up a child (by child name) or a connection's first
// child (by connection name) and waits until it is installed or failed.
func (e *Engine) Initiate(ctx context.Context, name string) error {
	done := make(chan error, 1)
	var err error
	if cerr := e.call(ctx, func() {
		c, ch := e.childNamed(name)
		if ch == nil {
			err = fmt.Errorf("%w: %q", ErrNotFound, name)
			return
		}
		e.initiate(c, ch, nil, done)
	}); cerr != nil {
		return cerr
	}
	return waitInitiated(ctx, err, done)
}

// childNamed is the child called name, or the first child of the
// connection called name, with its connection (nil: neither). Runs on
// the loop.
func (e *Engine) childNamed(name string) (*config.Connection, *config.Child) {
	c, ch := e.child(name) // cfgnames.go
	if ch == nil {
		if c = e.connection(name); c != nil {
			ch = c.Children[0]
		}
	}
	return c, ch
}

// waitInitiated is err, the refusal of an initiation, or else the
// outcome the initiation sends on done.
func waitInitiated(ctx context.Context, err error, done <-chan error) error {
	if err != nil {
		return err
	}
	select {
	case err := <-done:
		return err
	case <-ctx.Done():
		return ctx.Err()
	}
}

// Terminate deletes a child (by child name) or the IKE SAs of a
// connection (by connection name), telling the peer, and waits until done.
func (e *Engine) Terminate(ctx context.Context, name string) error {
	var err error
	found := false
	// touched are the IKE SAs the deletes are in: the wait below looks
	// at them (and at the connection's index), not at every SA.
	var touched []*ikeSA
	if cerr := e.call(ctx, func() {
		if c := e.cfg.Connection(name); c != nil {
			for _, sa := range e.sasOf(name) {
				found = true
				touched = append(touched, sa)
				sa.startDelete("terminated by command")
			}
			return
		}
		if _, ch := e.cfg.Child(name); ch != nil {
			for _, sa := range e.sas {
				here := false
				for _, x := range sa.children {
					if x.cfg.Name == name && x.state == childInstalled {
						here = true
						sa.deleteChild(x, "terminated by command")
					}
				}
				if here {
					found = true
					touched = append(touched, sa)
				}
			}
			return
		}
		err = fmt.Errorf("%w: %q", ErrNotFound, name)
	}); cerr != nil {
		return cerr
	}
	if err != nil {
		return err
	}
	if !found {
		return fmt.Errorf("%q is not up", name)
	}
	// Wait for the deletes to be answered (or given up on).
	for {
		busy := false
		if cerr := e.call(ctx, func() {
			busy = e.byConn[name].len() > 0
			for _, sa := range touched {
				if e.sas[sa.localSPI()] != sa {
					continue
				}
				for _, x := range sa.children {
					if x.cfg.Name == name {
						busy = true
					}
				}
			}
		}); cerr != nil {
			return cerr
		}
		if !busy {
			return nil
		}
		select {
		case <-ctx.Done():
			return ctx.Err()
		case <-time.After(10 * time.Millisecond):
		}
	}
}

// handshakeDone records how long an initiated handshake took, from the
// first IKE_SA_INIT (sent as the SA is created) to the installed first
// child.
func (e *Engine) handshakeDone(sa *ikeSA) bool {
	if sa.initiator && sa.timeHandshake {
		d := e.clk.Now().Sub(e.timeOf(sa.created))
		e.handshakes = append(e.handshakes, d)
		sa.logger().Info("handshake complete", "took", d.String())
		sa.timeHandshake = false
	}
	return true
}

// Rekey starts a rekey now (as swanctl --rekey does): of the installed
// children with a child's name, or of the established IKE SAs of a
// connection by its name. It returns once the exchanges are started; the
// outcome shows in the listings and events. The usual rules hold: a
// child already being rekeyed is left alone, an IKE SA with exchanges
// in flight rekeys a moment later.
func (e *Engine) Rekey(ctx context.Context, name string) error {
	var err error
	n := 0
	if cerr := e.call(ctx, func() {
		if c := e.cfg.Connection(name); c != nil {
			for _, sa := range e.sasOf(name) {
				if sa.state == ikeEstablished && sa.pendingOf == nil {
					n++
					sa.rekeyIKE()
				}
			}
			return
		}
		if _, ch := e.cfg.Child(name); ch != nil {
			for _, sa := range e.sortedSAs() {
				for _, x := range append([]*childSA(nil), sa.children...) {
					if x.cfg.Name == name && x.state == childInstalled {
						n++
						sa.rekeyChild(x)
					}
				}
			}
			return
		}
		err = fmt.Errorf("%w: %q", ErrNotFound, name)
	}); cerr != nil {
		return cerr
	}
	if err == nil && n == 0 {
		err = fmt.Errorf("%q is not up", name)
	}
	return err
}
