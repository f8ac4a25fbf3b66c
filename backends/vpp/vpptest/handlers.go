//go:build vpp

package vpptest

import (
	"math/bits"
	"net/netip"
	"os"
	"slices"
	"strings"

	"go.fd.io/govpp/api"
	"go.fd.io/govpp/binapi/fib_types"
	interfaces "go.fd.io/govpp/binapi/interface"
	"go.fd.io/govpp/binapi/interface_types"
	"go.fd.io/govpp/binapi/ip"
	"go.fd.io/govpp/binapi/ip_types"
	"go.fd.io/govpp/binapi/ipsec"
	"go.fd.io/govpp/binapi/ipsec_types"
	"go.fd.io/govpp/binapi/memclnt"
)

// lock takes the server lock and returns the state, or nil (with the lock
// released) when the server is stopping. A failure injected with FailNext
// comes back as rv.
func (c *conn) lock(name string) (st *state, rv api.VPPApiError) {
	c.s.mu.Lock()
	if c.s.st == nil {
		c.s.mu.Unlock()
		return nil, 0
	}
	if f, ok := c.s.fail[name]; ok {
		if f.n--; f.n <= 0 {
			delete(c.s.fail, name)
			return c.s.st, f.rv
		}
	}
	return c.s.st, 0
}

func (c *conn) unlock() { c.s.mu.Unlock() }

func (c *conn) sockclntCreate(ctx uint32, m api.Message) {
	c.s.mu.Lock()
	r := &memclnt.SockclntCreateReply{Index: c.index}
	for name, id := range c.s.table {
		r.MessageTable = append(r.MessageTable, memclnt.MessageTableEntry{Index: id, Name: name})
	}
	c.s.mu.Unlock()
	slices.SortFunc(r.MessageTable, func(a, b memclnt.MessageTableEntry) int { return int(a.Index) - int(b.Index) })
	r.Count = uint16(len(r.MessageTable))
	c.send(ctx, r)
}

func (c *conn) sockclntDelete(ctx uint32, m api.Message) {
	c.send(ctx, &memclnt.SockclntDeleteReply{})
}

func (c *conn) controlPing(ctx uint32, m api.Message) {
	c.send(ctx, &memclnt.ControlPingReply{ClientIndex: c.index, VpePID: uint32(os.Getpid())})
}

// cryptoKeyLen is the key length VPP's crypto layer accepts per cipher
// (vnet_crypto_key_add fails otherwise: KEY_LENGTH).
var cryptoKeyLen = map[ipsec_types.IpsecCryptoAlg]int{
	1: 16, 2: 24, 3: 32, 4: 16, 5: 24, 6: 32, 7: 16, 8: 24, 9: 32, 10: 8, 11: 24, 12: 32, 13: 16, 14: 24, 15: 32,
}

func checkTunnel(src, dst ip_types.Address) api.VPPApiError {
	s, d := addrOf(src), addrOf(dst)
	if !s.IsValid() || !d.IsValid() || s.Is4() != d.Is4() {
		return api.INVALID_PROTOCOL
	}
	if s == d {
		return api.SAME_SRC_DST
	}
	return 0
}

