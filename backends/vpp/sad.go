//go:build vpp

package vpp

import (
	"cmp"
	"context"
	"errors"
	"fmt"
	"iter"
	"slices"

	"github.com/keyplane/keyplane/kernelops"
	"go.fd.io/govpp/api"
	"go.fd.io/govpp/binapi/interface_types"
	"go.fd.io/govpp/binapi/ipsec"
	"go.fd.io/govpp/binapi/ipsec_types"
	"go.fd.io/govpp/binapi/tunnel_types"
)

// checkSA refuses what VPP cannot install, after the shared validation.
func (b *driver) checkSA(sa *kernelops.SA) error {
	obj := sa.ID.String()
	switch {
	case sa.ID.Proto == kernelops.ProtoIPComp:
		return notSupported(obj, "ID.Proto", "VPP has no IPComp")
	case !sa.ID.Mark.IsZero() || !sa.Mark.IsZero():
		return notSupported(obj, "Mark", "VPP SAs have no marks")
	case sa.IfID != 0:
		return notSupported(obj, "IfID", "VPP SAs have no XFRM interface id (route-based VPP tunnels use ipsec_itf)")
	case sa.ReplayWindow > MaxReplayWindow:
		return kernelops.Invalid("", "", obj, "ReplayWindow", "%d packets: at most %d", sa.ReplayWindow, MaxReplayWindow)
	case sa.Encap != nil && sa.Encap.OrigAddr.IsValid():
		return notSupported(obj, "Encap.OrigAddr", "VPP takes no NAT original address")
	case sa.Mode == kernelops.ModeTransport && !sa.Selector.IsZero():
		// VPP SAs carry no selector; policies do. Accept and keep it.
	}
	switch sa.Offload.Mode {
	case kernelops.OffloadCrypto, kernelops.OffloadPacket:
		// Both a missing capability (ErrNotSupported) and a refused
		// offload (*OffloadError, ErrOffload) hold for errors.Is/As.
		oe := &kernelops.OffloadError{Device: sa.Offload.Device, Mode: sa.Offload.Mode,
			Reason: "VPP's IPsec API has no per-SA device offload; VPP picks its crypto engine itself"}
		return &kernelops.Error{Object: obj, Field: "Offload.Mode",
			Err: fmt.Errorf("%w: %w", kernelops.ErrNotSupported, oe)}
	}
	return nil
}

// sadEntry builds VPP's SA description.
func sadEntry(r *saRec) ipsec_types.IpsecSadEntryV4 {
	sa := r.sa
	e := ipsec_types.IpsecSadEntryV4{
		SadID:                r.sadID,
		Spi:                  sa.ID.SPI,
		Protocol:             ipsec_types.IpsecProto(sa.ID.Proto),
		AntiReplayWindowSize: sa.ReplayWindow,
		Tunnel:               tunnel_types.Tunnel{Instance: ^uint32(0), SwIfIndex: interface_types.InterfaceIndex(^uint32(0))},
	}
	if sa.ID.Proto == kernelops.ProtoESP {
		e.CryptoAlgorithm, e.CryptoKey, e.Salt, _ = vppCrypto(sa.Encryption)
	} else {
		e.CryptoKey = vppKey(nil)
	}
	e.IntegrityAlgorithm = integByID[sa.Integrity.ID]
	e.IntegrityKey = vppKey(sa.Integrity.Key)
	if sa.ESN {
		e.Flags |= ipsec_types.IPSEC_API_SAD_FLAG_USE_ESN
	}
	if sa.ReplayWindow > 0 {
		e.Flags |= ipsec_types.IPSEC_API_SAD_FLAG_USE_ANTI_REPLAY
	}
	if sa.Mode == kernelops.ModeTunnel {
		e.Flags |= ipsec_types.IPSEC_API_SAD_FLAG_IS_TUNNEL
		if sa.ID.Dst.Is6() {
			e.Flags |= ipsec_types.IPSEC_API_SAD_FLAG_IS_TUNNEL_V6
		}
		e.Tunnel.Src, e.Tunnel.Dst = toAddr(sa.ID.Src), toAddr(sa.ID.Dst)
	}
	if sa.Encap != nil {
		e.Flags |= ipsec_types.IPSEC_API_SAD_FLAG_UDP_ENCAP
		e.UDPSrcPort, e.UDPDstPort = sa.Encap.SrcPort, sa.Encap.DstPort
	}
	if r.inbound {
		e.Flags |= ipsec_types.IPSEC_API_SAD_FLAG_IS_INBOUND
	}
	return e
}

