package xfrm

import (
	"fmt"
	"net/netip"
	"time"

	"github.com/keyplane/keyplane/kernelops"
	"github.com/vishvananda/netlink/nl"
)

// Decoders of XFRM notifications into kernelops events. Each takes the
// message body (after the netlink header) and never panics: the bytes
// come from the kernel and the fuzz tests feed them garbage.

// decodeAcquire reads XFRM_MSG_ACQUIRE: struct xfrm_user_acquire, then the
// policy's templates, mark and if_id.
func decodeAcquire(b []byte) (*kernelops.AcquireEvent, error) {
	if len(b) < sizeAcquire {
		return nil, fmt.Errorf("acquire: %w", errShort)
	}
	var pe kernelops.PolicyEntry
	var pm polMeta
	decodePolicyInfo(b[96:], &pe, &pm)
	if err := decodePolicyAttrs(b[sizeAcquire:], &pe, &pm); err != nil {
		return nil, fmt.Errorf("acquire: %w", err)
	}
	pkt, pktFam := getSelector(b[40:])
	proto := kernelops.Proto(b[20])
	ev := &kernelops.AcquireEvent{
		Seq:    ne.Uint32(b[276:]),
		Proto:  proto,
		Policy: kernelops.PolicyID{Selector: pe.Selector, Dir: pe.Dir, Mark: pe.Mark, IfID: pe.IfID},
		Packet: pkt,
	}
	// The outer family is the matching template's; the packet's family
	// (the selector's) is right for transport mode.
	fam := pktFam
	var tmpl *kernelops.Template
	for i := range pe.Templates {
		t := &pe.Templates[i]
		if t.Proto == proto {
			tmpl = t
			break
		}
	}
	if tmpl != nil {
		ev.ReqID = tmpl.ReqID
		if tmpl.Dst.IsValid() {
			fam = famOf(tmpl.Dst)
		}
	}
	ev.Dst = getAddr(b[0:], fam)
	ev.Src = getAddr(b[24:], fam)
	// A packet selector with full-length prefixes is how the kernel
	// records the packet's addresses (xfrm_init_tempsel).
	return ev, nil
}

// decodeExpire reads XFRM_MSG_EXPIRE: struct xfrm_user_expire and the
// SA's mark. now decides which time limit tripped.
func decodeExpire(b []byte, now time.Time) (*kernelops.ExpireEvent, error) {
	if len(b) < sizeUserExpire {
		return nil, fmt.Errorf("expire: %w", errShort)
	}
	id, reqid, ok := saIDOf(b)
	if !ok {
		return nil, fmt.Errorf("expire: bad SA family")
	}
	it := newAttrIter(b[sizeUserExpire:])
	for a, ok := it.next(); ok; a, ok = it.next() {
		if a.Type == nl.XFRMA_MARK {
			id.Mark = getMark(a.Data)
		}
	}
	if it.err != nil {
		return nil, fmt.Errorf("expire: %w", it.err)
	}
	hard := b[224] != 0
	lft := getLftCfg(b[96:])
	lim := lft.Soft
	if hard {
		lim = lft.Hard
	}
	return &kernelops.ExpireEvent{SA: id, ReqID: reqid, Hard: hard, Limit: whichLimit(lim, getLftCur(b[160:]), now)}, nil
}

// whichLimit says which of l the counters c reached. The kernel does not
// say, so the counters are compared: bytes and packets exactly, times
// with a second of slack for the kernel's timer granularity.
func whichLimit(l kernelops.Limits, c lftCur, now time.Time) kernelops.LimitKind {
	switch {
	case l.Bytes != 0 && c.Bytes >= l.Bytes:
		return kernelops.LimitBytes
	case l.Packets != 0 && c.Packets >= l.Packets:
		return kernelops.LimitPackets
	}
	const slack = time.Second
	if l.AddTime != 0 && c.AddTime != 0 && now.Sub(unixTime(c.AddTime))+slack >= l.AddTime {
		return kernelops.LimitAddTime
	}
	if l.UseTime != 0 && c.UseTime != 0 && now.Sub(unixTime(c.UseTime))+slack >= l.UseTime {
		return kernelops.LimitUseTime
	}
	if l.AddTime != 0 {
		return kernelops.LimitAddTime
	}
	if l.UseTime != 0 {
		return kernelops.LimitUseTime
	}
	return kernelops.LimitUnknown
}

