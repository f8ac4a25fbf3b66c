//go:build linux || freebsd || netbsd || darwin

package pfkey

import (
	"context"
	"os"

	"github.com/keyplane/keyplane/backends/pfkey/sadb"
	"github.com/keyplane/keyplane/kernelops"
	"github.com/keyplane/keyplane/kernelops/ikesock"
	"golang.org/x/sys/unix"
)

// IKE sockets (kernelops/ikesock) carrying a per-socket policy of type
// IPSEC_POLICY_BYPASS for each direction (IP_IPSEC_POLICY and
// IPV6_IPSEC_POLICY take a bare sadb_x_policy), which the kernel checks
// before the SPD, so IKE never enters the tunnels it negotiates. On Linux
// the option is decoded by af_key's pfkey_compile_policy. The NAT-T
// socket also has UDP_ENCAP_ESPINUDP: the kernel takes ESP out of it and
// leaves IKE behind its non-ESP marker (RFC 3948), which ikesock strips
// on read and adds on write.

const udpEncapESPInUDP = 2 // UDP_ENCAP_ESPINUDP, the same on Linux, FreeBSD and NetBSD

// ListenIKE implements kernelops.Sockets.
func (b *driver) ListenIKE(ctx context.Context, l kernelops.IKEListen) (kernelops.IKEConn, error) {
	if l.Encap && b.os.udpEncapOpt == 0 {
		return nil, unsupported(l.Addr.String(), "Encap", "%s", b.os.notes[kernelops.CapUDPEncap])
	}
	return ikesock.Listen(ctx, ikesock.Config{Backend: Name, Listen: l, Control: b.ikeSockopts, Do: b.ns.do, Group: &b.socks})
}

// ikeSockopts sets the bypass policies and, on the NAT-T socket, the
// decapsulation.
func (b *driver) ikeSockopts(fd uintptr, v6, encap bool) error {
	level, opt, name := unix.IPPROTO_IP, b.os.ipsecPolicy4, "setsockopt IP_IPSEC_POLICY"
	if v6 {
		level, opt, name = unix.IPPROTO_IPV6, b.os.ipsecPolicy6, "setsockopt IPV6_IPSEC_POLICY"
	}
	for _, dir := range []uint8{sadb.DirInbound, sadb.DirOutbound} {
		blob, err := b.x.d.AppendExt(nil, &sadb.Policy{PolicyType: sadb.PolicyBypass, Dir: dir})
		if err != nil {
			return err
		}
		if err := unix.SetsockoptString(int(fd), level, opt, string(blob)); err != nil {
			return os.NewSyscallError(name, err)
		}
	}
	if encap {
		if err := unix.SetsockoptInt(int(fd), b.os.udpEncapLevel, b.os.udpEncapOpt, udpEncapESPInUDP); err != nil {
			return os.NewSyscallError("setsockopt UDP_ENCAP", err)
		}
	}
	return nil
}