func (c *conn) sadEntryAdd(ctx uint32, m api.Message) {
	req := m.(*ipsec.IpsecSadEntryAddV2)
	reply := &ipsec.IpsecSadEntryAddV2Reply{StatIndex: ^uint32(0)}
	defer func() { c.send(ctx, reply) }()
	st, rv := c.lock(m.GetMessageName())
	if st == nil {
		return
	}
	defer c.unlock()
	e := req.Entry
	switch {
	case rv != 0:
	case st.sas[e.SadID] != nil:
		rv = api.ENTRY_ALREADY_EXISTS
	case e.Protocol != ipsec_types.IPSEC_API_PROTO_ESP && e.Protocol != ipsec_types.IPSEC_API_PROTO_AH:
		rv = api.INVALID_PROTOCOL
	case e.CryptoAlgorithm > 15 || e.IntegrityAlgorithm > 6:
		rv = api.INVALID_ALGORITHM
	case e.CryptoAlgorithm != 0 && int(e.CryptoKey.Length) != cryptoKeyLen[e.CryptoAlgorithm]:
		rv = api.KEY_LENGTH
	case e.Flags&ipsec_types.IPSEC_API_SAD_FLAG_IS_TUNNEL != 0:
		rv = checkTunnel(e.Tunnel.Src, e.Tunnel.Dst)
	}
	if rv != 0 {
		reply.Retval = int32(rv)
		return
	}
	// VPP rounds an anti-replay window above 64 up to a power of two
	// and uses 64 otherwise.
	w := e.AntiReplayWindowSize
	if e.Flags&ipsec_types.IPSEC_API_SAD_FLAG_USE_ANTI_REPLAY != 0 && w > 64 {
		w = 1 << bits.Len32(w-1)
	} else {
		w = 64
	}
	e.AntiReplayWindowSize = w
	if e.Flags&ipsec_types.IPSEC_API_SAD_FLAG_UDP_ENCAP != 0 {
		if e.UDPSrcPort == 0xffff {
			e.UDPSrcPort = 4500
		}
		if e.UDPDstPort == 0xffff {
			e.UDPDstPort = 4500
		}
	}
	if e.Flags&ipsec_types.IPSEC_API_SAD_FLAG_IS_TUNNEL != 0 && addrOf(e.Tunnel.Src).Is6() {
		e.Flags |= ipsec_types.IPSEC_API_SAD_FLAG_IS_TUNNEL_V6
	}
	s := &sa{e: e, statIndex: st.allocStat(), locks: 1}
	st.sas[e.SadID] = s
	if st.seg != nil {
		st.seg.zero(s.statIndex)
	}
	reply.StatIndex = s.statIndex
}

func (c *conn) sadEntryDel(ctx uint32, m api.Message) {
	req := m.(*ipsec.IpsecSadEntryDel)
	reply := &ipsec.IpsecSadEntryDelReply{}
	defer func() { c.send(ctx, reply) }()
	st, rv := c.lock(m.GetMessageName())
	if st == nil {
		return
	}
	defer c.unlock()
	s := st.sas[req.ID]
	switch {
	case rv != 0:
	case s == nil:
		rv = api.NO_SUCH_ENTRY
	default:
		st.unlock(s)
	}
	reply.Retval = int32(rv)
}

func (c *conn) sadEntryUpdate(ctx uint32, m api.Message) {
	req := m.(*ipsec.IpsecSadEntryUpdate)
	reply := &ipsec.IpsecSadEntryUpdateReply{}
	defer func() { c.send(ctx, reply) }()
	st, rv := c.lock(m.GetMessageName())
	if st == nil {
		return
	}
	defer c.unlock()
	s := st.sas[req.SadID]
	switch {
	case rv != 0:
	case req.IsTun && checkTunnel(req.Tunnel.Src, req.Tunnel.Dst) != 0:
		rv = checkTunnel(req.Tunnel.Src, req.Tunnel.Dst)
	case s == nil:
		rv = api.NO_SUCH_ENTRY
	default:
		if req.IsTun && s.e.Flags&ipsec_types.IPSEC_API_SAD_FLAG_IS_TUNNEL != 0 {
			s.e.Tunnel.Src, s.e.Tunnel.Dst = req.Tunnel.Src, req.Tunnel.Dst
		}
		if s.e.Flags&ipsec_types.IPSEC_API_SAD_FLAG_UDP_ENCAP != 0 {
			if req.UDPSrcPort != 0xffff {
				s.e.UDPSrcPort = req.UDPSrcPort
			}
			if req.UDPDstPort != 0xffff {
				s.e.UDPDstPort = req.UDPDstPort
			}
		}
	}
	reply.Retval = int32(rv)
}

// saDetails is what ipsec_sa_v5_dump sends for an SA. Like VPP on a
// little-endian host, it returns the salt byte-swapped (VPP stores the
// field unconverted at add and applies htonl when it dumps).
func (st *state) saDetails(s *sa) *ipsec.IpsecSaV5Details {
	d := &ipsec.IpsecSaV5Details{Entry: s.e, SwIfIndex: interface_types.InterfaceIndex(^uint32(0)), StatIndex: s.statIndex}
	d.Entry.Salt = bits.ReverseBytes32(s.e.Salt)
	if s.e.Flags&ipsec_types.IPSEC_API_SAD_FLAG_USE_ANTI_REPLAY == 0 {
		d.Entry.AntiReplayWindowSize = 0
	} else {
		d.ReplayWindow = ^uint64(0)
	}
	if s.e.Flags&ipsec_types.IPSEC_API_SAD_FLAG_IS_TUNNEL == 0 {
		d.Entry.Tunnel = s.e.Tunnel
		d.Entry.Tunnel.Src, d.Entry.Tunnel.Dst = ip_types.Address{}, ip_types.Address{}
	}
	if s.e.Flags&ipsec_types.IPSEC_API_SAD_FLAG_UDP_ENCAP == 0 {
		d.Entry.UDPSrcPort, d.Entry.UDPDstPort = 0, 0
	}
	if st.seg != nil {
		p, _ := st.seg.read(s.statIndex)
		if s.e.Flags&ipsec_types.IPSEC_API_SAD_FLAG_IS_INBOUND != 0 {
			d.LastSeqInbound = p
		} else {
			d.SeqOutbound = p
		}
	}
	return d
}

