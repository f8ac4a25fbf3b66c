package pfkey

import (
	"fmt"
	"math"
	"net/netip"
	"time"

	"github.com/keyplane/keyplane/backends/pfkey/sadb"
	"github.com/keyplane/keyplane/iana"
	"github.com/keyplane/keyplane/kernelops"
)

// xlate turns kernelops values into PF_KEY messages and back. It holds
// no socket: everything here is testable on any host, for any dialect.
type xlate struct {
	os *osInfo
	d  *sadb.Dialect
	rq reqidMap
}

func satypeOf(p kernelops.Proto) sadb.SAType {
	switch p {
	case kernelops.ProtoESP:
		return sadb.SATypeESP
	case kernelops.ProtoAH:
		return sadb.SATypeAH
	case kernelops.ProtoIPComp:
		return sadb.SATypeIPComp
	}
	return sadb.SATypeUnspec
}

func protoOf(t sadb.SAType) (kernelops.Proto, bool) {
	switch t {
	case sadb.SATypeESP:
		return kernelops.ProtoESP, true
	case sadb.SATypeAH:
		return kernelops.ProtoAH, true
	case sadb.SATypeIPComp:
		return kernelops.ProtoIPComp, true
	}
	return 0, false
}

func modeToSADB(m kernelops.Mode) uint8 {
	if m == kernelops.ModeTunnel {
		return sadb.ModeTunnel
	}
	return sadb.ModeTransport
}

func modeFromSADB(m uint8) kernelops.Mode {
	if m == sadb.ModeTunnel {
		return kernelops.ModeTunnel
	}
	return kernelops.ModeTransport
}

// calgDeflate is SADB_X_CALG_DEFLATE, the same on every kernel: the only
// IPcomp algorithm IKE daemons negotiate in practice.
const calgDeflate = 2

// secs converts a limit to the kernel's whole seconds, rounding up so a
// short limit never becomes 0 (no limit).
func secs(d time.Duration) uint64 {
	if d <= 0 {
		return 0
	}
	return uint64((d + time.Second - 1) / time.Second)
}

func dur(s uint64) time.Duration {
	if s > uint64(math.MaxInt64/int64(time.Second)) {
		return math.MaxInt64
	}
	return time.Duration(s) * time.Second
}

// saAddrProto is what sadb_address_proto says on SA endpoints: Linux
// writes 0, KAME's setkey writes IPSEC_ULPROTO_ANY.
func (x *xlate) saAddrProto() uint8 {
	if x.d.Sockaddr == sadb.SockaddrBSD {
		return sadb.ProtoAny
	}
	return 0
}

func (x *xlate) endpoint(t sadb.ExtType, a netip.Addr) *sadb.Address {
	return &sadb.Address{T: t, Proto: x.saAddrProto(), PrefixLen: uint8(a.BitLen()), Addr: netip.AddrPortFrom(a, 0)}
}

