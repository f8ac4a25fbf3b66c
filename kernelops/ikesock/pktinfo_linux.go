package ikesock

import "golang.org/x/sys/unix"

// ipRecvDst4 asks Linux for struct in_pktinfo with each IPv4 datagram.
const ipRecvDst4 = unix.IP_PKTINFO