// addToVPP installs r under its sad_id and returns VPP's stat_index.
func (b *driver) addToVPP(ctx context.Context, s *session, r *saRec) (uint32, error) {
	b.issued[r.sadID] = true
	reply := &ipsec.IpsecSadEntryAddV2Reply{}
	if err := b.check(s, s.invoke(ctx, &ipsec.IpsecSadEntryAddV2{Entry: sadEntry(r)}, reply)); err != nil {
		var rv api.VPPApiError
		if errors.As(err, &rv) {
			delete(b.issued, r.sadID) // VPP refused: nothing was added
		}
		return 0, err
	}
	return reply.StatIndex, nil
}

// AddSA installs an SA.
func (b *driver) AddSA(ctx context.Context, sa *kernelops.SA) error {
	if err := b.checkSA(sa); err != nil {
		return err
	}
	s, err := b.lockSession(ctx)
	if err != nil {
		return wrap(sa.ID.String(), err, nil)
	}
	defer b.mu.Unlock()
	if b.sas[sa.ID] != nil {
		return &kernelops.Error{Object: sa.ID.String(), Err: kernelops.ErrExists}
	}
	r := &saRec{sa: sa.Clone(), addTime: b.clock.Now()}
	r.sa.Offload.Active = kernelops.OffloadNone
	// An SA on an SPI from AllocSPI is inbound (the front end allocates).
	r.inbound = sa.Dir == kernelops.DirIn || (sa.Dir == kernelops.DirAny && (b.env.Reserved(sa.ID) || b.isLocal(sa.ID.Dst)))
	// A sad_id left behind by an earlier keyplane makes VPP answer
	// ENTRY_ALREADY_EXISTS: take the next id and try again.
	for attempt := 0; ; attempt++ {
		if r.sadID, err = b.allocSadID(); err != nil {
			return err
		}
		r.statIndex, err = b.addToVPP(ctx, s, r)
		if err == nil || !errors.Is(err, api.ENTRY_ALREADY_EXISTS) || attempt == 8 {
			break
		}
		b.log.Debug("sad_id taken in VPP; trying the next", "sad_id", r.sadID)
		b.issued[r.sadID] = true // not ours, but not free either
	}
	if err != nil {
		return wrap(sa.ID.String(), err, nil)
	}
	b.seq++
	r.seq = b.seq
	b.sas[sa.ID] = r
	b.bySadID[r.sadID] = r
	sa.Offload.Active = kernelops.OffloadNone
	// Policies waiting for this SA now protect with it.
	if err := b.rebind(ctx, s, r); err != nil {
		b.removeLocked(ctx, s, r)
		return wrap(sa.ID.String(), err, nil)
	}
	return nil
}

// UpdateSA changes what VPP can change in place: UDP encapsulation ports,
// and keyplane's own bookkeeping (reqid, selector, lifetimes). Keys,
// algorithms, mode and flags of a VPP SA are fixed at add.
func (b *driver) UpdateSA(ctx context.Context, sa *kernelops.SA) error {
	if err := b.checkSA(sa); err != nil {
		return err
	}
	s, err := b.lockSession(ctx)
	if err != nil {
		return wrap(sa.ID.String(), err, nil)
	}
	defer b.mu.Unlock()
	r := b.sas[sa.ID]
	if r == nil {
		return &kernelops.Error{Object: sa.ID.String(), Err: kernelops.ErrNotFound}
	}
	old := r.sa
	if f := immutableChange(old, sa); f != "" {
		return notSupported(sa.ID.String(), f, "VPP cannot change this of an installed SA; add a new SA instead")
	}
	if sa.Encap != nil && (sa.Encap.SrcPort != old.Encap.SrcPort || sa.Encap.DstPort != old.Encap.DstPort) {
		upd := &ipsec.IpsecSadEntryUpdate{SadID: r.sadID, UDPSrcPort: sa.Encap.SrcPort, UDPDstPort: sa.Encap.DstPort}
		if err := b.check(s, s.invoke(ctx, upd, &ipsec.IpsecSadEntryUpdateReply{})); err != nil {
			return wrap(sa.ID.String(), err, nil)
		}
	}
	n := sa.Clone()
	n.Offload.Active = kernelops.OffloadNone
	reqidChanged := n.ReqID != old.ReqID
	r.sa = n
	if reqidChanged {
		if err := b.rebindAll(ctx, s); err != nil {
			return wrap(sa.ID.String(), err, nil)
		}
	}
	return nil
}

