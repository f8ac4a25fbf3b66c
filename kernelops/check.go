package kernelops

import (
	"fmt"
	"net/netip"
)

// feature is one thing an SA or policy may ask of a dataplane beyond its
// facet: the capability it needs, the field that asks for it.
type feature[T any] struct {
	cap   Cap
	field string
	uses  func(T) bool
}

var saFeatures = []feature[*SA]{
	{CapTunnelMode, "Mode", func(sa *SA) bool { return sa.Mode == ModeTunnel }},
	{CapTransportMode, "Mode", func(sa *SA) bool { return sa.Mode == ModeTransport }},
	{CapESN, "ESN", func(sa *SA) bool { return sa.ESN }},
	{CapUDPEncap, "Encap", func(sa *SA) bool { return sa.Encap != nil }},
	{CapMarks, "ID.Mark", func(sa *SA) bool { return !sa.ID.Mark.IsZero() }},
	{CapIfID, "IfID", func(sa *SA) bool { return sa.IfID != 0 }},
	{CapSADir, "Dir", func(sa *SA) bool { return sa.Dir != DirAny }},
	{CapLifetimeTime, "Lifetime", func(sa *SA) bool {
		l := sa.Lifetime
		return l.Soft.AddTime != 0 || l.Hard.AddTime != 0 || l.Soft.UseTime != 0 || l.Hard.UseTime != 0
	}},
	{CapLifetimeBytes, "Lifetime", func(sa *SA) bool { return sa.Lifetime.Soft.Bytes != 0 || sa.Lifetime.Hard.Bytes != 0 }},
	{CapLifetimePackets, "Lifetime", func(sa *SA) bool {
		return sa.Lifetime.Soft.Packets != 0 || sa.Lifetime.Hard.Packets != 0
	}},
	{CapOffload, "Offload.Mode", func(sa *SA) bool { return sa.Offload.Mode != OffloadNone }},
	{CapSync, "Sync", func(sa *SA) bool { return sa.Sync != nil }},
}

// policyIDFeatures are policyFeatures an ID carries (mark, if_id), asked
// of the ID by value: a Policy made for an ID would escape through the
// table's function values, and every policy delete and lookup is checked.
var policyIDFeatures = []feature[PolicyID]{
	{CapMarks, "Mark", func(id PolicyID) bool { return !id.Mark.IsZero() }},
	{CapIfID, "IfID", func(id PolicyID) bool { return id.IfID != 0 }},
}

var policyFeatures = []feature[*Policy]{
	{CapTrap, "Action", func(p *Policy) bool { return p.Action == ActionTrap }},
	{CapPolicyPriority, "Priority", func(p *Policy) bool { return p.Priority != 0 }},
	{CapPolicyLifetime, "Lifetime", func(p *Policy) bool { return p.Lifetime != Lifetimes{} }},
	{CapMarks, "Mark", func(p *Policy) bool { return !p.Mark.IsZero() }},
	{CapIfID, "IfID", func(p *Policy) bool { return p.IfID != 0 }},
}

// missingFeature is the first of fs that x uses and c does not claim.
// The callers name x only then: a method value such as sa.ID.String
// would allocate on every check of every SA and policy installed.
func missingFeature[T any](c Capabilities, x T, fs []feature[T]) (feature[T], bool) {
	for _, f := range fs {
		if f.uses(x) && !c.Has(f.cap) {
			return f, true
		}
	}
	return feature[T]{}, false
}

func featureError[T any](c Capabilities, backend, op, obj string, f feature[T]) error {
	return &Error{Backend: backend, Op: op, Object: obj, Field: f.field, Err: ErrNotSupported,
		Detail: fmt.Sprintf("capability %s: %s", f.cap, c.Why(f.cap))}
}

// CheckSA is what the front end checks of an SA before a driver sees it:
// ValidateSA against the claimed algorithms, every feature the SA uses
// claimed, the replay window within MaxReplayWindow.
func (c Capabilities) CheckSA(backend, op string, sa *SA) error {
	if err := ValidateSA(backend, op, sa, &c.Algorithms); err != nil {
		return err
	}
	if f, ok := missingFeature(c, sa, saFeatures); ok {
		return featureError(c, backend, op, sa.ID.String(), f)
	}
	if c.MaxReplayWindow != 0 && sa.ReplayWindow > c.MaxReplayWindow {
		return Invalid(backend, op, sa.ID.String(), "ReplayWindow", "%d packets: the largest window is %d",
			sa.ReplayWindow, c.MaxReplayWindow)
	}
	return nil
}

// CheckPolicy is ValidatePolicy and every feature the policy uses claimed.
func (c Capabilities) CheckPolicy(backend, op string, p *Policy) error {
	if err := ValidatePolicy(backend, op, p); err != nil {
		return err
	}
	if f, ok := missingFeature(c, p, policyFeatures); ok {
		return featureError(c, backend, op, p.ID().String(), f)
	}
	return nil
}

