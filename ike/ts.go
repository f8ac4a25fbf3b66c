package ike

import (
	"fmt"
	"net/netip"

	"github.com/keyplane/keyplane/ike/config"
	"github.com/keyplane/keyplane/ike/message"
	"github.com/keyplane/keyplane/kernelops"
)

// tsRange is an IP traffic selector (RFC 7296 §3.13.1): an address
// range, a protocol (0 any) and a port range.
type tsRange struct {
	proto        uint8
	sport, eport uint16
	start, end   netip.Addr
}

func (r tsRange) String() string {
	s := r.start.String() + "-" + r.end.String()
	if p, ok := r.prefix(); ok {
		s = p.String()
	}
	if r.proto != 0 || r.sport != 0 || r.eport != 0xffff {
		s += fmt.Sprintf("[%d/%d-%d]", r.proto, r.sport, r.eport)
	}
	return s
}

func (r tsRange) prefix() (netip.Prefix, bool) {
	ps := r.prefixes()
	if len(ps) == 1 {
		return ps[0], true
	}
	return netip.Prefix{}, false
}

func fromMessageTS(t message.TrafficSelector) (tsRange, bool) {
	if t.Raw != nil || !t.Start.IsValid() || !t.End.IsValid() || t.Start.Is4() != t.End.Is4() ||
		t.End.Less(t.Start) || t.EndPort < t.StartPort {
		return tsRange{}, false
	}
	return tsRange{proto: t.IPProto, sport: t.StartPort, eport: t.EndPort, start: t.Start, end: t.End}, true
}

func (r tsRange) message() message.TrafficSelector {
	typ := message.TSIPv4AddrRange
	if r.start.Is6() {
		typ = message.TSIPv6AddrRange
	}
	return message.TrafficSelector{Type: typ, IPProto: r.proto, StartPort: r.sport, EndPort: r.eport, Start: r.start, End: r.end}
}

// fromConfigTS resolves a configured selector; dynamic becomes addr.
func fromConfigTS(t config.TS, addr netip.Addr) tsRange {
	p := t.Prefix
	if t.Dynamic {
		p = netip.PrefixFrom(addr, addr.BitLen())
	}
	m := message.SelectorFromPrefix(p, t.Proto)
	r := tsRange{proto: t.Proto, sport: 0, eport: 0xffff, start: m.Start, end: m.End}
	if t.Port != 0 {
		r.sport, r.eport = t.Port, t.Port
	}
	return r
}

// hostRange is one address with a protocol and, if not 0, one port: a
// side of the packet that raised an acquire.
func hostRange(a netip.Addr, proto uint8, port uint16) tsRange {
	r := tsRange{proto: proto, start: a, end: a, eport: 0xffff}
	if port != 0 {
		r.sport, r.eport = port, port
	}
	return r
}

func maxAddr(a, b netip.Addr) netip.Addr {
	if a.Less(b) {
		return b
	}
	return a
}

func minAddr(a, b netip.Addr) netip.Addr {
	if a.Less(b) {
		return a
	}
	return b
}

// intersect narrows a by b (RFC 7296 §2.9).
func intersect(a, b tsRange) (tsRange, bool) {
	if a.start.Is4() != b.start.Is4() {
		return tsRange{}, false
	}
	var r tsRange
	switch {
	case a.proto == b.proto, b.proto == 0:
		r.proto = a.proto
	case a.proto == 0:
		r.proto = b.proto
	default:
		return tsRange{}, false
	}
	r.sport, r.eport = max(a.sport, b.sport), min(a.eport, b.eport)
	if r.sport > r.eport {
		return tsRange{}, false
	}
	r.start, r.end = maxAddr(a.start, b.start), minAddr(a.end, b.end)
	if r.end.Less(r.start) {
		return tsRange{}, false
	}
	return r, true
}

// within reports whether a lies inside b.
func (a tsRange) within(b tsRange) bool {
	r, ok := intersect(a, b)
	return ok && r == a
}