// immutableChange names the first field of b that VPP cannot change from a.
func immutableChange(a, b *kernelops.SA) string {
	switch {
	case a.Mode != b.Mode:
		return "Mode"
	case a.Encryption.ID != b.Encryption.ID || a.Encryption.KeyBits != b.Encryption.KeyBits ||
		string(a.Encryption.Key) != string(b.Encryption.Key):
		return "Encryption"
	case a.Integrity.ID != b.Integrity.ID || string(a.Integrity.Key) != string(b.Integrity.Key):
		return "Integrity"
	case a.ESN != b.ESN:
		return "ESN"
	case a.ReplayWindow != b.ReplayWindow:
		return "ReplayWindow"
	case (a.Encap == nil) != (b.Encap == nil):
		return "Encap"
	case a.Dir != b.Dir:
		return "Dir"
	}
	return ""
}

// DeleteSA removes an SA.
func (b *driver) DeleteSA(ctx context.Context, id kernelops.SAID) error {
	s, err := b.lockSession(ctx)
	if err != nil {
		return wrap(id.String(), err, nil)
	}
	defer b.mu.Unlock()
	r := b.sas[id]
	if r == nil {
		// Not keyplane's: delete it in VPP if a tunnel SA matches.
		d, err := b.findForeign(ctx, s, id)
		if err != nil {
			return wrap(id.String(), err, nil)
		}
		if d == nil {
			return &kernelops.Error{Object: id.String(), Err: kernelops.ErrNotFound}
		}
		err = b.check(s, s.invoke(ctx, &ipsec.IpsecSadEntryDel{ID: d.Entry.SadID}, &ipsec.IpsecSadEntryDelReply{}))
		return wrap(id.String(), err, nil)
	}
	if err := b.removeLocked(ctx, s, r); err != nil {
		return wrap(id.String(), err, nil)
	}
	return nil
}

// removeLocked unbinds r from policies (VPP keeps an SA alive while a
// policy references it) and deletes it.
func (b *driver) removeLocked(ctx context.Context, s *session, r *saRec) error {
	delete(b.sas, r.sa.ID)
	delete(b.bySadID, r.sadID)
	if err := b.rebind(ctx, s, r); err != nil {
		b.sas[r.sa.ID], b.bySadID[r.sadID] = r, r
		return err
	}
	err := b.check(s, s.invoke(ctx, &ipsec.IpsecSadEntryDel{ID: r.sadID}, &ipsec.IpsecSadEntryDelReply{}))
	if err != nil && !errors.Is(err, api.NO_SUCH_ENTRY) {
		b.sas[r.sa.ID], b.bySadID[r.sadID] = r, r
		b.rebind(ctx, s, r)
		return err
	}
	delete(b.issued, r.sadID)
	if err != nil {
		return &kernelops.Error{Backend: Name, Op: "delete SA", Object: r.sa.ID.String(), Err: kernelops.ErrNotFound,
			Detail: "VPP no longer had it"}
	}
	return nil
}

