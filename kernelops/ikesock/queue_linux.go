package ikesock

import (
	"errors"
	"unsafe"

	"golang.org/x/sys/unix"

	"github.com/keyplane/keyplane/kernelops"
)

// setRecvBuffer asks for n bytes of receive buffer: SO_RCVBUFFORCE goes
// past net.core.rmem_max but needs CAP_NET_ADMIN; without it SO_RCVBUF
// is capped at rmem_max.
func setRecvBuffer(fd, n int) error {
	err := unix.SetsockoptInt(fd, unix.SOL_SOCKET, unix.SO_RCVBUFFORCE, n)
	if errors.Is(err, unix.EPERM) {
		err = unix.SetsockoptInt(fd, unix.SOL_SOCKET, unix.SO_RCVBUF, n)
	}
	return errnoErr("setsockopt SO_RCVBUF", err)
}

// queueStats reads the socket's memory figures (SO_MEMINFO, Linux 3.x
// on): the receive buffer and the drop count the kernel keeps per socket
// (sk_drops, which /proc/net/udp shows as "drops"). Unlike SO_RXQ_OVFL,
// which stamps the count on each datagram read, this also sees drops
// after the last datagram and costs the read path nothing.
func queueStats(fd int) (kernelops.IKEQueueStats, error) {
	var mi [unix.SK_MEMINFO_VARS]uint32
	l := uint32(unsafe.Sizeof(mi))
	_, _, e := unix.Syscall6(unix.SYS_GETSOCKOPT, uintptr(fd), unix.SOL_SOCKET, unix.SO_MEMINFO,
		uintptr(unsafe.Pointer(&mi[0])), uintptr(unsafe.Pointer(&l)), 0)
	if e != 0 {
		return kernelops.IKEQueueStats{}, errnoErr("getsockopt SO_MEMINFO", e)
	}
	return kernelops.IKEQueueStats{RecvBuffer: int(mi[unix.SK_MEMINFO_RCVBUF]), Drops: uint64(mi[unix.SK_MEMINFO_DROPS]), DropsCounted: true}, nil
}
