//go:build freebsd || netbsd || openbsd || darwin

package ikesock

import (
	"syscall"

	"github.com/keyplane/keyplane/kernelops"
)

// setRecvBuffer asks for n bytes of receive buffer with SO_RCVBUF (the
// system's maximum, kern.ipc.maxsockbuf, caps it).
func setRecvBuffer(fd, n int) error {
	return errnoErr("setsockopt SO_RCVBUF", syscall.SetsockoptInt(fd, syscall.SOL_SOCKET, syscall.SO_RCVBUF, n))
}

// queueStats reads the receive buffer; the BSDs and macOS keep no drop
// count per socket that a program can read (netstat -s counts UDP's
// "dropped due to full socket buffers" for the whole system).
func queueStats(fd int) (kernelops.IKEQueueStats, error) {
	n, err := syscall.GetsockoptInt(fd, syscall.SOL_SOCKET, syscall.SO_RCVBUF)
	if err != nil {
		return kernelops.IKEQueueStats{}, errnoErr("getsockopt SO_RCVBUF", err)
	}
	return kernelops.IKEQueueStats{RecvBuffer: n}, nil
}
