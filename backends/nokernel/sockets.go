package nokernel

import (
	"context"

	"github.com/keyplane/keyplane/kernelops"
	"github.com/keyplane/keyplane/kernelops/ikesock"
)

// ListenIKE opens a real UDP socket (Sockets, kernelops/ikesock). The
// model applies IPsec to no real traffic, so the socket needs no bypass
// policy. On the NAT-T socket (Encap) ikesock does what the kernel's
// UDP_ENCAP_ESPINUDP does with arriving datagrams: ESP and NAT keepalives
// are consumed — the model has no ESP to decrypt them into — and IKE is
// delivered without its non-ESP marker, which the writer prepends, as on
// XFRM. Close closes the sockets still open.
func (b *model) ListenIKE(ctx context.Context, l kernelops.IKEListen) (kernelops.IKEConn, error) {
	if err := b.checkOpen(); err != nil {
		return nil, err
	}
	return ikesock.Listen(ctx, ikesock.Config{Backend: Name, Listen: l, Group: &b.sockets})
}