// checkSA refuses what this kernel's PF_KEY dialect cannot express,
// naming the field, before anything reaches it. The front end has run
// ValidateSA and refused every unclaimed capability.
func (x *xlate) checkSA(sa *kernelops.SA) *kernelops.Error {
	obj := sa.ID.String()
	ns := func(field, format string, args ...any) *kernelops.Error {
		return unsupported(obj, field, format, args...)
	}
	// Marks, if_id, direction and offload are never claimed: the front
	// end refuses them before translation.
	switch {
	case sa.ESN && x.d.FlagESN == 0:
		return ns("ESN", "%s", x.os.notes[kernelops.CapESN])
	case sa.Encap != nil && x.d.ExtNATTType == 0:
		return ns("Encap", "%s", x.os.notes[kernelops.CapUDPEncap])
	case sa.Encap != nil && sa.Encap.OrigAddr.IsValid():
		return ns("Encap.OrigAddr", "the NAT-OA of PF_KEY is not implemented (Linux af_key ignores SADB_X_EXT_NAT_T_OA)")
	case !sa.Selector.IsZero():
		return ns("Selector", "PF_KEY cannot set an SA's selector (ADDRESS_PROXY sets at most its source half)")
	case sa.ReplayWindow > x.os.maxReplay:
		return ns("ReplayWindow", "%d packets: this kernel's PF_KEY allows at most %d", sa.ReplayWindow, x.os.maxReplay)
	case x.d.ReplayInBytes && sa.ReplayWindow%8 != 0:
		return ns("ReplayWindow", "%d packets: KAME kernels size the window in bytes, so it must be a multiple of 8", sa.ReplayWindow)
	}
	for _, l := range []struct {
		name string
		v    uint64
	}{{"Lifetime.Soft.Packets", sa.Lifetime.Soft.Packets}, {"Lifetime.Hard.Packets", sa.Lifetime.Hard.Packets}} {
		if l.v == 0 {
			continue
		}
		if !x.os.packetLimits {
			return ns(l.name, "%s", x.os.notes[kernelops.CapLifetimePackets])
		}
		if l.v > math.MaxUint32 {
			return ns(l.name, "%d packets: sadb_lifetime_allocations is 32 bits", l.v)
		}
	}
	if sa.ID.Proto == kernelops.ProtoESP {
		if _, ok := x.d.EncrToSADB(sa.Encryption.ID); !ok {
			return ns("Encryption.ID", "%s has no SADB id in %s's PF_KEY", sa.Encryption.ID, x.d.Name)
		}
	}
	if sa.Integrity.ID != iana.IntegNone {
		if _, ok := x.d.AuthToSADB(sa.Integrity.ID); !ok {
			return ns("Integrity.ID", "%s has no SADB id in %s's PF_KEY", sa.Integrity.ID, x.d.Name)
		}
	}
	return nil
}

// saMsg builds SADB_ADD or SADB_UPDATE for sa.
func (x *xlate) saMsg(t sadb.MsgType, sa *kernelops.SA) (*sadb.Msg, *kernelops.Error) {
	if e := x.checkSA(sa); e != nil {
		return nil, e
	}
	obj := sa.ID.String()
	reqid, err := x.rq.toKernel(sa.ReqID, false)
	if err != nil {
		return nil, kernelops.Invalid("", "", obj, "ReqID", "%v", err)
	}
	s := &sadb.SA{SPI: sa.ID.SPI, State: sadb.StateMature}
	m := &sadb.Msg{Header: sadb.Header{Type: t, SAType: satypeOf(sa.ID.Proto)}}
	m.Exts = append(m.Exts, s)
	var replayExt *sadb.SAReplay
	if x.d.ReplayInBytes {
		b := sa.ReplayWindow / 8
		if b > 255 {
			s.Replay, replayExt = 255, &sadb.SAReplay{Replay: sa.ReplayWindow}
		} else {
			s.Replay = uint8(b)
		}
	} else {
		s.Replay = uint8(sa.ReplayWindow) // checkSA bounds it by maxReplay (<= 255 on Linux)
	}
	if sa.ESN {
		s.Flags |= x.d.FlagESN
	}
	var auth, enc *sadb.Key
	switch sa.ID.Proto {
	case kernelops.ProtoESP:
		s.Encrypt, _ = x.d.EncrToSADB(sa.Encryption.ID)
		// Linux af_key insists on a KEY_ENCRYPT for ESP, even a
		// zero-bit one for the NULL cipher.
		enc = &sadb.Key{T: sadb.ExtKeyEncrypt, Bits: uint16(len(sa.Encryption.Key) * 8), Data: sa.Encryption.Key}
	case kernelops.ProtoIPComp:
		s.Encrypt = calgDeflate
	}
	if sa.Integrity.ID != iana.IntegNone {
		s.Auth, _ = x.d.AuthToSADB(sa.Integrity.ID)
		auth = &sadb.Key{T: sadb.ExtKeyAuth, Bits: uint16(len(sa.Integrity.Key) * 8), Data: sa.Integrity.Key}
	}
	lt := func(t sadb.ExtType, l kernelops.Limits) *sadb.Lifetime {
		return &sadb.Lifetime{T: t, Allocations: uint32(l.Packets), Bytes: l.Bytes,
			AddTime: secs(l.AddTime), UseTime: secs(l.UseTime)}
	}
	// Linux af_key refuses a hard lifetime without a soft one and the
	// reverse; zeros mean "no limit" on every kernel.
	m.Exts = append(m.Exts, lt(sadb.ExtLifetimeHard, sa.Lifetime.Hard), lt(sadb.ExtLifetimeSoft, sa.Lifetime.Soft),
		x.endpoint(sadb.ExtAddressSrc, sa.ID.Src), x.endpoint(sadb.ExtAddressDst, sa.ID.Dst))
	if auth != nil {
		m.Exts = append(m.Exts, auth)
	}
	if enc != nil {
		m.Exts = append(m.Exts, enc)
	}
	m.Exts = append(m.Exts, &sadb.SA2{Mode: modeToSADB(sa.Mode), ReqID: reqid})
	if replayExt != nil {
		m.Exts = append(m.Exts, replayExt)
	}
	if sa.Encap != nil {
		m.Exts = append(m.Exts, &sadb.NATTType{EncapType: sadb.NATTypeESPInUDP},
			&sadb.NATTPort{Port: sa.Encap.SrcPort}, &sadb.NATTPort{Dst: true, Port: sa.Encap.DstPort})
	}
	return m, nil
}