func (c *conn) saDump(ctx uint32, m api.Message) {
	st, _ := c.lock(m.GetMessageName())
	if st == nil {
		return
	}
	var out []*ipsec.IpsecSaV5Details
	for _, s := range st.sas {
		out = append(out, st.saDetails(s))
	}
	c.unlock()
	slices.SortFunc(out, func(a, b *ipsec.IpsecSaV5Details) int { return int(a.StatIndex) - int(b.StatIndex) })
	for _, d := range out {
		c.send(ctx, d)
	}
}

func (c *conn) spdAddDel(ctx uint32, m api.Message) {
	req := m.(*ipsec.IpsecSpdAddDel)
	reply := &ipsec.IpsecSpdAddDelReply{}
	defer func() { c.send(ctx, reply) }()
	st, rv := c.lock(m.GetMessageName())
	if st == nil {
		return
	}
	defer c.unlock()
	p := st.spdByID(req.SpdID)
	switch {
	case rv != 0:
	case req.IsAdd && p != nil:
		rv = api.ENTRY_ALREADY_EXISTS
	case !req.IsAdd && p == nil:
		rv = api.NO_SUCH_ENTRY
	case req.IsAdd:
		st.spds = append(st.spds, &spd{id: req.SpdID})
	default:
		for ifi, id := range st.ifSPD {
			if id == req.SpdID {
				delete(st.ifSPD, ifi)
			}
		}
		for _, e := range p.entries {
			if e.Policy == ipsec_types.IPSEC_API_SPD_ACTION_PROTECT {
				if s := st.sas[e.SaID]; s != nil {
					st.unlock(s)
				}
			}
		}
		st.spds = slices.DeleteFunc(st.spds, func(x *spd) bool { return x == p })
	}
	reply.Retval = int32(rv)
}

func (c *conn) interfaceAddDelSpd(ctx uint32, m api.Message) {
	req := m.(*ipsec.IpsecInterfaceAddDelSpd)
	reply := &ipsec.IpsecInterfaceAddDelSpdReply{}
	defer func() { c.send(ctx, reply) }()
	st, rv := c.lock(m.GetMessageName())
	if st == nil {
		return
	}
	defer c.unlock()
	idx := uint32(req.SwIfIndex)
	switch {
	case rv != 0:
	case st.ifByIndex(idx) == nil:
		rv = api.INVALID_SW_IF_INDEX
	case st.spdByID(req.SpdID) == nil:
		rv = api.SYSCALL_ERROR_1 // no such spd-id
	case req.IsAdd:
		if _, ok := st.ifSPD[idx]; ok {
			rv = api.SYSCALL_ERROR_2 // spd already assigned
		} else {
			st.ifSPD[idx] = req.SpdID
		}
	default:
		delete(st.ifSPD, idx)
	}
	reply.Retval = int32(rv)
}

