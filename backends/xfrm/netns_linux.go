package xfrm

import (
	"errors"
	"fmt"
	"path/filepath"
	"runtime"
	"strings"

	"github.com/vishvananda/netns"
)

// nsRef is the network namespace the backend operates in. Sockets are
// bound to the namespace they are created in, so every socket is created
// through do, on a thread switched into the namespace; after that they
// can be used from any goroutine.
type nsRef struct {
	path string         // empty: the caller's namespace
	h    netns.NsHandle // open handle when path is set
}

// openNS resolves the "netns" parameter: a path, or a name under
// /run/netns as `ip netns` keeps them.
func openNS(param string) (*nsRef, error) {
	if param == "" {
		return &nsRef{h: netns.None()}, nil
	}
	path := param
	if !strings.ContainsRune(param, '/') {
		path = filepath.Join("/run/netns", param)
	}
	h, err := netns.GetFromPath(path)
	if err != nil {
		return nil, fmt.Errorf("network namespace %s: %w", path, err)
	}
	return &nsRef{path: path, h: h}, nil
}

// handle returns the namespace handle for netlink.NewHandleAt; for the
// caller's own namespace it opens one.
func (n *nsRef) handle() (netns.NsHandle, func(), error) {
	if n.path != "" {
		return n.h, func() {}, nil
	}
	h, err := netns.Get()
	if err != nil {
		return netns.None(), nil, err
	}
	return h, func() { h.Close() }, nil
}

// do runs fn with the current OS thread in the namespace. When the thread
// cannot be switched back it stays locked, so the runtime retires it with
// the goroutine.
func (n *nsRef) do(fn func() error) (err error) {
	if n == nil || n.path == "" {
		return fn()
	}
	runtime.LockOSThread()
	orig, err := netns.Get()
	if err != nil {
		runtime.UnlockOSThread()
		return fmt.Errorf("current network namespace: %w", err)
	}
	defer func() {
		if rerr := netns.Set(orig); rerr != nil {
			err = errors.Join(err, fmt.Errorf("back to the original network namespace: %w", rerr))
		} else {
			runtime.UnlockOSThread()
		}
		orig.Close()
	}()
	if err := netns.Set(n.h); err != nil {
		return fmt.Errorf("enter network namespace %s: %w", n.path, err)
	}
	return fn()
}

func (n *nsRef) close() {
	if n != nil && n.path != "" && n.h.IsOpen() {
		n.h.Close()
	}
}

func (n *nsRef) String() string {
	if n == nil || n.path == "" {
		return "current"
	}
	return n.path
}