// saIDMsg builds SADB_GET or SADB_DELETE for id.
func (x *xlate) saIDMsg(t sadb.MsgType, id kernelops.SAID) *sadb.Msg {
	return &sadb.Msg{Header: sadb.Header{Type: t, SAType: satypeOf(id.Proto)}, Exts: []sadb.Ext{
		&sadb.SA{SPI: id.SPI},
		x.endpoint(sadb.ExtAddressSrc, id.Src),
		x.endpoint(sadb.ExtAddressDst, id.Dst),
	}}
}

// saEntry fills e (reused between dump entries) from a GET, DUMP or
// GETSPI reply.
func (x *xlate) saEntry(m *sadb.Msg, e *kernelops.SAEntry) error {
	s, src, dst := m.SA(), m.Address(sadb.ExtAddressSrc), m.Address(sadb.ExtAddressDst)
	if s == nil || src == nil || dst == nil {
		return fmt.Errorf("%s without SA or addresses", m.Type)
	}
	proto, ok := protoOf(m.SAType)
	if !ok {
		return fmt.Errorf("%s of SA type %s", m.Type, m.SAType)
	}
	*e = kernelops.SAEntry{}
	e.ID = kernelops.SAID{Src: src.Addr.Addr(), Dst: dst.Addr.Addr(), SPI: s.SPI, Proto: proto}
	e.Mode = kernelops.ModeTransport
	if sa2 := m.SA2(); sa2 != nil {
		e.Mode = modeFromSADB(sa2.Mode)
		e.ReqID = x.rq.fromKernel(sa2.ReqID)
	}
	switch s.State {
	case sadb.StateLarval:
		e.State = kernelops.SALarval
	case sadb.StateDying:
		e.State = kernelops.SADying
	case sadb.StateDead:
		e.State = kernelops.SADead
	default:
		e.State = kernelops.SAValid
	}
	switch {
	case m.SAReplay() != nil:
		e.ReplayWindow = m.SAReplay().Replay
	case x.d.ReplayInBytes:
		e.ReplayWindow = uint32(s.Replay) * 8
	default:
		e.ReplayWindow = uint32(s.Replay)
	}
	e.ESN = x.d.FlagESN != 0 && s.Flags&x.d.FlagESN != 0
	if proto == kernelops.ProtoESP && s.Encrypt != 0 {
		if id, ok := x.d.EncrFromSADB(s.Encrypt); ok {
			e.Encryption.ID = id
			if k := m.Key(sadb.ExtKeyEncrypt); k != nil {
				e.Encryption.Key = append(kernelops.Key(nil), k.Data...)
				if info, _ := id.Info(); info.KeyBits != nil {
					e.Encryption.KeyBits = (len(k.Data) - info.Salt) * 8
				}
			}
		}
	}
	if s.Auth != 0 {
		if id, ok := x.d.AuthFromSADB(s.Auth); ok {
			e.Integrity.ID = id
			if k := m.Key(sadb.ExtKeyAuth); k != nil {
				e.Integrity.Key = append(kernelops.Key(nil), k.Data...)
			}
		}
	}
	lim := func(l *sadb.Lifetime) kernelops.Limits {
		if l == nil {
			return kernelops.Limits{}
		}
		out := kernelops.Limits{Bytes: l.Bytes, AddTime: dur(l.AddTime), UseTime: dur(l.UseTime)}
		if x.os.packetLimits {
			out.Packets = uint64(l.Allocations)
		}
		return out
	}
	e.Lifetime.Hard = lim(m.Lifetime(sadb.ExtLifetimeHard))
	e.Lifetime.Soft = lim(m.Lifetime(sadb.ExtLifetimeSoft))
	if c := m.Lifetime(sadb.ExtLifetimeCurrent); c != nil {
		e.Counters.Bytes = c.Bytes
		if x.os.packetLimits {
			e.Counters.Packets = uint64(c.Allocations)
		}
		if c.AddTime != 0 {
			e.Counters.AddTime = time.Unix(int64(c.AddTime), 0)
		}
		if c.UseTime != 0 {
			e.Counters.FirstUse = time.Unix(int64(c.UseTime), 0)
		}
	}
	if m.NATTType() != nil {
		e.Encap = &kernelops.Encap{}
		if p := m.NATTPort(false); p != nil {
			e.Encap.SrcPort = p.Port
		}
		if p := m.NATTPort(true); p != nil {
			e.Encap.DstPort = p.Port
		}
	}
	return nil
}