// findForeign looks an SA keyplane did not install up in VPP's SAD: only
// tunnel SAs can be matched, since VPP records no addresses for others.
func (b *driver) findForeign(ctx context.Context, s *session, id kernelops.SAID) (*ipsec.IpsecSaV5Details, error) {
	all, err := dump[*ipsec.IpsecSaV5Details](ctx, s, &ipsec.IpsecSaV5Dump{SaID: ^uint32(0)})
	if err := b.check(s, err); err != nil {
		return nil, err
	}
	for _, d := range all {
		e := d.Entry
		if e.Spi == id.SPI && kernelops.Proto(e.Protocol) == id.Proto &&
			e.Flags&ipsec_types.IPSEC_API_SAD_FLAG_IS_TUNNEL != 0 &&
			fromAddr(e.Tunnel.Src) == id.Src && fromAddr(e.Tunnel.Dst) == id.Dst && b.bySadID[e.SadID] == nil {
			return d, nil
		}
	}
	return nil, nil
}

// GetSA reads one SA: keyplane's from its table and one stats read,
// anyone else's from a dump of VPP's SAD.
func (b *driver) GetSA(ctx context.Context, id kernelops.SAID) (*kernelops.SAEntry, error) {
	defer b.flushObs() // after b.mu is released
	counters, cerr := b.readCounters()
	s, err := b.lockSession(ctx)
	if err != nil {
		return nil, wrap(id.String(), err, nil)
	}
	defer b.mu.Unlock()
	if cerr == nil {
		b.observeLocked(counters)
	}
	if r := b.sas[id]; r != nil {
		e := &kernelops.SAEntry{}
		b.fillEntry(e, r)
		return e, nil
	}
	d, err := b.findForeign(ctx, s, id)
	if err != nil {
		return nil, wrap(id.String(), err, nil)
	}
	if d == nil {
		return nil, &kernelops.Error{Object: id.String(), Err: kernelops.ErrNotFound}
	}
	e := &kernelops.SAEntry{}
	entryFromVPP(e, d)
	if int(d.StatIndex) < len(counters) {
		e.Counters.Bytes, e.Counters.Packets = counters[d.StatIndex].Bytes, counters[d.StatIndex].Packets
	}
	return e, nil
}

// fillEntry describes an owned SA. b.mu is held.
func (b *driver) fillEntry(e *kernelops.SAEntry, r *saRec) {
	e.SA = *r.sa.Clone()
	e.State = r.state
	t := r.total()
	e.Counters = kernelops.Counters{
		Bytes: t.Bytes, Packets: t.Packets,
		AddTime: r.addTime, FirstUse: r.firstUse, LastUsed: r.lastUsed,
		Replay: kernelops.ReplayState{Window: effectiveWindow(r.sa.ReplayWindow)},
	}
}

// effectiveWindow is the window VPP really uses: rounded up to a power of
// two and to at least 64.
func effectiveWindow(w uint32) uint32 {
	if w == 0 {
		return 0
	}
	n := uint32(64)
	for n < w {
		n <<= 1
	}
	return n
}

// entryFromVPP describes an SA from VPP's dump alone. Transport-mode SAs
// carry no addresses in VPP, so their ID has none.
func entryFromVPP(e *kernelops.SAEntry, d *ipsec.IpsecSaV5Details) {
	v := d.Entry
	*e = kernelops.SAEntry{}
	e.ID = kernelops.SAID{SPI: v.Spi, Proto: kernelops.Proto(v.Protocol)}
	e.Mode = kernelops.ModeTransport
	if v.Flags&ipsec_types.IPSEC_API_SAD_FLAG_IS_TUNNEL != 0 {
		e.Mode = kernelops.ModeTunnel
		e.ID.Src, e.ID.Dst = fromAddr(v.Tunnel.Src), fromAddr(v.Tunnel.Dst)
	}
	if e.ID.Proto == kernelops.ProtoESP {
		e.Encryption = fromVPPCrypto(v.CryptoAlgorithm, v.CryptoKey, v.Salt)
	}
	if v.IntegrityAlgorithm != ipsec_types.IPSEC_API_INTEG_ALG_NONE {
		e.Integrity = fromVPPInteg(v.IntegrityAlgorithm, v.IntegrityKey)
	}
	e.ESN = v.Flags&ipsec_types.IPSEC_API_SAD_FLAG_USE_ESN != 0
	if v.Flags&ipsec_types.IPSEC_API_SAD_FLAG_USE_ANTI_REPLAY != 0 {
		e.ReplayWindow = v.AntiReplayWindowSize
	}
	if v.Flags&ipsec_types.IPSEC_API_SAD_FLAG_UDP_ENCAP != 0 {
		e.Encap = &kernelops.Encap{SrcPort: v.UDPSrcPort, DstPort: v.UDPDstPort}
	}
	e.Dir = kernelops.DirOut
	if v.Flags&ipsec_types.IPSEC_API_SAD_FLAG_IS_INBOUND != 0 {
		e.Dir = kernelops.DirIn
	}
	e.Counters.Replay = kernelops.ReplayState{OSeq: d.SeqOutbound, Seq: d.LastSeqInbound, Window: e.ReplayWindow}
}

