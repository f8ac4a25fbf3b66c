package interop

import (
	"strings"
	"testing"
	"time"
)

// TestVMRouteBased: keyplane's child with if_id_in = if_id_out = 42
// against charon (policy-based), real ESP: the SAs and policies carry
// the id, so traffic routed the ordinary way (via the veth) does not
// match the out policy and charon drops it unencrypted; routed into an
// XFRM interface of id 42 (created by the test with ip link) it is
// encrypted and ping passes both ways.
func TestVMRouteBased(t *testing.T) {
	ctx, p, c, k := routeBasedRig(t, 40*time.Second, "if_id_in = 42", "if_id_out = 42")
	kch := establish(t, ctx, p, c, k, "net", "kp")
	states := p.A.Exec(t, "ip", "xfrm", "state")
	if n := strings.Count(states, "if_id 0x2a"); n != 2 {
		t.Errorf("ip xfrm state shows if_id 0x2a on %d SAs, want 2:\n%s", n, states)
	}
	pols := p.A.Exec(t, "ip", "xfrm", "policy")
	if n := strings.Count(pols, "if_id 0x2a"); n != 3 {
		t.Errorf("ip xfrm policy shows if_id 0x2a on %d policies, want 3 (out, in, fwd):\n%s", n, pols)
	}
	// Routed via the veth: no policy of this id matches, the packet
	// leaves in the clear and charon's kernel drops it.
	if out, err := p.A.Run("ping", "-c", "1", "-W", "1", "-I", innerK.String(), innerS.String()); err == nil {
		t.Errorf("ping outside the XFRM interface passed:\n%s", out)
	}
	p.A.Exec(t, "ip", "link", "add", "xfrm42", "type", "xfrm", "dev", p.IfA, "if_id", "42")
	p.A.Exec(t, "ip", "link", "set", "xfrm42", "up")
	p.A.Exec(t, "ip", "route", "replace", innerS.String()+"/32", "dev", "xfrm42", "src", innerK.String())
	before := xfrmBytes(t, p.A)
	ping(t, p.A, innerK.String(), innerS.String(), 3)
	ping(t, p.B, innerS.String(), innerK.String(), 3)
	packetsGrew(t, before, xfrmBytes(t, p.A), kch, 6, "through the XFRM interface")
	terminate(t, ctx, c, k, false)
	waitKernelsEmpty(t, p)
}