// normPrefix treats /0 as "any", the zero prefix, so a policy read back
// compares equal to the one installed either way.
func normPrefix(p netip.Prefix) netip.Prefix {
	if p.IsValid() && p.Bits() == 0 {
		return netip.Prefix{}
	}
	return p
}

func normSelector(s kernelops.Selector) kernelops.Selector {
	s.Src, s.Dst = normPrefix(s.Src), normPrefix(s.Dst)
	return s
}

func normPolicyID(id kernelops.PolicyID) kernelops.PolicyID {
	id.Selector = normSelector(id.Selector)
	return id
}

// selectorExts builds the ADDRESS_SRC and ADDRESS_DST of a policy. An
// "any" side takes the other side's family, then the first tunnel's.
func (x *xlate) selectorExts(s kernelops.Selector, tmpl []kernelops.Template) (*sadb.Address, *sadb.Address) {
	v6 := false
	switch {
	case s.Src.IsValid():
		v6 = s.Src.Addr().Is6()
	case s.Dst.IsValid():
		v6 = s.Dst.Addr().Is6()
	case len(tmpl) > 0 && tmpl[0].Src.IsValid():
		v6 = tmpl[0].Src.Is6()
	}
	anyp := netip.PrefixFrom(netip.IPv4Unspecified(), 0)
	if v6 {
		anyp = netip.PrefixFrom(netip.IPv6Unspecified(), 0)
	}
	proto := uint8(sadb.ProtoAny)
	if s.Proto != 0 {
		proto = s.Proto
	}
	side := func(t sadb.ExtType, p netip.Prefix, port uint16) *sadb.Address {
		if !p.IsValid() {
			p = anyp
		}
		return &sadb.Address{T: t, Proto: proto, PrefixLen: uint8(p.Bits()), Addr: netip.AddrPortFrom(p.Addr(), port)}
	}
	return side(sadb.ExtAddressSrc, s.Src, s.SrcPort), side(sadb.ExtAddressDst, s.Dst, s.DstPort)
}

