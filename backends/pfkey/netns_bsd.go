//go:build freebsd || netbsd || darwin

package pfkey

import (
	"fmt"

	"golang.org/x/sys/unix"
)

// netns is a no-op where there are no Linux network namespaces: the
// backend manages the kernel (or jail/vnet) it runs in.
type netns struct{}

func newNetns(path string) (*netns, error) {
	if path != "" {
		return nil, fmt.Errorf("parameter %q: network namespaces are Linux only", ParamNetns)
	}
	return &netns{}, nil
}

func (*netns) close() error            { return nil }
func (*netns) initial() bool           { return true }
func (*netns) do(f func() error) error { return f() }

// tuneEventSocket enlarges the receive buffer and, with SO_RERROR (where
// the OS has it), makes an overflow surface as ENOBUFS on the next read
// instead of vanishing.
func tuneEventSocket(fd, size int) {
	unix.SetsockoptInt(fd, unix.SOL_SOCKET, unix.SO_RCVBUF, size)
	if soRError != 0 {
		unix.SetsockoptInt(fd, unix.SOL_SOCKET, soRError, 1)
	}
}

// mayHaveLost is false: with SO_RERROR the kernel itself reports a drop
// (as ENOBUFS) — or, without it, nothing can tell.
func mayHaveLost(int) bool { return false }