// decodePolExpire reads XFRM_MSG_POLEXPIRE.
func decodePolExpire(b []byte) (*kernelops.PolicyExpireEvent, error) {
	if len(b) < sizePolExpire {
		return nil, fmt.Errorf("policy expire: %w", errShort)
	}
	var pe kernelops.PolicyEntry
	var pm polMeta
	decodePolicyInfo(b, &pe, &pm)
	if err := decodePolicyAttrs(b[sizePolExpire:], &pe, &pm); err != nil {
		return nil, fmt.Errorf("policy expire: %w", err)
	}
	return &kernelops.PolicyExpireEvent{
		Policy: kernelops.PolicyID{Selector: pe.Selector, Dir: pe.Dir, Mark: pe.Mark, IfID: pe.IfID},
		Hard:   b[168] != 0,
	}, nil
}

// decodeMapping reads XFRM_MSG_MAPPING: struct xfrm_user_mapping.
func decodeMapping(b []byte) (*kernelops.MappingEvent, error) {
	if len(b) < sizeMapping {
		return nil, fmt.Errorf("mapping: %w", errShort)
	}
	dst, spi, fam, proto := getUsersaID(b)
	if !dst.IsValid() {
		return nil, fmt.Errorf("mapping: address family %d", fam)
	}
	oldA, newA := getAddr(b[28:], fam), getAddr(b[44:], fam)
	return &kernelops.MappingEvent{
		SA:    kernelops.SAID{Src: oldA, Dst: dst, SPI: spi, Proto: kernelops.Proto(proto)},
		ReqID: ne.Uint32(b[24:]),
		Old:   netip.AddrPortFrom(oldA, be.Uint16(b[60:])),
		New:   netip.AddrPortFrom(newA, be.Uint16(b[62:])),
	}, nil
}

// migrateEntry is one struct xfrm_user_migrate.
type migrateEntry struct {
	OldDst, OldSrc, NewDst, NewSrc netip.Addr
	Proto, Mode                    uint8
	ReqID                          uint32
}

func putMigrate(b []byte, m migrateEntry) {
	putAddr(b[0:], m.OldDst)
	putAddr(b[16:], m.OldSrc)
	putAddr(b[32:], m.NewDst)
	putAddr(b[48:], m.NewSrc)
	b[64] = m.Proto
	b[65] = m.Mode
	ne.PutUint32(b[68:], m.ReqID)
	ne.PutUint16(b[72:], famOf(m.OldDst))
	ne.PutUint16(b[74:], famOf(m.NewDst))
}

func getMigrate(b []byte) (migrateEntry, bool) {
	of, nf := ne.Uint16(b[72:]), ne.Uint16(b[74:])
	m := migrateEntry{
		OldDst: getAddr(b[0:], of), OldSrc: getAddr(b[16:], of),
		NewDst: getAddr(b[32:], nf), NewSrc: getAddr(b[48:], nf),
		Proto: b[64], Mode: b[65], ReqID: ne.Uint32(b[68:]),
	}
	return m, m.OldDst.IsValid() && m.NewDst.IsValid()
}

// decodeMigrate reads XFRM_MSG_MIGRATE: struct xfrm_userpolicy_id, then
// one or more XFRMA_MIGRATE attributes (the kernel sends one per entry;
// a request packs them into one).
func decodeMigrate(b []byte) (*kernelops.MigrateEvent, error) {
	if len(b) < sizePolicyID {
		return nil, fmt.Errorf("migrate: %w", errShort)
	}
	sel, _ := getSelector(b[0:])
	dir := dirFromKernel(b[60])
	ev := &kernelops.MigrateEvent{Policy: kernelops.PolicyID{Selector: sel, Dir: dir}}
	it := newAttrIter(b[sizePolicyID:])
	for a, ok := it.next(); ok; a, ok = it.next() {
		switch a.Type {
		case nl.XFRMA_MIGRATE:
			if len(a.Data)%sizeUserMigrate != 0 {
				return nil, fmt.Errorf("migrate: XFRMA_MIGRATE length %d: %w", len(a.Data), errShort)
			}
			for i := 0; i+sizeUserMigrate <= len(a.Data); i += sizeUserMigrate {
				m, ok := getMigrate(a.Data[i:])
				if !ok {
					return nil, fmt.Errorf("migrate: bad address family")
				}
				e := kernelops.MigrateEntry{Proto: kernelops.Proto(m.Proto), Mode: modeFromKernel(m.Mode), ReqID: m.ReqID}
				// Endpoints are seen from this host: an outbound SA goes
				// from us, inbound and forward ones come to us.
				if dir == kernelops.DirOut {
					e.Old = kernelops.Endpoints{Local: m.OldSrc, Remote: m.OldDst}
					e.New = kernelops.Endpoints{Local: m.NewSrc, Remote: m.NewDst}
				} else {
					e.Old = kernelops.Endpoints{Local: m.OldDst, Remote: m.OldSrc}
					e.New = kernelops.Endpoints{Local: m.NewDst, Remote: m.NewSrc}
				}
				ev.Entries = append(ev.Entries, e)
			}
		case nl.XFRMA_MARK:
			ev.Policy.Mark = getMark(a.Data)
		case nl.XFRMA_IF_ID:
			if len(a.Data) >= 4 {
				ev.Policy.IfID = ne.Uint32(a.Data)
			}
		}
	}
	if it.err != nil {
		return nil, fmt.Errorf("migrate: %w", it.err)
	}
	return ev, nil
}