func dirToSADB(d kernelops.Direction) uint8 {
	switch d {
	case kernelops.DirIn:
		return sadb.DirInbound
	case kernelops.DirOut:
		return sadb.DirOutbound
	case kernelops.DirFwd:
		return sadb.DirForward
	}
	return sadb.DirAny
}

func dirFromSADB(d uint8) kernelops.Direction {
	switch d {
	case sadb.DirInbound:
		return kernelops.DirIn
	case sadb.DirOutbound:
		return kernelops.DirOut
	case sadb.DirForward:
		return kernelops.DirFwd
	}
	return kernelops.DirAny
}

// checkPolicyID refuses what no PF_KEY policy can say.
func (x *xlate) checkPolicyID(id kernelops.PolicyID) *kernelops.Error {
	obj := id.String()
	if id.Dir == kernelops.DirFwd && !x.os.forwardDir {
		return unsupported(obj, "Dir", "%s has no forward policies: forwarded traffic meets the outbound SPD", x.os.name)
	}
	return nil
}

// policyMsg builds SADB_X_SPDADD or SADB_X_SPDUPDATE for p.
func (x *xlate) policyMsg(t sadb.MsgType, p *kernelops.Policy) (*sadb.Msg, *kernelops.Error) {
	obj := p.ID().String()
	if e := x.checkPolicyID(p.ID()); e != nil {
		return nil, e
	}
	if p.Lifetime != (kernelops.Lifetimes{}) && x.os.caps&kernelops.CapPolicyLifetime == 0 {
		return nil, unsupported(obj, "Lifetime", "%s", x.os.notes[kernelops.CapPolicyLifetime])
	}
	if p.Priority != 0 && x.os.caps&kernelops.CapPolicyPriority == 0 {
		return nil, unsupported(obj, "Priority", "%s", x.os.notes[kernelops.CapPolicyPriority])
	}
	pol := &sadb.Policy{Dir: dirToSADB(p.Dir)}
	if x.os.caps&kernelops.CapPolicyPriority != 0 {
		pol.Priority = kernelops.EffectivePriority(p)
	}
	switch p.Action {
	case kernelops.ActionIPsec, kernelops.ActionTrap:
		pol.PolicyType = sadb.PolicyIPsec
	case kernelops.ActionPass:
		pol.PolicyType = sadb.PolicyNone
	case kernelops.ActionBlock:
		pol.PolicyType = sadb.PolicyDiscard
	}
	for i, tm := range p.Templates {
		field := fmt.Sprintf("Templates[%d]", i)
		if tm.SPI != 0 {
			return nil, unsupported(obj, field+".SPI", "an ipsecrequest cannot name an SPI")
		}
		reqid, err := x.rq.toKernel(tm.ReqID, true)
		if err != nil {
			return nil, kernelops.Invalid("", "", obj, field+".ReqID", "%v", err)
		}
		r := sadb.Request{Proto: uint16(tm.Proto), Mode: modeToSADB(tm.Mode), Level: sadb.LevelRequire, ReqID: reqid}
		switch {
		case tm.Optional:
			r.Level = sadb.LevelUse
		case reqid != 0:
			r.Level = sadb.LevelUnique
		}
		if tm.Mode == kernelops.ModeTunnel {
			r.Src, r.Dst = netip.AddrPortFrom(tm.Src, 0), netip.AddrPortFrom(tm.Dst, 0)
		}
		pol.Requests = append(pol.Requests, r)
	}
	src, dst := x.selectorExts(p.Selector, p.Templates)
	m := &sadb.Msg{Header: sadb.Header{Type: t}, Exts: []sadb.Ext{src, dst}}
	if p.Lifetime != (kernelops.Lifetimes{}) {
		m.Exts = append(m.Exts,
			&sadb.Lifetime{T: sadb.ExtLifetimeHard, AddTime: secs(p.Lifetime.Hard.AddTime), UseTime: secs(p.Lifetime.Hard.UseTime)},
			&sadb.Lifetime{T: sadb.ExtLifetimeSoft, AddTime: secs(p.Lifetime.Soft.AddTime), UseTime: secs(p.Lifetime.Soft.UseTime)})
	}
	m.Exts = append(m.Exts, pol)
	return m, nil
}

