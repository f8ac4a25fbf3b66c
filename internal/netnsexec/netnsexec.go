//go:build linux

// Package netnsexec runs code inside a Linux network namespace. Sockets
// belong to the namespace of the thread that creates them, so a backend
// pinned to a namespace creates each of its sockets through Do, on an OS
// thread switched into the namespace and back; the sockets can then be
// used from any goroutine.
package netnsexec

import (
	"errors"
	"fmt"
	"path/filepath"
	"runtime"
	"strings"

	"golang.org/x/sys/unix"
)

// self is the calling thread's network namespace.
const self = "/proc/thread-self/ns/net"

// NS is an open network namespace.
type NS struct {
	fd   int
	ino  uint64 // the namespace's identity
	path string
}

// Open opens the namespace at path (a bind mount such as /run/netns/x, or
// /proc/<pid>/ns/net); "" opens the calling thread's own, which pins it:
// Do then runs in it whatever thread calls.
func Open(path string) (*NS, error) {
	p := path
	if p == "" {
		p = self
	}
	fd, err := unix.Open(p, unix.O_RDONLY|unix.O_CLOEXEC, 0)
	if err != nil {
		return nil, fmt.Errorf("network namespace %s: %w", p, err)
	}
	var st unix.Stat_t
	if err := unix.Fstat(fd, &st); err != nil {
		unix.Close(fd)
		return nil, fmt.Errorf("network namespace %s: %w", p, err)
	}
	return &NS{fd: fd, ino: st.Ino, path: path}, nil
}

// Fd is the namespace's file descriptor (for netlink handles and setns);
// it stays valid until Close.
func (n *NS) Fd() int { return n.fd }

// Path is the path Open was given ("" for the caller's namespace).
func (n *NS) Path() string { return n.path }

// Initial reports whether the namespace is the initial one (PID 1's).
func (n *NS) Initial() bool {
	var st unix.Stat_t
	return unix.Stat("/proc/1/ns/net", &st) == nil && st.Ino == n.ino
}

// Close releases the namespace's descriptor.
func (n *NS) Close() error { return unix.Close(n.fd) }

// Do runs fn on an OS thread inside the namespace: directly when the
// calling thread is already there, else on the locked calling thread
// switched in and back afterwards. A thread that cannot be switched back
// stays locked, so the runtime retires it with the goroutine. Goroutines
// fn starts do not inherit the namespace.
func (n *NS) Do(fn func() error) (err error) {
	runtime.LockOSThread()
	var st unix.Stat_t
	if unix.Stat(self, &st) == nil && st.Ino == n.ino {
		runtime.UnlockOSThread()
		return fn()
	}
	orig, err := unix.Open(self, unix.O_RDONLY|unix.O_CLOEXEC, 0)
	if err != nil {
		runtime.UnlockOSThread()
		return fmt.Errorf("current network namespace: %w", err)
	}
	if err := unix.Setns(n.fd, unix.CLONE_NEWNET); err != nil {
		unix.Close(orig)
		runtime.UnlockOSThread()
		return fmt.Errorf("enter network namespace %s: %w", n, err)
	}
	defer func() { // deferred, so a panicking fn leaves no thread behind in the namespace
		rerr := unix.Setns(orig, unix.CLONE_NEWNET)
		unix.Close(orig)
		if rerr != nil {
			err = errors.Join(err, fmt.Errorf("back to the original network namespace: %w", rerr))
			return
		}
		runtime.UnlockOSThread()
	}()
	return fn()
}

func (n *NS) String() string {
	if n.path == "" {
		return "current"
	}
	return n.path
}

// PathOf resolves a namespace as keyplane's settings name it (the
// backends' "netns" parameter): a path as it is, a bare name as `ip netns`
// keeps it under /run/netns; "" stays "" (the caller's own).
func PathOf(name string) string {
	if name == "" || strings.ContainsRune(name, '/') {
		return name
	}
	return filepath.Join("/run/netns", name)
}

// In runs fn inside the namespace name (PathOf) and closes it after; ""
// runs fn where the caller is, without opening anything.
func In(name string, fn func() error) error {
	if name == "" {
		return fn()
	}
	ns, err := Open(PathOf(name))
	if err != nil {
		return err
	}
	defer ns.Close()
	return ns.Do(fn)
}
