//go:build freebsd || netbsd || openbsd || darwin

package ikesock

import "golang.org/x/sys/unix"

// ipRecvDst4 asks the BSDs and macOS for each IPv4 datagram's destination
// (a bare struct in_addr).
const ipRecvDst4 = unix.IP_RECVDSTADDR