// policySelectorMsg builds SADB_X_SPDDELETE (by selector and direction).
func (x *xlate) policySelectorMsg(t sadb.MsgType, id kernelops.PolicyID) *sadb.Msg {
	src, dst := x.selectorExts(id.Selector, nil)
	return &sadb.Msg{Header: sadb.Header{Type: t}, Exts: []sadb.Ext{src, dst,
		&sadb.Policy{PolicyType: sadb.PolicyIPsec, Dir: dirToSADB(id.Dir)}}}
}

// policyIndexMsg builds SADB_X_SPDGET or SADB_X_SPDDELETE2 (by index).
func policyIndexMsg(t sadb.MsgType, index uint32) *sadb.Msg {
	return &sadb.Msg{Header: sadb.Header{Type: t}, Exts: []sadb.Ext{&sadb.Policy{ID: index}}}
}

func selectorSide(a *sadb.Address) (netip.Prefix, uint16) {
	if a == nil {
		return netip.Prefix{}, 0
	}
	return normPrefix(netip.PrefixFrom(a.Addr.Addr(), int(a.PrefixLen))), a.Addr.Port()
}

// policyEntry fills e from an SPDGET/SPDDUMP/SPDADD reply and returns
// the kernel's policy index.
func (x *xlate) policyEntry(m *sadb.Msg, e *kernelops.PolicyEntry) (uint32, error) {
	pol := m.Policy()
	if pol == nil {
		return 0, fmt.Errorf("%s without X_POLICY", m.Type)
	}
	src, dst := m.Address(sadb.ExtAddressSrc), m.Address(sadb.ExtAddressDst)
	*e = kernelops.PolicyEntry{}
	e.Selector.Src, e.Selector.SrcPort = selectorSide(src)
	e.Selector.Dst, e.Selector.DstPort = selectorSide(dst)
	if src != nil && src.Proto != sadb.ProtoAny {
		e.Selector.Proto = src.Proto
	}
	e.Dir = dirFromSADB(pol.Dir)
	if x.os.caps&kernelops.CapPolicyPriority != 0 {
		e.Priority = pol.Priority
	}
	switch pol.PolicyType {
	case sadb.PolicyIPsec:
		e.Action = kernelops.ActionIPsec
	case sadb.PolicyDiscard:
		e.Action = kernelops.ActionBlock
	default: // NONE; BYPASS on per-socket policies
		e.Action = kernelops.ActionPass
	}
	for _, r := range pol.Requests {
		tm := kernelops.Template{Proto: kernelops.Proto(r.Proto), Mode: modeFromSADB(r.Mode),
			ReqID: x.rq.fromKernel(r.ReqID), Optional: r.Level == sadb.LevelUse}
		if tm.Mode == kernelops.ModeTunnel {
			tm.Src, tm.Dst = r.Src.Addr(), r.Dst.Addr()
		}
		e.Templates = append(e.Templates, tm)
	}
	if l := m.Lifetime(sadb.ExtLifetimeHard); l != nil {
		e.Lifetime.Hard = kernelops.Limits{AddTime: dur(l.AddTime), UseTime: dur(l.UseTime)}
	}
	if l := m.Lifetime(sadb.ExtLifetimeSoft); l != nil {
		e.Lifetime.Soft = kernelops.Limits{AddTime: dur(l.AddTime), UseTime: dur(l.UseTime)}
	}
	if c := m.Lifetime(sadb.ExtLifetimeCurrent); c != nil {
		if c.AddTime != 0 {
			e.AddTime = time.Unix(int64(c.AddTime), 0)
		}
		if c.UseTime != 0 {
			e.UseTime = time.Unix(int64(c.UseTime), 0)
		}
	}
	return pol.ID, nil
}