func (c *conn) spdEntryAddDel(ctx uint32, m api.Message) {
	req := m.(*ipsec.IpsecSpdEntryAddDelV2)
	reply := &ipsec.IpsecSpdEntryAddDelV2Reply{StatIndex: ^uint32(0)}
	defer func() { c.send(ctx, reply) }()
	st, rv := c.lock(m.GetMessageName())
	if st == nil {
		return
	}
	defer c.unlock()
	e := req.Entry
	p := st.spdByID(e.SpdID)
	switch {
	case rv != 0:
	case e.Policy > ipsec_types.IPSEC_API_SPD_ACTION_PROTECT:
		rv = api.UNIMPLEMENTED
	case e.Policy == ipsec_types.IPSEC_API_SPD_ACTION_RESOLVE:
		rv = api.UNIMPLEMENTED // "unsupported action: 'resolve'"
	case p == nil:
		rv = api.SYSCALL_ERROR_1
	case req.IsAdd:
		if e.Policy == ipsec_types.IPSEC_API_SPD_ACTION_PROTECT {
			s := st.sas[e.SaID]
			if s == nil {
				rv = api.SYSCALL_ERROR_1
				break
			}
			s.locks++
		}
		// Higher priority first; a new entry goes before equal ones.
		i := slices.IndexFunc(p.entries, func(x ipsec_types.IpsecSpdEntryV2) bool { return x.Priority <= e.Priority })
		if i < 0 {
			i = len(p.entries)
		}
		p.entries = slices.Insert(p.entries, i, e)
		reply.StatIndex = uint32(i)
	default:
		// VPP removes the first equal entry and answers 0 when none is.
		if i := slices.Index(p.entries, e); i >= 0 {
			p.entries = slices.Delete(p.entries, i, i+1)
			if e.Policy == ipsec_types.IPSEC_API_SPD_ACTION_PROTECT {
				if s := st.sas[e.SaID]; s != nil {
					st.unlock(s)
				}
			}
		}
	}
	reply.Retval = int32(rv)
}

func (c *conn) spdDump(ctx uint32, m api.Message) {
	req := m.(*ipsec.IpsecSpdDump)
	st, _ := c.lock(m.GetMessageName())
	if st == nil {
		return
	}
	var out []*ipsec.IpsecSpdDetails
	if p := st.spdByID(req.SpdID); p != nil {
		// VPP lists outbound entries, then inbound, each by priority.
		for _, outbound := range []bool{true, false} {
			for _, e := range p.entries {
				if e.IsOutbound == outbound && (req.SaID == ^uint32(0) || req.SaID == e.SaID) {
					out = append(out, &ipsec.IpsecSpdDetails{Entry: ipsec_types.IpsecSpdEntry(e)})
				}
			}
		}
	}
	c.unlock()
	for _, d := range out {
		c.send(ctx, d)
	}
}

func (c *conn) spdsDump(ctx uint32, m api.Message) {
	st, _ := c.lock(m.GetMessageName())
	if st == nil {
		return
	}
	var out []*ipsec.IpsecSpdsDetails
	for _, p := range st.spds {
		out = append(out, &ipsec.IpsecSpdsDetails{SpdID: p.id, Npolicies: uint32(len(p.entries))})
	}
	c.unlock()
	for _, d := range out {
		c.send(ctx, d)
	}
}

func (c *conn) spdInterfaceDump(ctx uint32, m api.Message) {
	req := m.(*ipsec.IpsecSpdInterfaceDump)
	st, _ := c.lock(m.GetMessageName())
	if st == nil {
		return
	}
	var out []*ipsec.IpsecSpdInterfaceDetails
	for ifi, id := range st.ifSPD {
		idx := uint32(slices.IndexFunc(st.spds, func(p *spd) bool { return p.id == id }))
		if req.SpdIndexValid == 0 || req.SpdIndex == idx {
			out = append(out, &ipsec.IpsecSpdInterfaceDetails{SpdIndex: idx, SwIfIndex: interface_types.InterfaceIndex(ifi)})
		}
	}
	c.unlock()
	for _, d := range out {
		c.send(ctx, d)
	}
}

func ifFlags(up bool) interface_types.IfStatusFlags {
	if up {
		return interface_types.IF_STATUS_API_FLAG_ADMIN_UP | interface_types.IF_STATUS_API_FLAG_LINK_UP
	}
	return 0
}

func (c *conn) swInterfaceDump(ctx uint32, m api.Message) {
	req := m.(*interfaces.SwInterfaceDump)
	st, _ := c.lock(m.GetMessageName())
	if st == nil {
		return
	}
	var out []*interfaces.SwInterfaceDetails
	for _, i := range st.ifs {
		if req.SwIfIndex != ^interface_types.InterfaceIndex(0) && uint32(req.SwIfIndex) != i.index {
			continue
		}
		if req.NameFilterValid && !strings.Contains(strings.ToLower(i.name), strings.ToLower(req.NameFilter)) {
			continue
		}
		out = append(out, &interfaces.SwInterfaceDetails{SwIfIndex: interface_types.InterfaceIndex(i.index),
			SupSwIfIndex: i.index, Flags: ifFlags(i.up), InterfaceName: i.name, InterfaceDevType: "vpptest",
			Mtu: []uint32{1500, 0, 0, 0}, LinkMtu: 1500})
	}
	c.unlock()
	for _, d := range out {
		c.send(ctx, d)
	}
}

