package xfrm

import (
	"context"
	"os"

	"github.com/keyplane/keyplane/kernelops"
	"github.com/keyplane/keyplane/kernelops/ikesock"
	"golang.org/x/sys/unix"
)

// IKE sockets (kernelops/ikesock) with a per-socket XFRM policy of
// "allow" in both directions (IP_XFRM_POLICY / IPV6_XFRM_POLICY), which
// the kernel checks before the SPD, so IKE is never caught by the tunnels
// it builds. The NAT-T socket also has UDP_ENCAP_ESPINUDP: the kernel
// takes ESP out of it and hands up only IKE behind its non-ESP marker,
// which ikesock strips on read and adds on write.

// ListenIKE implements kernelops.Sockets.
func (b *driver) ListenIKE(ctx context.Context, l kernelops.IKEListen) (kernelops.IKEConn, error) {
	if err := b.checkOpen(); err != nil {
		return nil, err
	}
	return ikesock.Listen(ctx, ikesock.Config{Backend: Name, Listen: l, Control: ikeSockopts, Do: b.ns.do})
}

// ikeSockopts sets the bypass policies and, on the NAT-T socket, the
// encapsulation.
func ikeSockopts(fd uintptr, v6, encap bool) error {
	level, opt, name := unix.IPPROTO_IP, unix.IP_XFRM_POLICY, "setsockopt IP_XFRM_POLICY"
	fam := uint16(unix.AF_INET)
	if v6 {
		level, opt, name, fam = unix.IPPROTO_IPV6, unix.IPV6_XFRM_POLICY, "setsockopt IPV6_XFRM_POLICY", unix.AF_INET6
	}
	for _, dir := range []uint8{xfrmPolicyIn, xfrmPolicyOut} {
		// struct xfrm_userpolicy_info: match all, allow, infinite lifetime.
		var p [sizePolicyInfo]byte
		ne.PutUint16(p[40:], fam)
		putLftCfg(p[56:], kernelops.Lifetimes{})
		p[160] = dir
		p[161] = xfrmPolicyAllow
		if err := unix.SetsockoptString(int(fd), level, opt, string(p[:])); err != nil {
			return os.NewSyscallError(name, err)
		}
	}
	if encap {
		if err := unix.SetsockoptInt(int(fd), unix.IPPROTO_UDP, unix.UDP_ENCAP, unix.UDP_ENCAP_ESPINUDP); err != nil {
			return os.NewSyscallError("setsockopt UDP_ENCAP", err)
		}
	}
	return nil
}