// narrow intersects every selector the peer proposed with every one of
// ours, keeping the non-empty results the dataplane can express.
func narrow(theirs, ours []tsRange) []tsRange {
	var out []tsRange
	for _, t := range theirs {
		for _, o := range ours {
			if r, ok := intersect(t, o); ok && r.expressible() && !containsRange(out, r) {
				out = append(out, r)
			}
		}
	}
	// A selector inside another adds nothing (the initiator's first,
	// packet-specific selector of RFC 7296 §2.9 is usually inside the
	// wide one). Most children have one selector a side: out as it is.
	inner := func(i int) bool {
		for j, o := range out {
			if i != j && out[i] != o && out[i].within(o) {
				return true
			}
		}
		return false
	}
	some := false
	for i := range out {
		some = some || inner(i)
	}
	if !some {
		return out
	}
	var kept []tsRange
	for i, r := range out {
		if !inner(i) {
			kept = append(kept, r)
		}
	}
	return kept
}

func containsRange(rs []tsRange, r tsRange) bool {
	for _, x := range rs {
		if x == r {
			return true
		}
	}
	return false
}

// expressible: kernel selectors carry one port or any.
func (r tsRange) expressible() bool {
	_, ok := r.port()
	return ok
}

func (r tsRange) port() (uint16, bool) {
	switch {
	case r.sport == 0 && r.eport == 0xffff:
		return 0, true
	case r.sport == r.eport:
		return r.sport, true
	}
	return 0, false
}

// prefixes splits the address range into the fewest prefixes.
func (r tsRange) prefixes() []netip.Prefix {
	var out []netip.Prefix
	cur := r.start
	for i := 0; i < 256; i++ {
		bits := cur.BitLen()
		// The largest prefix starting at cur that stays within end.
		best := netip.PrefixFrom(cur, bits)
		for b := bits - 1; b >= 0; b-- {
			p := netip.PrefixFrom(cur, b)
			if p.Masked().Addr() != cur {
				break
			}
			if last := lastAddr(p); r.end.Less(last) {
				break
			}
			best = p
		}
		out = append(out, best)
		last := lastAddr(best)
		if last == r.end {
			return out
		}
		cur = last.Next()
		if !cur.IsValid() {
			return out
		}
	}
	return out
}

func lastAddr(p netip.Prefix) netip.Addr {
	m := message.SelectorFromPrefix(p, 0)
	return m.End
}

// selectors returns the kernel selectors of a child's negotiated traffic
// selectors, from the local side's view (Src local, Dst remote).
func selectors(local, remote []tsRange) []kernelops.Selector {
	var out []kernelops.Selector
	for _, l := range local {
		for _, r := range remote {
			if l.start.Is4() != r.start.Is4() {
				continue
			}
			proto := l.proto
			if proto == 0 {
				proto = r.proto
			} else if r.proto != 0 && r.proto != proto {
				continue
			}
			lp, ok1 := l.port()
			rp, ok2 := r.port()
			if !ok1 || !ok2 {
				continue
			}
			for _, lpfx := range l.prefixes() {
				for _, rpfx := range r.prefixes() {
					out = append(out, kernelops.Selector{Src: lpfx, Dst: rpfx, Proto: proto, SrcPort: lp, DstPort: rp})
				}
			}
		}
	}
	return out
}

func rangesString(rs []tsRange) string {
	s := ""
	for i, r := range rs {
		if i > 0 {
			s += ","
		}
		s += r.String()
	}
	return s
}

func messageTS(rs []tsRange, responder bool) *message.TS {
	p := &message.TS{Responder: responder}
	for _, r := range rs {
		p.Selectors = append(p.Selectors, r.message())
	}
	return p
}

func rangesOf(p *message.TS) []tsRange {
	if p == nil {
		return nil
	}
	var out []tsRange
	for _, s := range p.Selectors {
		if r, ok := fromMessageTS(s); ok {
			out = append(out, r)
		}
	}
	return out
}
