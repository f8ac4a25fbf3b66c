package conformance

import (
	"fmt"
	"net/netip"

	"github.com/keyplane/keyplane/kernelops"
)

func spdOf(t TB, h *Harness) kernelops.SPD {
	return facet[kernelops.SPD](t, h, kernelops.CapSPD)
}

func checkPolicy(t TB, what string, got *kernelops.PolicyEntry, want *kernelops.Policy) {
	t.Helper()
	if got.ID() != want.ID() {
		t.Errorf("%s: ID = %v, want %v", what, got.ID(), want.ID())
	}
	if got.Action != want.Action {
		t.Errorf("%s: Action = %v, want %v", what, got.Action, want.Action)
	}
	if wp := kernelops.EffectivePriority(want); got.Priority != wp {
		t.Errorf("%s: Priority = %d, want %d", what, got.Priority, wp)
	}
	if len(got.Templates) != len(want.Templates) {
		t.Fatalf("%s: %d templates, want %d", what, len(got.Templates), len(want.Templates))
	}
	for i := range want.Templates {
		g, w := got.Templates[i], want.Templates[i]
		if g.Src != w.Src || g.Dst != w.Dst || g.Proto != w.Proto || g.Mode != w.Mode || g.ReqID != w.ReqID {
			t.Errorf("%s: template %d = %+v, want %+v", what, i, g, w)
		}
	}
}

// testPolicyLifecycle: add, get, replace, delete with the sentinel errors.
func testPolicyLifecycle(t TB, h *Harness) {
	spd := spdOf(t, h)
	ctx := t.Context()
	p := h.outPolicy(kernelops.ActionIPsec, nextReqID())
	_, err := spd.GetPolicy(ctx, p.ID())
	wantErr(t, "get before add", err, kernelops.ErrNotFound)
	wantErr(t, "delete before add", spd.DeletePolicy(ctx, p.ID()), kernelops.ErrNotFound)

	noErr(t, "add", spd.AddPolicy(ctx, p))
	wantErr(t, "add twice", spd.AddPolicy(ctx, p.Clone()), kernelops.ErrExists)
	got, err := spd.GetPolicy(ctx, p.ID())
	noErr(t, "get", err)
	checkPolicy(t, "get after add", got, p)

	// Replace swaps the action and template in place.
	r := p.Clone()
	r.Templates[0].ReqID = nextReqID()
	noErr(t, "replace", spd.ReplacePolicy(ctx, r))
	got, err = spd.GetPolicy(ctx, p.ID())
	noErr(t, "get after replace", err)
	checkPolicy(t, "get after replace", got, r)

	// Replace of a missing policy adds it.
	other := h.outPolicy(kernelops.ActionBlock, 0)
	other.Selector.DstPort, other.Selector.Proto = 53, 17
	noErr(t, "replace (add)", spd.ReplacePolicy(ctx, other))
	if _, err := spd.GetPolicy(ctx, other.ID()); err != nil {
		t.Errorf("replace did not add a missing policy: %v", err)
	}

	// All three directions coexist for one selector.
	for _, dir := range []kernelops.Direction{kernelops.DirIn, kernelops.DirFwd} {
		q := p.Clone()
		q.Dir = dir
		q.Selector.Src, q.Selector.Dst = q.Selector.Dst, q.Selector.Src
		q.Templates[0].Src, q.Templates[0].Dst = h.Remote, h.Local
		noErr(t, "add "+dir.String(), spd.AddPolicy(ctx, q))
	}
	n := 0
	for e, err := range spd.Policies(ctx) {
		noErr(t, "dump", err)
		if e.Selector == p.Selector || e.Selector == (kernelops.Selector{Src: p.Selector.Dst, Dst: p.Selector.Src}) {
			n++
		}
	}
	if n != 3 {
		t.Errorf("dump shows %d policies for the selector pair, want out+in+fwd = 3", n)
	}

	noErr(t, "delete", spd.DeletePolicy(ctx, p.ID()))
	_, err = spd.GetPolicy(ctx, p.ID())
	wantErr(t, "get after delete", err, kernelops.ErrNotFound)
	wantErr(t, "delete twice", spd.DeletePolicy(ctx, p.ID()), kernelops.ErrNotFound)
}