// aevent is a decoded XFRM_MSG_NEWAE (event or GETAE reply).
type aevent struct {
	SA         kernelops.SAID
	ReqID      uint32
	Flags      uint32
	State      kernelops.SyncState
	HasReplay  bool
	ESN        bool
	BmpLen     int
	ReplayDiff uint32
	ETimer     uint32 // in 100 ms units as the kernel reports it
}

func decodeAevent(b []byte, ae *aevent) error {
	if len(b) < sizeAeventID {
		return fmt.Errorf("aevent: %w", errShort)
	}
	dst, spi, fam, proto := getUsersaID(b)
	if !dst.IsValid() {
		return fmt.Errorf("aevent: address family %d", fam)
	}
	*ae = aevent{
		SA:    kernelops.SAID{Dst: dst, SPI: spi, Proto: kernelops.Proto(proto), Src: getAddr(b[24:], fam)},
		Flags: ne.Uint32(b[40:]),
		ReqID: ne.Uint32(b[44:]),
	}
	it := newAttrIter(b[sizeAeventID:])
	for a, ok := it.next(); ok; a, ok = it.next() {
		switch a.Type {
		case nl.XFRMA_REPLAY_VAL:
			r, ok := getReplay(a.Data)
			if !ok {
				return fmt.Errorf("aevent: XFRMA_REPLAY_VAL: %w", errShort)
			}
			ae.HasReplay = true
			ae.State.Replay = kernelops.ReplayState{OSeq: r.OSeq, Seq: r.Seq, Bitmap: r.Bitmap, Window: 32}
		case nl.XFRMA_REPLAY_ESN_VAL:
			r, ok := getReplayESN(a.Data, nil)
			if !ok {
				return fmt.Errorf("aevent: XFRMA_REPLAY_ESN_VAL: %w", errShort)
			}
			ae.HasReplay, ae.ESN, ae.BmpLen = true, true, len(r.Bitmap)
			ae.State.Replay = kernelops.ReplayState{OSeq: r.OSeq, Seq: r.Seq, Bitmap: r.Bitmap, Window: r.Window}
		case nl.XFRMA_LTIME_VAL:
			if len(a.Data) < sizeLftCur {
				return fmt.Errorf("aevent: XFRMA_LTIME_VAL: %w", errShort)
			}
			c := getLftCur(a.Data)
			ae.State.Bytes, ae.State.Packets = c.Bytes, c.Packets
			ae.State.AddTime, ae.State.UseTime = unixTime(c.AddTime), unixTime(c.UseTime)
		case nl.XFRMA_REPLAY_THRESH:
			if len(a.Data) >= 4 {
				ae.ReplayDiff = ne.Uint32(a.Data)
			}
		case nl.XFRMA_ETIMER_THRESH:
			if len(a.Data) >= 4 {
				ae.ETimer = ne.Uint32(a.Data)
			}
		case nl.XFRMA_MARK:
			ae.SA.Mark = getMark(a.Data)
		}
	}
	return it.err
}

func syncReason(flags uint32) kernelops.SyncReason {
	switch {
	case flags&xfrmAECR != 0:
		return kernelops.SyncReplay
	case flags&xfrmAECE != 0:
		return kernelops.SyncTimer
	}
	return kernelops.SyncOther
}

// appendAevent builds GETAE or NEWAE for id.
func appendAevent(mb *msgBuilder, typ, flags uint16, seq uint32, id kernelops.SAID, reqid, aeFlags uint32) {
	mb.begin(typ, flags, seq)
	b := mb.grow(sizeAeventID)
	putUsersaID(b[0:], id)
	putAddr(b[24:], id.Src)
	ne.PutUint32(b[40:], aeFlags)
	ne.PutUint32(b[44:], reqid)
	putMark(mb, id.Mark)
}
