package control

import (
	"context"
	"errors"
	"fmt"
	"net/netip"
	"time"
)

// Bounds of initiate's "timeout" argument: how long the daemon waits for
// the outcome before answering.
const (
	DefaultInitiateTimeout = 60 * time.Second
	MaxInitiateTimeout     = time.Hour
)

// ErrInitiateTimeout is an initiate whose outcome did not come in time.
// The negotiation goes on in the daemon (retransmissions, then giving up):
// only the wait ended.
var ErrInitiateTimeout = errors.New("no outcome in time")

// InitiateTimeout reads the "timeout" argument of an initiate request.
func InitiateTimeout(req Request) (time.Duration, error) {
	v, ok := req.Args["timeout"]
	if !ok || v == "" {
		return DefaultInitiateTimeout, nil
	}
	d, err := time.ParseDuration(v)
	if err != nil || d <= 0 || d > MaxInitiateTimeout {
		return 0, fmt.Errorf("%w: timeout %q: want a duration from 1ms to %s", ErrBadRequest, clip(v, 32), MaxInitiateTimeout)
	}
	return d, nil
}

// ArgRemote is initiate's peer address given at run time, for a
// connection with remote_addrs = %any: "ADDR" or "ADDR:PORT" ("[V6]:PORT").
const ArgRemote = "remote"

// InitiateRemote reads the "remote" argument of an initiate request (the
// zero AddrPort without one; port 0: the connection's remote_port).
func InitiateRemote(req Request) (netip.AddrPort, error) {
	v, ok := req.Args[ArgRemote]
	if !ok || v == "" {
		return netip.AddrPort{}, nil
	}
	if ap, err := netip.ParseAddrPort(v); err == nil {
		return ap, nil
	}
	a, err := netip.ParseAddr(v)
	if err != nil || a.Zone() != "" {
		return netip.AddrPort{}, fmt.Errorf("%w: remote %q: want an IP address, or ADDR:PORT", ErrBadRequest, clip(v, 64))
	}
	return netip.AddrPortFrom(a, 0), nil
}

func (s *Server) initiate(ctx context.Context, req Request) (Response, error) {
	timeout, err := InitiateTimeout(req)
	if err != nil {
		return Response{}, err
	}
	remote, err := InitiateRemote(req)
	if err != nil {
		return Response{}, err
	}
	if remote.IsValid() {
		return s.initiateTo(ctx, req, timeout, remote)
	}
	if up, err := s.alreadyUp(ctx, req.Name, netip.Addr{}); err == nil && up {
		return Response{Text: req.Name + " is already up", Initiate: &InitiateResult{AlreadyUp: true}}, nil
	}
	ctx, cancel := context.WithTimeout(ctx, timeout)
	defer cancel()
	if err := s.Engine.Initiate(ctx, req.Name); err != nil {
		if errors.Is(err, context.DeadlineExceeded) {
			return Response{}, &timeoutError{fmt.Sprintf("%s: no result within %s; the daemon goes on trying ('keyplane ike list' shows the IKE SA, 'keyplane terminate %s' stops it)",
				req.Name, timeout, req.Name)}
		}
		return Response{}, err
	}
	return Response{Text: req.Name + " is up", Initiate: &InitiateResult{}}, nil
}

// initiateTo is initiate to a peer address given at run time.
func (s *Server) initiateTo(ctx context.Context, req Request, timeout time.Duration, remote netip.AddrPort) (Response, error) {
	if up, err := s.alreadyUp(ctx, req.Name, remote.Addr().Unmap()); err == nil && up {
		return Response{Text: fmt.Sprintf("%s is already up with %s", req.Name, remote.Addr()), Initiate: &InitiateResult{AlreadyUp: true}}, nil
	}
	ctx, cancel := context.WithTimeout(ctx, timeout)
	defer cancel()
	if err := s.Engine.InitiateTo(ctx, req.Name, remote); err != nil {
		if errors.Is(err, context.DeadlineExceeded) {
			return Response{}, &timeoutError{fmt.Sprintf("%s to %s: no result within %s; the daemon goes on trying ('keyplane ike list' shows the IKE SA)",
				req.Name, remote.Addr(), timeout)}
		}
		return Response{}, err
	}
	return Response{Text: fmt.Sprintf("%s is up with %s", req.Name, remote.Addr()), Initiate: &InitiateResult{}}, nil
}

// alreadyUp reports whether the child that initiating name would bring up
// (the child of that name, or the connection's first child) is installed
// (with peer, when valid).
func (s *Server) alreadyUp(ctx context.Context, name string, peer netip.Addr) (bool, error) {
	child := name
	if s.Config != nil {
		if cfg := s.Config(); cfg != nil {
			if c := cfg.Connection(name); c != nil && len(c.Children) > 0 {
				child = c.Children[0].Name
			}
		}
	}
	chs, err := s.Engine.Children(ctx)
	if err != nil {
		return false, err
	}
	for _, c := range chs {
		if c.Name == child && c.State == "installed" && (!peer.IsValid() || c.Remote == peer.String()) {
			return true, nil
		}
	}
	return false, nil
}

// timeoutError is ErrInitiateTimeout with its plain message.
type timeoutError struct{ msg string }

func (e *timeoutError) Error() string        { return e.msg }
func (e *timeoutError) Is(target error) bool { return target == ErrInitiateTimeout }