// testPolicyPriorities: Priority 0 derives AutoPriority (more specific
// wins); an explicit priority is kept as given.
func testPolicyPriorities(t TB, h *Harness) {
	need(t, h, kernelops.CapPolicyPriority)
	spd := spdOf(t, h)
	ctx := t.Context()
	wide := h.outPolicy(kernelops.ActionIPsec, nextReqID())
	wide.Selector.Src = netip.PrefixFrom(h.LocalInner, 16).Masked()
	wide.Selector.Dst = netip.PrefixFrom(h.RemoteInner, 16).Masked()
	narrow := h.outPolicy(kernelops.ActionIPsec, nextReqID())
	explicit := h.outPolicy(kernelops.ActionPass, 0)
	explicit.Selector.Proto, explicit.Selector.DstPort = 17, 500
	explicit.Priority = 12345
	for _, p := range []*kernelops.Policy{wide, narrow, explicit} {
		noErr(t, "add "+p.ID().String(), spd.AddPolicy(ctx, p))
	}
	gw, err := spd.GetPolicy(ctx, wide.ID())
	noErr(t, "get wide", err)
	gn, err := spd.GetPolicy(ctx, narrow.ID())
	noErr(t, "get narrow", err)
	ge, err := spd.GetPolicy(ctx, explicit.ID())
	noErr(t, "get explicit", err)
	if gn.Priority >= gw.Priority {
		t.Errorf("narrow selector priority %d does not beat wide %d", gn.Priority, gw.Priority)
	}
	if gw.Priority != kernelops.AutoPriority(wide) || gn.Priority != kernelops.AutoPriority(narrow) {
		t.Errorf("derived priorities %d/%d, want AutoPriority %d/%d", gw.Priority, gn.Priority,
			kernelops.AutoPriority(wide), kernelops.AutoPriority(narrow))
	}
	if ge.Priority != 12345 {
		t.Errorf("explicit priority read back as %d", ge.Priority)
	}
}

// testPolicyBadInput: bad policies are ErrInvalid naming the field, and
// nothing is installed.
func testPolicyBadInput(t TB, h *Harness) {
	spd := spdOf(t, h)
	ctx := t.Context()
	before := countPolicies(t, spd)
	tests := []struct {
		name  string
		mod   func(*kernelops.Policy)
		field string
	}{
		{"invalid prefix", func(p *kernelops.Policy) { p.Selector.Src = mustPrefix(h.LocalInner.String() + "/8") }, "Selector.Src"},
		{"mixed families", func(p *kernelops.Policy) { p.Selector.Dst = mustPrefix("2001:db8::/64") }, "Selector.Dst"},
		{"ipsec without template", func(p *kernelops.Policy) { p.Templates = nil }, "Templates"},
		{"template mixed families", func(p *kernelops.Policy) { p.Templates[0].Dst = mustAddr("2001:db8::1") }, "Templates[0].Dst"},
		{"no direction", func(p *kernelops.Policy) { p.Dir = 0 }, "Dir"},
		{"ports without protocol", func(p *kernelops.Policy) { p.Selector.DstPort = 80 }, "Selector.Proto"},
	}
	for _, tc := range tests {
		p := h.outPolicy(kernelops.ActionIPsec, nextReqID())
		tc.mod(p)
		err := spd.AddPolicy(ctx, p)
		wantErr(t, tc.name, err, kernelops.ErrInvalid)
		if ke := asKError(err); ke != nil && ke.Field != tc.field {
			t.Errorf("%s: error names field %q, want %q (%v)", tc.name, ke.Field, tc.field, err)
		}
	}
	if after := countPolicies(t, spd); after != before {
		t.Errorf("bad input installed something: %d policies before, %d after", before, after)
	}
}

// testPolicyConcurrent: 8 goroutines add, get and delete policies at once.
func testPolicyConcurrent(t TB, h *Harness) {
	spd := spdOf(t, h)
	ctx := t.Context()
	before := countPolicies(t, spd)
	concurrently(t, h.bulkN(100), func(g, i int) error {
		p := h.outPolicy(kernelops.ActionIPsec, nextReqID())
		p.Selector.Proto, p.Selector.SrcPort, p.Selector.DstPort = 17, uint16(1000+g), uint16(1000+i)
		if err := spd.AddPolicy(ctx, p); err != nil {
			return fmt.Errorf("add: %w", err)
		}
		if _, err := spd.GetPolicy(ctx, p.ID()); err != nil {
			return fmt.Errorf("get: %w", err)
		}
		if err := spd.DeletePolicy(ctx, p.ID()); err != nil {
			return fmt.Errorf("delete: %w", err)
		}
		return nil
	})
	if after := countPolicies(t, spd); after != before {
		t.Errorf("%d policies before, %d after add+delete", before, after)
	}
}

// testPolicyFlush: FlushPolicies removes owned policies.
func testPolicyFlush(t TB, h *Harness) {
	spd := spdOf(t, h)
	ctx := t.Context()
	for i := range 10 {
		p := h.outPolicy(kernelops.ActionIPsec, nextReqID())
		p.Selector.Proto, p.Selector.DstPort = 6, uint16(2000+i)
		noErr(t, "add", spd.AddPolicy(ctx, p))
	}
	noErr(t, "flush", spd.FlushPolicies(ctx))
	for e, err := range spd.Policies(ctx) {
		noErr(t, "dump", err)
		for _, tm := range e.Templates {
			if tm.ReqID >= kernelops.DefaultReqIDMin && tm.ReqID <= kernelops.DefaultReqIDMax {
				t.Errorf("owned policy %s survived the flush", e.ID())
			}
		}
	}
	noErr(t, "flush when empty", spd.FlushPolicies(ctx))
}

func countPolicies(t TB, spd kernelops.SPD) int {
	t.Helper()
	n := 0
	for _, err := range spd.Policies(t.Context()) {
		noErr(t, "dump", err)
		n++
	}
	return n
}