// SAs streams every SA in VPP, keyplane's with their bookkeeping.
func (b *driver) SAs(ctx context.Context) iter.Seq2[*kernelops.SAEntry, error] {
	return func(yield func(*kernelops.SAEntry, error) bool) {
		defer b.flushObs()
		s, err := b.lockSession(ctx)
		if err != nil {
			yield(nil, wrap("", err, nil))
			return
		}
		b.mu.Unlock()
		all, err := dump[*ipsec.IpsecSaV5Details](ctx, s, &ipsec.IpsecSaV5Dump{SaID: ^uint32(0)})
		if err != nil {
			b.mu.Lock()
			err = b.check(s, err)
			b.mu.Unlock()
			yield(nil, wrap("", err, nil))
			return
		}
		counters, cerr := b.readCounters()
		e := &kernelops.SAEntry{}
		for _, d := range all {
			b.mu.Lock()
			if cerr == nil {
				b.observeLocked(counters)
				cerr = errors.New("observed")
			}
			r := b.bySadID[d.Entry.SadID]
			if r != nil {
				b.fillEntry(e, r)
				e.Counters.Replay.OSeq, e.Counters.Replay.Seq = d.SeqOutbound, d.LastSeqInbound
			}
			b.mu.Unlock()
			if r == nil {
				entryFromVPP(e, d)
				if int(d.StatIndex) < len(counters) {
					e.Counters.Bytes, e.Counters.Packets = counters[d.StatIndex].Bytes, counters[d.StatIndex].Packets
				}
			}
			if !yield(e, nil) {
				return
			}
		}
	}
}

// FlushSAs removes every SA keyplane owns (reqid in the owned range):
// those in its table, and those an earlier keyplane left in its sad_id
// range. Reserved SPIs of owned reqids are released too.
func (b *driver) FlushSAs(ctx context.Context) error {
	s, err := b.lockSession(ctx)
	if err != nil {
		return wrap("", err, nil)
	}
	defer b.mu.Unlock()
	owned := make([]*saRec, 0, len(b.sas))
	for _, r := range b.sas {
		if b.opts.Owns(r.sa.ReqID) {
			owned = append(owned, r)
		}
	}
	slices.SortFunc(owned, func(x, y *saRec) int { return cmp.Compare(x.seq, y.seq) })
	for _, r := range owned {
		if err := b.removeLocked(ctx, s, r); err != nil && !errors.Is(err, kernelops.ErrNotFound) {
			return wrap(r.sa.ID.String(), err, nil)
		}
	}
	// Leftovers of an earlier keyplane in the sad_id range.
	all, err := dump[*ipsec.IpsecSaV5Details](ctx, s, &ipsec.IpsecSaV5Dump{SaID: ^uint32(0)})
	if err := b.check(s, err); err != nil {
		return wrap("", err, nil)
	}
	for _, d := range all {
		id := d.Entry.SadID
		if id < b.p.saIDMin || id > b.p.saIDMax || b.bySadID[id] != nil {
			continue
		}
		err := b.check(s, s.invoke(ctx, &ipsec.IpsecSadEntryDel{ID: id}, &ipsec.IpsecSadEntryDelReply{}))
		if err != nil && !errors.Is(err, api.NO_SUCH_ENTRY) {
			return wrap(fmt.Sprintf("sad_id %d", id), err, nil)
		}
		delete(b.issued, id)
	}
	return nil
}