// ValidateSPIRequest checks an SPI request and returns it with its range
// resolved: a request without one gets Options' SPIMin..SPIMax (IPComp:
// 0x100..0xffff, CPIs being 16-bit).
func ValidateSPIRequest(backend, op string, req SPIRequest, opts Options) (SPIRequest, error) {
	bad := func(field, format string, args ...any) (SPIRequest, error) {
		// Named only for an error: every child's SPI is asked for here.
		obj := fmt.Sprintf("%s %s->%s", req.Proto, addrText(req.Src), addrText(req.Dst))
		return req, Invalid(backend, op, obj, field, format, args...)
	}
	switch {
	case !req.Src.IsValid():
		return bad("Src", "missing source address")
	case !req.Dst.IsValid():
		return bad("Dst", "missing destination address")
	case req.Src.Is4() != req.Dst.Is4() || req.Src.Is4In6() || req.Dst.Is4In6():
		return bad("Src", "mixed address families (%s, %s)", req.Src, req.Dst)
	}
	switch req.Proto {
	case ProtoESP, ProtoAH:
		if req.Min == 0 && req.Max == 0 {
			req.Min, req.Max = opts.SPIMin, opts.SPIMax
		}
		if req.Min < 256 || req.Min > req.Max {
			return bad("Min", "SPI range %#x..%#x: want 256 <= Min <= Max", req.Min, req.Max)
		}
	case ProtoIPComp:
		if req.Min == 0 && req.Max == 0 {
			req.Min, req.Max = 0x100, 0xffff
		}
		if req.Max > 0xffff {
			return bad("Max", "IPComp CPIs are 16-bit, got max %#x", req.Max)
		}
		if req.Min == 0 || req.Min > req.Max {
			return bad("Min", "CPI range %#x..%#x: want 1 <= Min <= Max <= 0xffff", req.Min, req.Max)
		}
	default:
		return bad("Proto", "protocol %d: want esp, ah or comp", uint8(req.Proto))
	}
	return req, nil
}

func addrText(a netip.Addr) string {
	if !a.IsValid() {
		return "any"
	}
	return a.String()
}

// MigrationObject names a migration in errors.
func MigrationObject(m Migration) string {
	return fmt.Sprintf("reqid %d %s->%s to %s->%s", m.ReqID, m.Old.Local, m.Old.Remote, m.New.Local, m.New.Remote)
}

// ValidateMigration checks a migration: both address pairs of one family,
// non-zero encapsulation ports, and SAs that use the old addresses.
func ValidateMigration(backend, op string, m Migration) error {
	obj := MigrationObject(m)
	endpoints := func(e Endpoints) bool {
		return e.Local.IsValid() && e.Remote.IsValid() && e.Local.Is4() == e.Remote.Is4()
	}
	switch {
	case !endpoints(m.Old):
		return Invalid(backend, op, obj, "Old", "want two addresses of one family")
	case !endpoints(m.New):
		return Invalid(backend, op, obj, "New", "want two addresses of one family")
	case m.Encap != nil && (m.Encap.SrcPort == 0 || m.Encap.DstPort == 0):
		return Invalid(backend, op, obj, "Encap", "ports must be non-zero")
	}
	for i, id := range m.SAs {
		if err := ValidateSAID(backend, op, id); err != nil {
			return err
		}
		if id.Src != m.Old.Local && id.Src != m.Old.Remote {
			return Invalid(backend, op, obj, fmt.Sprintf("SAs[%d]", i), "SA %s does not use the old addresses", id)
		}
	}
	return nil
}

// MovedID is an SA id at a migration's new addresses.
func MovedID(m Migration, id SAID) SAID {
	if id.Src == m.Old.Local {
		id.Src, id.Dst = m.New.Local, m.New.Remote
	} else {
		id.Src, id.Dst = m.New.Remote, m.New.Local
	}
	return id
}

// CheckSAID is ValidateSAID and, for a marked SA, CapMarks claimed.
func (c Capabilities) CheckSAID(backend, op string, id SAID) error {
	if err := ValidateSAID(backend, op, id); err != nil {
		return err
	}
	if !id.Mark.IsZero() && !c.Has(CapMarks) {
		return &Error{Backend: backend, Op: op, Object: id.String(), Field: "ID.Mark", Err: ErrNotSupported,
			Detail: fmt.Sprintf("capability %s: %s", CapMarks, c.Why(CapMarks))}
	}
	return nil
}

// CheckPolicyID is ValidatePolicyID and the capabilities its mark and
// if_id need.
func (c Capabilities) CheckPolicyID(backend, op string, id PolicyID) error {
	if err := ValidatePolicyID(backend, op, id); err != nil {
		return err
	}
	if f, ok := missingFeature(c, id, policyIDFeatures); ok {
		return featureError(c, backend, op, id.String(), f)
	}
	return nil
}
