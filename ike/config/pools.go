package config

import (
	"fmt"
	"math/big"
	"net/netip"
	"slices"
	"strings"
)

// Pool is a pools section: virtual IP addresses the responder leases to
// peers that ask for one in IKE_AUTH (swanctl's pools; RFC 7296 §3.15).
type Pool struct {
	Name string
	Line int
	// Addrs is the setting as written (a prefix or a range A-B);
	// First and Last bound the addresses leased, both included. Of a
	// prefix, the network address is skipped (and, for IPv4 shorter
	// than /31, the broadcast address) unless the prefix's address is
	// not the network's: then leasing starts there, as charon does.
	Addrs       string
	First, Last netip.Addr
	// DNS are the servers sent with a lease (INTERNAL_IP4_DNS,
	// INTERNAL_IP6_DNS) to a peer that asks for them.
	DNS []netip.Addr
}

// MaxPoolSize bounds the addresses a pool leases: a larger prefix or
// range leases its first MaxPoolSize addresses, so the lease table (one
// entry per identity ever served) stays bounded.
const MaxPoolSize = 1 << 16

// Size is the number of addresses the pool leases (at most MaxPoolSize).
func (p *Pool) Size() int {
	if !p.First.IsValid() || !p.Last.IsValid() || p.Last.Less(p.First) {
		return 0
	}
	d := new(big.Int).Sub(new(big.Int).SetBytes(p.Last.AsSlice()), new(big.Int).SetBytes(p.First.AsSlice()))
	d.Add(d, big.NewInt(1))
	if !d.IsInt64() || d.Int64() > MaxPoolSize {
		return MaxPoolSize
	}
	return int(d.Int64())
}

// Contains reports whether a is one of the pool's addresses.
func (p *Pool) Contains(a netip.Addr) bool {
	return a.BitLen() == p.First.BitLen() && !a.Less(p.First) && !p.Last.Less(a)
}

// Pool returns the pool of that name, or nil.
func (c *Config) Pool(name string) *Pool {
	for _, p := range c.Pools {
		if p.Name == name {
			return p
		}
	}
	return nil
}

// parsePoolAddrs reads a pool's addrs: a prefix or a range A-B of one
// family.
func parsePoolAddrs(v string) (first, last netip.Addr, err error) {
	v = strings.TrimSpace(v)
	if a, b, ok := strings.Cut(v, "-"); ok {
		first, err1 := netip.ParseAddr(strings.TrimSpace(a))
		last, err2 := netip.ParseAddr(strings.TrimSpace(b))
		switch {
		case err1 != nil || err2 != nil || first.Zone() != "" || last.Zone() != "":
			return first, last, fmt.Errorf("%q: want a prefix (10.3.0.0/24) or a range of two addresses (10.3.0.1-10.3.0.100)", v)
		case first.Unmap().Is4() != last.Unmap().Is4():
			return first, last, fmt.Errorf("%q: the range's ends are of two address families", v)
		case last.Unmap().Less(first.Unmap()):
			return first, last, fmt.Errorf("%q: the range ends before it starts", v)
		}
		return first.Unmap(), last.Unmap(), nil
	}
	p, err := netip.ParsePrefix(v)
	if err != nil || p.Addr().Zone() != "" {
		return first, last, fmt.Errorf("%q: want a prefix (10.3.0.0/24) or a range of two addresses (10.3.0.1-10.3.0.100)", v)
	}
	p = netip.PrefixFrom(p.Addr().Unmap(), p.Bits()-(p.Addr().BitLen()-p.Addr().Unmap().BitLen()))
	if !p.IsValid() {
		return first, last, fmt.Errorf("%q: not a valid prefix", v)
	}
	net := p.Masked()
	first, last = p.Addr(), lastOf(net)
	if p.IsSingleIP() {
		return first, last, nil
	}
	if first == net.Addr() {
		first = first.Next()
	}
	if first.Is4() && p.Bits() < 31 {
		last = last.Prev()
	}
	if last.Less(first) {
		return first, last, fmt.Errorf("%q leaves no address to lease", v)
	}
	return first, last, nil
}

// lastOf is the last address of a masked prefix.
func lastOf(p netip.Prefix) netip.Addr {
	b := p.Addr().AsSlice()
	for i := p.Bits(); i < len(b)*8; i++ {
		b[i/8] |= 0x80 >> (i % 8)
	}
	a, _ := netip.AddrFromSlice(b)
	return a
}

var poolKeys = []string{"addrs", "dns"}

