package ikesock

import (
	"fmt"
	"syscall"

	"github.com/keyplane/keyplane/kernelops"
)

// The receive queue of an IKE socket (kernelops.IKEQueue). Setting the
// buffer and reading the figures are per OS: queue_linux.go (where the
// buffer can be forced past net.core.rmem_max and the kernel counts each
// socket's drops), queue_other.go.

var _ kernelops.IKEQueue = (*conn)(nil)

// maxRecvBuffer bounds what may be asked for: the kernel doubles it and
// keeps it in an int.
const maxRecvBuffer = 1 << 30

// QueueStats implements kernelops.IKEQueue.
func (c *conn) QueueStats() (kernelops.IKEQueueStats, error) {
	var st kernelops.IKEQueueStats
	err := c.control("socket stats", func(fd int) error {
		var err error
		st, err = queueStats(fd)
		return err
	})
	return st, err
}

// SetRecvBuffer implements kernelops.IKEQueue.
func (c *conn) SetRecvBuffer(n int) error {
	if n <= 0 || n > maxRecvBuffer {
		return kernelops.Invalid(c.backend, "set IKE receive buffer", c.obj, "bytes", "%d: want 1 to %d", n, maxRecvBuffer)
	}
	return c.control("set IKE receive buffer", func(fd int) error { return setRecvBuffer(fd, n) })
}

// control runs f on the socket's descriptor.
func (c *conn) control(op string, f func(fd int) error) error {
	rc, err := c.uc.SyscallConn()
	if err != nil {
		return wrap(c.backend, op, c.obj, err)
	}
	var ferr error
	if err := rc.Control(func(fd uintptr) { ferr = f(int(fd)) }); err != nil {
		return wrap(c.backend, op, c.obj, err)
	}
	if ferr != nil {
		return wrap(c.backend, op, c.obj, ferr)
	}
	return nil
}

// checkRecvBuffer validates IKEListen.RecvBuffer.
func checkRecvBuffer(backend, obj string, n int) error {
	if n < 0 || n > maxRecvBuffer {
		return kernelops.Invalid(backend, opListen, obj, "RecvBuffer", "%d: want 0 (the OS default) to %d bytes", n, maxRecvBuffer)
	}
	return nil
}

// errnoErr keeps an errno's identity for wrap while naming the call.
func errnoErr(call string, err error) error {
	if errno, ok := err.(syscall.Errno); ok {
		return fmt.Errorf("%s: %w", call, errno)
	}
	return err
}