// expireEvent reads SADB_EXPIRE: soft when it carries the soft lifetime,
// hard when the hard one; the limit is the one the current usage reached.
func (x *xlate) expireEvent(m *sadb.Msg, now time.Time) (*kernelops.ExpireEvent, error) {
	var e kernelops.SAEntry
	if err := x.saEntry(m, &e); err != nil {
		return nil, err
	}
	ev := &kernelops.ExpireEvent{SA: e.ID, ReqID: e.ReqID}
	lim := m.Lifetime(sadb.ExtLifetimeSoft)
	if h := m.Lifetime(sadb.ExtLifetimeHard); h != nil {
		ev.Hard, lim = true, h
	}
	cur := m.Lifetime(sadb.ExtLifetimeCurrent)
	if lim != nil && cur != nil {
		switch {
		case lim.Bytes != 0 && cur.Bytes >= lim.Bytes:
			ev.Limit = kernelops.LimitBytes
		case x.os.packetLimits && lim.Allocations != 0 && cur.Allocations >= lim.Allocations:
			ev.Limit = kernelops.LimitPackets
		case lim.AddTime != 0 && cur.AddTime != 0 && now.Unix()-int64(cur.AddTime) >= int64(lim.AddTime):
			ev.Limit = kernelops.LimitAddTime
		case lim.UseTime != 0 && cur.UseTime != 0:
			ev.Limit = kernelops.LimitUseTime
		case lim.AddTime != 0:
			ev.Limit = kernelops.LimitAddTime
		}
	}
	return ev, nil
}

// acquireEvent reads SADB_ACQUIRE. Linux names the policy by index only
// (no SA2), so lookup resolves its selector and template; KAME adds an
// SA2 with the reqid.
func (x *xlate) acquireEvent(m *sadb.Msg, lookup func(index uint32) (*kernelops.PolicyEntry, error)) (*kernelops.AcquireEvent, error) {
	src, dst := m.Address(sadb.ExtAddressSrc), m.Address(sadb.ExtAddressDst)
	if src == nil || dst == nil {
		return nil, fmt.Errorf("ACQUIRE without addresses")
	}
	proto, _ := protoOf(m.SAType)
	ev := &kernelops.AcquireEvent{Seq: m.Seq, Src: src.Addr.Addr(), Dst: dst.Addr.Addr(), Proto: proto}
	if sa2 := m.SA2(); sa2 != nil {
		ev.ReqID = x.rq.fromKernel(sa2.ReqID)
	}
	pol := m.Policy()
	if pol == nil || lookup == nil {
		return ev, nil
	}
	ev.Policy.Dir = dirFromSADB(pol.Dir)
	pe, err := lookup(pol.ID)
	if err != nil {
		return ev, err
	}
	ev.Policy = pe.ID()
	for _, tm := range pe.Templates {
		if tm.Proto == proto && (tm.Mode != kernelops.ModeTunnel || (tm.Src == ev.Src && tm.Dst == ev.Dst)) {
			if ev.ReqID == 0 {
				ev.ReqID = tm.ReqID
			}
			break
		}
	}
	return ev, nil
}