// poolsSection reads pools { NAME { addrs = ... dns = ... } }.
func (b *builder) poolsSection(s *section) []*Pool {
	var out []*Pool
	for _, kv := range s.settings {
		b.fail(kv.line, "pools."+kv.key, "pools holds sections (name { addrs = ... }), not settings")
	}
	for _, ps := range s.sections {
		p := &Pool{Name: ps.name, Line: ps.line}
		b.known(ps, poolKeys, nil)
		for _, kv := range ps.settings {
			field := "pools." + ps.name + "." + kv.key
			b.at(kv, field)
			switch kv.key {
			case "addrs":
				p.Addrs = kv.value
				first, last, err := parsePoolAddrs(kv.value)
				if err != nil {
					b.fail(kv.line, field, "%v", err)
					continue
				}
				p.First, p.Last = first, last
			case "dns":
				for _, part := range strings.Split(kv.value, ",") {
					a, err := netip.ParseAddr(strings.TrimSpace(part))
					if err != nil || a.Zone() != "" || a.IsUnspecified() {
						b.fail(kv.line, field, "%q: want IPv4 or IPv6 addresses", strings.TrimSpace(part))
						break
					}
					p.DNS = append(p.DNS, a.Unmap())
				}
			}
		}
		out = append(out, p)
	}
	return out
}

// vipsSetting reads a connection's vips: addresses to ask the peer for,
// 0.0.0.0 and :: for any of the family.
func (b *builder) vipsSetting(kv setting) []netip.Addr {
	var out []netip.Addr
	for _, part := range strings.Split(kv.value, ",") {
		part = strings.TrimSpace(part)
		a, err := netip.ParseAddr(part)
		if err != nil || a.Zone() != "" {
			b.fail(kv.line, "vips", "%q: want IPv4 or IPv6 addresses, 0.0.0.0 or :: for any", part)
			return nil
		}
		out = append(out, a.Unmap())
	}
	return out
}

// validatePools checks the pools and the connections' use of them and of
// vips.
func (c *Config) validatePools(add func(line int, conn, child, field, msg string)) {
	seen := map[string]bool{}
	for i, p := range c.Pools {
		if p == nil {
			add(0, "", "", "pools", "a nil pool")
			continue
		}
		field := "pools." + p.Name
		switch {
		case p.Name == "":
			add(p.Line, "", "", "pools", "a pool without a name")
		case seen[p.Name]:
			add(p.Line, "", "", field, "the pool name is used twice")
		}
		seen[p.Name] = true
		if !p.First.IsValid() || !p.Last.IsValid() || p.First.Is4() != p.Last.Is4() || p.Last.Less(p.First) {
			what := "missing"
			if p.Addrs != "" {
				what = fmt.Sprintf("%q leaves First and Last unset or reversed", p.Addrs)
			}
			add(p.Line, "", "", field+".addrs", what+": want a prefix (10.3.0.0/24) or a range (10.3.0.1-10.3.0.100)")
			continue
		}
		for _, q := range c.Pools[:i] {
			if q != nil && q.First.IsValid() && q.Last.IsValid() && q.First.BitLen() == p.First.BitLen() &&
				!p.Last.Less(q.First) && !q.Last.Less(p.First) {
				add(p.Line, "", "", field+".addrs", fmt.Sprintf("%s overlaps pool %s (%s): pools must not overlap", p.Addrs, q.Name, q.Addrs))
			}
		}
	}
	for _, conn := range c.Connections {
		if conn == nil {
			continue
		}
		for _, name := range conn.Pools {
			if c.Pool(name) == nil {
				names := make([]string, 0, len(c.Pools))
				for _, p := range c.Pools {
					if p != nil {
						names = append(names, p.Name)
					}
				}
				known := "none are defined"
				if len(names) > 0 {
					known = "defined: " + strings.Join(names, ", ")
				}
				add(conn.Line, conn.Name, "", "pools", fmt.Sprintf("no pool named %q (%s)", name, known))
			}
		}
		fams := map[bool]bool{}
		for _, v := range conn.VIPs {
			if !v.IsValid() {
				add(conn.Line, conn.Name, "", "vips", "an invalid address")
				continue
			}
			if fams[v.Is4()] {
				add(conn.Line, conn.Name, "", "vips", fmt.Sprintf("%s: one virtual IP per address family", v))
			}
			fams[v.Is4()] = true
		}
		if len(conn.VIPs) == 0 {
			continue
		}
		for _, ch := range conn.Children {
			if ch == nil || !slices.ContainsFunc(ch.LocalTS, func(t TS) bool { return t.Dynamic }) {
				continue
			}
			for _, x := range []struct {
				field string
				trap  bool
			}{{"start_action", ch.StartAction == StartTrap}, {"dpd_action", ch.DPDAction == DPDTrap}, {"close_action", ch.CloseAction == CloseTrap}} {
				if x.trap {
					add(ch.Line, conn.Name, ch.Name, x.field, "trap with vips and a dynamic local_ts: the virtual IP the trap policies would need is not known before the IKE SA (use start or restart, or a local_ts of the pool's prefix)")
				}
			}
		}
	}
}

// samePools compares the pools settings.
func samePools(a, b []*Pool) bool {
	return slices.EqualFunc(a, b, func(x, y *Pool) bool {
		return x.Name == y.Name && x.First == y.First && x.Last == y.Last && slices.Equal(x.DNS, y.DNS)
	})
}
