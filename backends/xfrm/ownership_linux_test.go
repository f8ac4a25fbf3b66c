package xfrm

import (
	"context"
	"strings"
	"testing"

	"github.com/keyplane/keyplane/internal/lab"
	"github.com/keyplane/keyplane/kernelops"
)

// Foreign policies, installed with iproute2 as another daemon would:
// pass, block, and ipsec with a reqid outside keyplane's range.
var foreignPolicies = [][]string{
	{"xfrm", "policy", "add", "src", "10.9.0.0/16", "dst", "10.8.0.0/16", "dir", "out", "priority", "100"},
	{"xfrm", "policy", "add", "src", "10.9.0.0/16", "dst", "10.8.0.0/16", "dir", "in", "action", "block"},
	{"xfrm", "policy", "add", "src", "10.8.0.0/16", "dst", "10.9.0.0/16", "dir", "fwd",
		"tmpl", "src", "192.0.2.8", "dst", "192.0.2.9", "proto", "esp", "mode", "tunnel", "reqid", "5"},
	{"xfrm", "policy", "add", "src", "::/0", "dst", "::/0", "proto", "udp", "dport", "500", "dir", "in"},
}

// installOwned adds keyplane policies of every kind and returns them.
func installOwned(t *testing.T, b *Backend) []kernelops.PolicyID {
	t.Helper()
	ctx := context.Background()
	ps := []*kernelops.Policy{
		{Selector: kernelops.Selector{Src: mp("10.1.0.0/16"), Dst: mp("10.2.0.0/16")}, Dir: kernelops.DirOut, Action: kernelops.ActionPass},
		{Selector: kernelops.Selector{Src: mp("10.1.0.0/16"), Dst: mp("10.3.0.0/16")}, Dir: kernelops.DirOut, Action: kernelops.ActionBlock},
		{Selector: kernelops.Selector{Src: mp("10.1.0.0/16"), Dst: mp("10.4.0.0/16")}, Dir: kernelops.DirOut, Action: kernelops.ActionIPsec,
			Templates: []kernelops.Template{{Src: ma("192.0.2.1"), Dst: ma("192.0.2.2"), Proto: kernelops.ProtoESP, Mode: kernelops.ModeTunnel, ReqID: b.Options().ReqIDMin + 1}}},
		{Selector: kernelops.Selector{Src: mp("10.1.0.0/16"), Dst: mp("10.5.0.0/16")}, Dir: kernelops.DirOut, Action: kernelops.ActionTrap,
			Templates: []kernelops.Template{{Src: ma("192.0.2.1"), Dst: ma("192.0.2.2"), Proto: kernelops.ProtoESP, Mode: kernelops.ModeTunnel, ReqID: b.Options().ReqIDMin + 2}}},
	}
	var ids []kernelops.PolicyID
	for _, p := range ps {
		must(t, "add "+p.ID().String(), b.AddPolicy(ctx, p))
		ids = append(ids, p.ID())
	}
	must(t, "holes", b.OpenHoles(ctx, kernelops.HoleSet{IKEPorts: []uint16{4500}}))
	return ids
}

func countPolicyLines(t *testing.T, ns *lab.NS) int {
	t.Helper()
	n := 0
	for _, line := range strings.Split(ipOut(t, ns, "xfrm", "policy", "list"), "\n") {
		if strings.HasPrefix(strings.TrimSpace(line), "dir ") {
			n++
		}
	}
	return n
}

func TestFlushPoliciesLeavesForeign(t *testing.T) {
	b, ns := fresh(t, kernelops.Options{})
	ctx := context.Background()
	for _, args := range foreignPolicies {
		ipOut(t, ns, args...)
	}
	// Another keyplane with another reqid range, in the same namespace.
	other := openIn(t, ns, kernelops.Options{ReqIDMin: 0x1000, ReqIDMax: 0x1fff})
	if other.d.polTag == b.d.polTag {
		t.Fatalf("test ranges collide in the index tag: pick other ranges")
	}
	otherPass := &kernelops.Policy{Selector: kernelops.Selector{Src: mp("10.6.0.0/16")}, Dir: kernelops.DirIn, Action: kernelops.ActionPass}
	must(t, "other's pass policy", other.AddPolicy(ctx, otherPass))
	before := countPolicyLines(t, ns)
	if before != len(foreignPolicies)+1 {
		t.Fatalf("%d policies listed before, want %d", before, len(foreignPolicies)+1)
	}

	ids := installOwned(t, b)
	must(t, "flush", b.FlushPolicies(ctx))
	for _, id := range ids {
		_, err := b.GetPolicy(ctx, id)
		wantIs(t, "own policy after flush", err, kernelops.ErrNotFound)
	}
	if after := countPolicyLines(t, ns); after != before {
		t.Errorf("%d foreign policies before, %d after the flush:\n%s", before, after, ipOut(t, ns, "xfrm", "policy"))
	}
	if _, err := other.GetPolicy(ctx, otherPass.ID()); err != nil {
		t.Errorf("the other keyplane's pass policy went: %v", err)
	}
}

func TestCleanupOwnedAtOpen(t *testing.T) {
	lab.RequireRoot(t)
	ns := lab.NewNS(t)
	for _, args := range foreignPolicies {
		ipOut(t, ns, args...)
	}
	before := countPolicyLines(t, ns)
	if before != len(foreignPolicies) {
		t.Fatalf("%d policies listed before, want %d", before, len(foreignPolicies))
	}
	first := openIn(t, ns, kernelops.Options{})
	ids := installOwned(t, first)
	first.Close() // a crash: nothing removed
	if n := countPolicyLines(t, ns); n != before+len(ids)+4 {
		t.Fatalf("%d policies after the first life, want %d", n, before+len(ids)+4)
	}
	second := openIn(t, ns, kernelops.Options{Params: map[string]string{ParamCleanup: "owned"}})
	for _, id := range ids {
		_, err := second.GetPolicy(context.Background(), id)
		wantIs(t, "stale policy after restart", err, kernelops.ErrNotFound)
	}
	if after := countPolicyLines(t, ns); after != before {
		t.Errorf("%d foreign policies before, %d after the restart cleanup:\n%s", before, after, ipOut(t, ns, "xfrm", "policy"))
	}
}
