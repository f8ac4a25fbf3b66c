//go:build vpp

package vpptest

import (
	"fmt"
	"net/netip"
	"slices"

	"go.fd.io/govpp/binapi/ip_types"
	"go.fd.io/govpp/binapi/ipsec_types"
)

// state is what a running VPP holds, for the parts the fake models.
type state struct {
	sas          map[uint32]*sa // by sad_id
	statUsed     []bool         // the SA pool: a stat_index is the SA's pool index
	spds         []*spd         // in creation order: the index is VPP's spd_index
	ifSPD        map[uint32]uint32
	ifs          []*iface
	routes       []route
	seg          *statSegment
	eventClients map[*conn]bool
}

type sa struct {
	e         ipsec_types.IpsecSadEntryV4 // as added, window made effective
	statIndex uint32
	locks     int // VPP's fib-node locks: the add, and one per PROTECT entry
}

type spd struct {
	id      uint32
	entries []ipsec_types.IpsecSpdEntryV2
}

type iface struct {
	index uint32
	name  string
	up    bool
	addrs []netip.Prefix
}

type route struct {
	prefix  netip.Prefix
	ifIndex uint32
	gateway netip.Addr
}

func newState(cfg Config) (*state, error) {
	st := &state{sas: map[uint32]*sa{}, ifSPD: map[uint32]uint32{}, eventClients: map[*conn]bool{}}
	st.ifs = append(st.ifs, &iface{index: 0, name: "local0"})
	for i, ic := range cfg.Interfaces {
		st.ifs = append(st.ifs, &iface{index: uint32(i + 1), name: ic.Name, up: ic.Up, addrs: slices.Clone(ic.Addrs)})
	}
	for _, r := range cfg.Routes {
		i := st.ifByName(r.IfName)
		if i == nil {
			return nil, fmt.Errorf("vpptest: route %s via unknown interface %q", r.Prefix, r.IfName)
		}
		st.routes = append(st.routes, route{prefix: r.Prefix.Masked(), ifIndex: i.index, gateway: r.Gateway})
	}
	return st, nil
}

func (st *state) ifByName(name string) *iface {
	for _, i := range st.ifs {
		if i.name == name {
			return i
		}
	}
	return nil
}

func (st *state) ifByIndex(idx uint32) *iface {
	for _, i := range st.ifs {
		if i.index == idx {
			return i
		}
	}
	return nil
}

func (st *state) spdByID(id uint32) *spd {
	for _, s := range st.spds {
		if s.id == id {
			return s
		}
	}
	return nil
}

// allocStat takes the lowest free pool index, as VPP's pool_get does.
func (st *state) allocStat() uint32 {
	for i, used := range st.statUsed {
		if !used {
			st.statUsed[i] = true
			return uint32(i)
		}
	}
	st.statUsed = append(st.statUsed, true)
	return uint32(len(st.statUsed) - 1)
}

// unlock drops one lock on an SA; the last one deletes it and frees its
// pool index.
func (st *state) unlock(s *sa) {
	s.locks--
	if s.locks > 0 {
		return
	}
	delete(st.sas, s.e.SadID)
	st.statUsed[s.statIndex] = false
}

func (st *state) saByIndex(idx uint32) *sa {
	for _, s := range st.sas {
		if s.statIndex == idx {
			return s
		}
	}
	return nil
}

func addrOf(a ip_types.Address) netip.Addr {
	switch a.Af {
	case ip_types.ADDRESS_IP4:
		return netip.AddrFrom4(a.Un.GetIP4())
	case ip_types.ADDRESS_IP6:
		return netip.AddrFrom16(a.Un.GetIP6())
	}
	return netip.Addr{}
}

func toAddr(a netip.Addr) ip_types.Address {
	var out ip_types.Address
	if a.Is4() {
		out.Af = ip_types.ADDRESS_IP4
		out.Un.SetIP4(a.As4())
	} else {
		out.Af = ip_types.ADDRESS_IP6
		out.Un.SetIP6(a.As16())
	}
	return out
}

// lookup is the FIB lookup of table 0: the longest matching configured
// route or connected prefix.
func (st *state) lookup(dst netip.Addr) (route, bool) {
	best, found := route{}, false
	consider := func(r route) {
		if r.prefix.Contains(dst) && (!found || r.prefix.Bits() > best.prefix.Bits()) {
			best, found = r, true
		}
	}
	for _, r := range st.routes {
		consider(r)
	}
	for _, i := range st.ifs {
		for _, a := range i.addrs {
			consider(route{prefix: a.Masked(), ifIndex: i.index})
		}
	}
	return best, found
}

// outboundMatch is VPP's outbound SPD lookup (ipsec_output_policy_match):
// entries in priority order, protocol 255 for any, local = source,
// remote = destination, ports checked only for TCP, UDP and SCTP.
func (p *spd) outboundMatch(src, dst netip.Addr, proto uint8, sport, dport uint16) (ipsec_types.IpsecSpdEntryV2, bool) {
	for _, e := range p.entries {
		if !e.IsOutbound || addrOf(e.LocalAddressStart).Is4() != src.Is4() {
			continue
		}
		if e.Protocol != 255 && e.Protocol != proto {
			continue
		}
		if !inRange(dst, e.RemoteAddressStart, e.RemoteAddressStop) || !inRange(src, e.LocalAddressStart, e.LocalAddressStop) {
			continue
		}
		if proto == 6 || proto == 17 || proto == 132 {
			if sport < e.LocalPortStart || sport > e.LocalPortStop || dport < e.RemotePortStart || dport > e.RemotePortStop {
				continue
			}
		}
		return e, true
	}
	return ipsec_types.IpsecSpdEntryV2{}, false
}

func inRange(a netip.Addr, lo, hi ip_types.Address) bool {
	l, h := addrOf(lo), addrOf(hi)
	return l.Is4() == a.Is4() && a.Compare(l) >= 0 && a.Compare(h) <= 0
}
