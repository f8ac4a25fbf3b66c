package pfkey

import (
	"unsafe"

	"github.com/keyplane/keyplane/backends/pfkey/sadb"
	"github.com/keyplane/keyplane/internal/netnsexec"
	"github.com/keyplane/keyplane/kernelops"
	"golang.org/x/sys/unix"
)

// Linux af_key (net/key/af_key.c): PF_KEY over the same SAD and SPD XFRM
// manages. Facts behind the claims below are from af_key.c and
// xfrm_algo.c.
var host = &osInfo{
	name:    "linux",
	dialect: &sadb.Linux,
	family:  unix.AF_KEY, // 15, include/linux/socket.h
	missing: "the kernel has no PF_KEY sockets: load the af_key module (CONFIG_NET_KEY)",

	caps: commonCaps | kernelops.CapSockets | kernelops.CapLifetimePackets | kernelops.CapUDPEncap |
		kernelops.CapPolicyPriority | kernelops.CapMappingEvents | kernelops.CapCounters,
	notes: map[kernelops.Cap]string{
		kernelops.CapESN:            "af_key has no ESN flag and never allocates an ESN replay state (use the xfrm backend)",
		kernelops.CapSync:           "af_key has no aevents: XFRM_MSG_NEWAE is 'not yet supported' in pfkey_send_notify, and replay state cannot be read or set",
		kernelops.CapPolicyLifetime: "af_key sends no policy expire (key_notify_policy_expire is empty)",
	},

	maxReplay:    32, // pfkey_msg2xfrm_state: min(sadb_sa_replay, bits in the 32-bit replay bitmap)
	packetLimits: true,
	forwardDir:   true, // IPSEC_DIR_FWD
	saReqIDMax:   0xffffffff,

	ipsecPolicy4:  unix.IP_IPSEC_POLICY,   // 16
	ipsecPolicy6:  unix.IPV6_IPSEC_POLICY, // 34
	udpEncapLevel: unix.IPPROTO_UDP,
	udpEncapOpt:   unix.UDP_ENCAP, // 100; UDP_ENCAP_ESPINUDP is 2
}

func init() { kernelops.Register(Name, Open) }

// netns pins the backend to a network namespace: PF_KEY sockets (and the
// IKE and probe sockets) belong to the namespace of the thread that
// creates them, and the backend creates sockets lazily, from any
// goroutine. No path: the namespace Open was called in.
type netns struct{ *netnsexec.NS }

func newNetns(path string) (*netns, error) {
	ns, err := netnsexec.Open(path)
	if err != nil {
		return nil, err
	}
	return &netns{ns}, nil
}

func (n *netns) close() error            { return n.Close() }
func (n *netns) initial() bool           { return n.Initial() }
func (n *netns) do(f func() error) error { return n.Do(f) }

// tuneEventSocket enlarges the receive buffer past net.core.rmem_max
// (root may) so bursts of broadcasts do not crowd out events.
func tuneEventSocket(fd, size int) {
	if unix.SetsockoptInt(fd, unix.SOL_SOCKET, unix.SO_RCVBUFFORCE, size) != nil {
		unix.SetsockoptInt(fd, unix.SOL_SOCKET, unix.SO_RCVBUF, size)
	}
}

// SO_MEMINFO indices (include/uapi/linux/sock_diag.h).
const (
	skMeminfoRmemAlloc = 0
	skMeminfoRcvbuf    = 1
	skMeminfoVars      = 9
	// lossMargin is how close to full the queue may get before a message
	// may have been dropped: more than the largest event's truesize (an
	// eighth of smaller buffers).
	lossMargin = 64 << 10
)

// mayHaveLost reports whether the kernel may have dropped a message for
// fd. af_key drops a broadcast silently when the receiver's queue holds
// more than its buffer (pfkey_broadcast_one) — no ENOBUFS reaches the
// reader, unlike netlink. Only this process drains the queue, so if it is
// well below the limit now, nothing was dropped since the last read.
func mayHaveLost(fd int) bool {
	var mi [skMeminfoVars]uint32
	l := uint32(unsafe.Sizeof(mi))
	_, _, e := unix.Syscall6(unix.SYS_GETSOCKOPT, uintptr(fd), unix.SOL_SOCKET, unix.SO_MEMINFO,
		uintptr(unsafe.Pointer(&mi[0])), uintptr(unsafe.Pointer(&l)), 0)
	if e != 0 {
		return false
	}
	rmem, rcvbuf := int64(mi[skMeminfoRmemAlloc]), int64(mi[skMeminfoRcvbuf])
	return rmem+min(lossMargin, rcvbuf/8) > rcvbuf
}