func (c *conn) wantInterfaceEvents(ctx uint32, m api.Message) {
	req := m.(*interfaces.WantInterfaceEvents)
	st, rv := c.lock(m.GetMessageName())
	if st == nil {
		return
	}
	if rv == 0 {
		if req.EnableDisable != 0 {
			st.eventClients[c] = true
		} else {
			delete(st.eventClients, c)
		}
	}
	c.unlock()
	c.send(ctx, &interfaces.WantInterfaceEventsReply{Retval: int32(rv)})
}

func (c *conn) addDelAddress(ctx uint32, m api.Message) {
	req := m.(*interfaces.SwInterfaceAddDelAddress)
	reply := &interfaces.SwInterfaceAddDelAddressReply{}
	defer func() { c.send(ctx, reply) }()
	st, rv := c.lock(m.GetMessageName())
	if st == nil {
		return
	}
	defer c.unlock()
	i := st.ifByIndex(uint32(req.SwIfIndex))
	a := addrOf(req.Prefix.Address)
	switch {
	case rv != 0:
	case i == nil:
		rv = api.INVALID_SW_IF_INDEX
	case !a.IsValid() || int(req.Prefix.Len) > a.BitLen():
		rv = api.INVALID_VALUE
	}
	if rv != 0 {
		reply.Retval = int32(rv)
		return
	}
	p := netip.PrefixFrom(a, int(req.Prefix.Len))
	has := slices.Contains(i.addrs, p)
	switch {
	case req.IsAdd && has:
		rv = api.ADDRESS_IN_USE
	case req.IsAdd:
		i.addrs = append(i.addrs, p)
	case !has:
		rv = api.ADDRESS_NOT_FOUND_FOR_INTERFACE
	default:
		i.addrs = slices.DeleteFunc(i.addrs, func(x netip.Prefix) bool { return x == p })
	}
	reply.Retval = int32(rv)
}

func (c *conn) ipAddressDump(ctx uint32, m api.Message) {
	req := m.(*ip.IPAddressDump)
	st, _ := c.lock(m.GetMessageName())
	if st == nil {
		return
	}
	var out []*ip.IPAddressDetails
	if i := st.ifByIndex(uint32(req.SwIfIndex)); i != nil {
		for _, p := range i.addrs {
			if p.Addr().Is6() == req.IsIPv6 {
				out = append(out, &ip.IPAddressDetails{SwIfIndex: req.SwIfIndex,
					Prefix: ip_types.AddressWithPrefix{Address: toAddr(p.Addr()), Len: uint8(p.Bits())}})
			}
		}
	}
	c.unlock()
	for _, d := range out {
		c.send(ctx, d)
	}
}

func (c *conn) ipRouteLookup(ctx uint32, m api.Message) {
	req := m.(*ip.IPRouteLookup)
	reply := &ip.IPRouteLookupReply{}
	defer func() { c.send(ctx, reply) }()
	st, rv := c.lock(m.GetMessageName())
	if st == nil {
		return
	}
	defer c.unlock()
	if rv != 0 {
		reply.Retval = int32(rv)
		return
	}
	dst := addrOf(req.Prefix.Address)
	r, ok := st.lookup(dst)
	if !ok {
		// VPP's table 0 has a default route that drops.
		reply.Route = ip.IPRoute{Prefix: ip_types.Prefix{Address: toAddr(netip.IPv4Unspecified())}, NPaths: 1,
			Paths: []fib_types.FibPath{{SwIfIndex: ^uint32(0), Type: fib_types.FIB_API_PATH_TYPE_DROP}}}
		if dst.Is6() {
			reply.Route.Prefix.Address = toAddr(netip.IPv6Unspecified())
		}
		return
	}
	path := fib_types.FibPath{SwIfIndex: r.ifIndex, Type: fib_types.FIB_API_PATH_TYPE_NORMAL}
	if r.gateway.IsValid() {
		if r.gateway.Is4() {
			path.Nh.Address.SetIP4(r.gateway.As4())
		} else {
			path.Nh.Address.SetIP6(r.gateway.As16())
		}
	}
	reply.Route = ip.IPRoute{Prefix: ip_types.Prefix{Address: toAddr(r.prefix.Addr()), Len: uint8(r.prefix.Bits())},
		NPaths: 1, Paths: []fib_types.FibPath{path}}
}