// mappingEvent reads SADB_X_NAT_T_NEW_MAPPING as Linux builds it: the
// SA's SPI, the old peer address and port (ADDRESS_SRC, NAT_T_SPORT)
// and the new ones (ADDRESS_DST, NAT_T_DPORT). The SA's own destination
// is not in the message; known fills it (and the reqid) when the backend
// installed the SA.
func (x *xlate) mappingEvent(m *sadb.Msg, known func(spi uint32, proto kernelops.Proto) (kernelops.SAID, uint32, bool)) (*kernelops.MappingEvent, error) {
	s, src, dst := m.SA(), m.Address(sadb.ExtAddressSrc), m.Address(sadb.ExtAddressDst)
	sp, dp := m.NATTPort(false), m.NATTPort(true)
	if s == nil || src == nil || dst == nil || sp == nil || dp == nil {
		return nil, fmt.Errorf("NAT_T_NEW_MAPPING lacks SA, addresses or ports")
	}
	proto, _ := protoOf(m.SAType)
	ev := &kernelops.MappingEvent{SA: kernelops.SAID{Src: src.Addr.Addr(), SPI: s.SPI, Proto: proto},
		Old: netip.AddrPortFrom(src.Addr.Addr(), sp.Port), New: netip.AddrPortFrom(dst.Addr.Addr(), dp.Port)}
	if known != nil {
		if id, reqid, ok := known(s.SPI, proto); ok {
			ev.SA, ev.ReqID = id, reqid
		}
	}
	return ev, nil
}

// migrateMsg builds SADB_X_MIGRATE for one policy: its selector and
// direction, and an old/new ipsecrequest pair per template moved.
func (x *xlate) migrateMsg(id kernelops.PolicyID, pairs [][2]sadb.Request, km *sadb.KMAddress) *sadb.Msg {
	src, dst := x.selectorExts(id.Selector, nil)
	pol := &sadb.Policy{PolicyType: sadb.PolicyIPsec, Dir: dirToSADB(id.Dir)}
	for _, p := range pairs {
		pol.Requests = append(pol.Requests, p[0], p[1])
	}
	m := &sadb.Msg{Header: sadb.Header{Type: x.d.MsgMigrate}}
	if km != nil {
		m.Exts = append(m.Exts, km)
	}
	m.Exts = append(m.Exts, src, dst, pol)
	return m
}

// migrateEvent reads SADB_X_MIGRATE: the policy's selector and direction
// and old/new request pairs.
func (x *xlate) migrateEvent(m *sadb.Msg) (*kernelops.MigrateEvent, error) {
	pol := m.Policy()
	if pol == nil || len(pol.Requests)%2 != 0 {
		return nil, fmt.Errorf("MIGRATE without X_POLICY or with an odd number of requests")
	}
	ev := &kernelops.MigrateEvent{}
	ev.Policy.Selector.Src, ev.Policy.Selector.SrcPort = selectorSide(m.Address(sadb.ExtAddressSrc))
	ev.Policy.Selector.Dst, ev.Policy.Selector.DstPort = selectorSide(m.Address(sadb.ExtAddressDst))
	if a := m.Address(sadb.ExtAddressSrc); a != nil && a.Proto != sadb.ProtoAny {
		ev.Policy.Selector.Proto = a.Proto
	}
	ev.Policy.Dir = dirFromSADB(pol.Dir)
	ends := func(r sadb.Request) kernelops.Endpoints {
		if ev.Policy.Dir == kernelops.DirOut {
			return kernelops.Endpoints{Local: r.Src.Addr(), Remote: r.Dst.Addr()}
		}
		return kernelops.Endpoints{Local: r.Dst.Addr(), Remote: r.Src.Addr()}
	}
	for i := 0; i < len(pol.Requests); i += 2 {
		o, n := pol.Requests[i], pol.Requests[i+1]
		ev.Entries = append(ev.Entries, kernelops.MigrateEntry{Proto: kernelops.Proto(o.Proto), Mode: modeFromSADB(o.Mode),
			ReqID: x.rq.fromKernel(o.ReqID), Old: ends(o), New: ends(n)})
	}
	return ev, nil
}

// policyExpireEvent reads KAME's SADB_X_SPDEXPIRE.
func (x *xlate) policyExpireEvent(m *sadb.Msg) (*kernelops.PolicyExpireEvent, error) {
	var e kernelops.PolicyEntry
	if _, err := x.policyEntry(m, &e); err != nil {
		return nil, err
	}
	return &kernelops.PolicyExpireEvent{Policy: e.ID(), Hard: m.Lifetime(sadb.ExtLifetimeSoft) == nil}, nil
}
