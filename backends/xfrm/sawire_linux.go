package xfrm

import (
	"errors"
	"fmt"
	"net/netip"
	"time"

	"github.com/keyplane/keyplane/iana"
	"github.com/keyplane/keyplane/kernelops"
	"github.com/vishvananda/netlink/nl"
	"golang.org/x/sys/unix"
)

// offloadReq is an XFRMA_OFFLOAD_DEV request.
type offloadReq struct {
	IfIndex int
	Flags   uint8
}

// saOpts are per-install choices the SA itself does not carry.
type saOpts struct {
	Offload *offloadReq
	SADir   bool // the kernel knows XFRMA_SA_DIR: send sa.Dir
	// Replay and Cur carry an SA's state over when it is re-installed
	// (a software migration): sequence numbers and lifetime counters.
	Replay *kernelops.ReplayState
	Cur    *lftCur
}

// legacyReplayMax is the largest window the legacy 32-bit bitmap holds;
// larger windows go in XFRMA_REPLAY_ESN_VAL.
const legacyReplayMax = 32

// appendSA builds NEWSA or UPDSA for sa. sa has been validated.
func appendSA(mb *msgBuilder, typ uint16, flags uint16, seq uint32, sa *kernelops.SA, o saOpts) error {
	if st := sa.Sync; st != nil && o.Replay == nil && o.Cur == nil {
		// The state it starts with goes in the NEWSA itself: the kernel
		// takes XFRMA_REPLAY_(ESN_)VAL and XFRMA_LTIME_VAL at construction
		// (xfrm_state_construct, xfrm_update_ae_params), as NEWAE would.
		o.Replay = &st.Replay
		added := st.AddTime
		if added.IsZero() {
			added = time.Now() // the kernel's own add time, which LTIME_VAL replaces
		}
		o.Cur = &lftCur{Bytes: st.Bytes, Packets: st.Packets, AddTime: unixSecs(added), UseTime: unixSecs(st.UseTime)}
	}
	mb.begin(typ, flags, seq)
	p := mb.grow(sizeUsersaInfo)
	fam := famOf(sa.ID.Dst)
	var stateFlags uint8
	switch {
	case !sa.Selector.IsZero():
		putSelector(p[0:], sa.Selector, selectorFamily(sa.Selector, sa.ID.Src))
	case sa.Mode == kernelops.ModeTunnel:
		// Any inner family: the kernel keeps sel.family AF_UNSPEC only
		// with XFRM_STATE_AF_UNSPEC, so one SA carries IPv4 and IPv6.
		stateFlags |= nl.XFRM_STATE_AF_UNSPEC
	}
	putAddr(p[56:], sa.ID.Dst)
	be.PutUint32(p[72:], sa.ID.SPI)
	p[76] = uint8(sa.ID.Proto)
	putAddr(p[80:], sa.ID.Src)
	putLftCfg(p[96:], sa.Lifetime)
	ne.PutUint32(p[208:], sa.ReqID)
	ne.PutUint16(p[212:], fam)
	p[214] = modeToKernel(sa.Mode)

	window := sa.ReplayWindow
	// Linux >= 6.10 refuses replay state on an SA marked outbound
	// (XFRMA_SA_DIR out): it sends, it checks nothing.
	dirOut := o.SADir && sa.Dir == kernelops.DirOut
	if dirOut {
		window = 0
	}
	esnAttr := sa.ESN || window > legacyReplayMax
	if sa.ESN {
		stateFlags |= nl.XFRM_STATE_ESN
		// Kernels without SA directions refuse an ESN window of 0 even
		// for outbound SAs, which never check it.
		if window == 0 && !(o.SADir && sa.Dir == kernelops.DirOut) {
			window = legacyReplayMax
		}
	}
	if !esnAttr {
		p[215] = uint8(window)
	}
	p[216] = stateFlags

	switch sa.ID.Proto {
	case kernelops.ProtoESP:
		ka, ok := encrAlgs[sa.Encryption.ID]
		if !ok {
			return fmt.Errorf("encryption %s: %w", sa.Encryption.ID, kernelops.ErrNotSupported)
		}
		if ka.Kind == algAEAD {
			if err := putAlgo(mb, nl.XFRMA_ALG_AEAD, ka.Name, sa.Encryption.Key, ka.ICV); err != nil {
				return err
			}
		} else if err := putAlgo(mb, nl.XFRMA_ALG_CRYPT, ka.Name, sa.Encryption.Key, 0); err != nil {
			return err
		}
		fallthrough
	case kernelops.ProtoAH:
		if sa.Integrity.ID != iana.IntegNone {
			ia, ok := integAlgs[sa.Integrity.ID]
			if !ok {
				return fmt.Errorf("integrity %s: %w", sa.Integrity.ID, kernelops.ErrNotSupported)
			}
			if err := putAlgo(mb, nl.XFRMA_ALG_AUTH_TRUNC, ia.Name, sa.Integrity.Key, ia.ICV); err != nil {
				return err
			}
		}
	case kernelops.ProtoIPComp:
		if err := putAlgo(mb, nl.XFRMA_ALG_COMP, "deflate", nil, 0); err != nil {
			return err
		}
	}
	if sa.Encap != nil {
		putEncap(mb, sa.Encap)
	}
	putMark(mb, sa.ID.Mark)
	if sa.IfID != 0 {
		mb.attrU32(nl.XFRMA_IF_ID, sa.IfID)
	}
	switch {
	case esnAttr:
		r := kernelops.ReplayState{Window: window}
		if o.Replay != nil {
			r = *o.Replay
			r.Window = window
		}
		words := max(bmpLen(window), 1)
		if dirOut {
			words = 0
		}
		putReplayESN(mb, r, words)
	case o.Replay != nil:
		putReplay(mb, *o.Replay)
	}
	if o.Cur != nil {
		putLftCur(mb.attr(nl.XFRMA_LTIME_VAL, sizeLftCur), *o.Cur)
	}
	// No sync events unless SetSyncThresholds asks (see sync_linux.go).
	mb.attrU32(nl.XFRMA_REPLAY_THRESH, 0)
	mb.attrU32(nl.XFRMA_ETIMER_THRESH, 0)
	if o.Offload != nil {
		a := mb.attr(nl.XFRMA_OFFLOAD_DEV, sizeOffload)
		ne.PutUint32(a[0:], uint32(int32(o.Offload.IfIndex)))
		a[4] = o.Offload.Flags
	}
	if o.SADir {
		switch sa.Dir {
		case kernelops.DirIn:
			mb.attrU8(nl.XFRMA_SA_DIR, xfrmSADirIn)
		case kernelops.DirOut:
			mb.attrU8(nl.XFRMA_SA_DIR, xfrmSADirOut)
		}
	}
	mb.end()
	return nil
}

// appendSAID builds a request addressed by SA id: DELSA or GETSA.
func appendSAID(mb *msgBuilder, typ, flags uint16, seq uint32, id kernelops.SAID) {
	mb.begin(typ, flags, seq)
	putUsersaID(mb.grow(sizeUsersaID), id)
	putMark(mb, id.Mark)
	mb.attrBytes(nl.XFRMA_SRCADDR, addrBytes(id.Src))
	mb.end()
}

func addrBytes(a netip.Addr) []byte {
	var b [sizeAddr]byte
	putAddr(b[:], a)
	return b[:]
}

// saMeta is what a decoded SA says beyond kernelops.SAEntry.
type saMeta struct {
	OffloadIfIndex int
	OffloadFlags   uint8
	HasOffload     bool
	Flags          uint8
}

var errShort = errors.New("message too short")

// decodeSA fills e from the body of a NEWSA/UPDSA message (struct
// xfrm_usersa_info and attributes). e is reset first; its slices are
// reused, so a dump allocates nothing per SA once warm.
func decodeSA(b []byte, e *kernelops.SAEntry, m *saMeta) error {
	if len(b) < sizeUsersaInfo {
		return errShort
	}
	encKey, intKey, bmp := e.Encryption.Key[:0], e.Integrity.Key[:0], e.Counters.Replay.Bitmap[:0]
	*e = kernelops.SAEntry{}
	*m = saMeta{}
	fam := ne.Uint16(b[212:])
	if fam != unix.AF_INET && fam != unix.AF_INET6 {
		return fmt.Errorf("SA address family %d", fam)
	}
	e.ID.Dst = getAddr(b[56:], fam)
	e.ID.SPI = be.Uint32(b[72:])
	e.ID.Proto = kernelops.Proto(b[76])
	e.ID.Src = getAddr(b[80:], fam)
	e.Selector, _ = getSelector(b[0:])
	e.Lifetime = getLftCfg(b[96:])
	cur := getLftCur(b[160:])
	e.Counters.Bytes, e.Counters.Packets = cur.Bytes, cur.Packets
	e.Counters.AddTime, e.Counters.FirstUse = unixTime(cur.AddTime), unixTime(cur.UseTime)
	e.Counters.ReplayDrops = uint64(ne.Uint32(b[196:]))
	e.Counters.IntegrityErrors = uint64(ne.Uint32(b[200:]))
	e.ReqID = ne.Uint32(b[208:])
	e.Mode = modeFromKernel(b[214])
	e.ReplayWindow = uint32(b[215])
	m.Flags = b[216]
	e.ESN = m.Flags&nl.XFRM_STATE_ESN != 0
	e.Counters.Replay.Window = e.ReplayWindow

	hasAlg := false
	it := newAttrIter(b[sizeUsersaInfo:])
	for a, ok := it.next(); ok; a, ok = it.next() {
		switch a.Type {
		case nl.XFRMA_ALG_AEAD:
			al, ok := getAlgo(a.Data, true)
			if !ok {
				return fmt.Errorf("XFRMA_ALG_AEAD: %w", errShort)
			}
			hasAlg = true
			e.Encryption, encKey = encryptionOf(al, false, encKey)
		case nl.XFRMA_ALG_CRYPT:
			al, ok := getAlgo(a.Data, false)
			if !ok {
				return fmt.Errorf("XFRMA_ALG_CRYPT: %w", errShort)
			}
			hasAlg = true
			e.Encryption, encKey = encryptionOf(al, true, encKey)
		case nl.XFRMA_ALG_AUTH_TRUNC:
			al, ok := getAlgo(a.Data, true)
			if !ok {
				return fmt.Errorf("XFRMA_ALG_AUTH_TRUNC: %w", errShort)
			}
			hasAlg = true
			id, _ := integByKernel(al.Name, al.ICV)
			intKey = append(intKey, al.Key...)
			e.Integrity = kernelops.Integrity{ID: id, Key: intKey}
		case nl.XFRMA_ALG_COMP:
			hasAlg = true
		case nl.XFRMA_ENCAP:
			enc, ok := getEncap(a.Data, fam)
			if !ok {
				return fmt.Errorf("XFRMA_ENCAP: %w", errShort)
			}
			e.Encap = enc
		case nl.XFRMA_MARK:
			e.ID.Mark = getMark(a.Data)
			e.Mark = e.ID.Mark
		case nl.XFRMA_IF_ID:
			if len(a.Data) >= 4 {
				e.IfID = ne.Uint32(a.Data)
			}
		case nl.XFRMA_SA_DIR:
			if len(a.Data) >= 1 {
				switch a.Data[0] {
				case xfrmSADirIn:
					e.Dir = kernelops.DirIn
				case xfrmSADirOut:
					e.Dir = kernelops.DirOut
				}
			}
		case nl.XFRMA_LASTUSED:
			if len(a.Data) >= 8 {
				e.Counters.LastUsed = unixTime(ne.Uint64(a.Data))
			}
		case nl.XFRMA_REPLAY_VAL:
			if r, ok := getReplay(a.Data); ok {
				bmp = append(bmp[:0], r.Bitmap...)
				e.Counters.Replay = kernelops.ReplayState{OSeq: r.OSeq, Seq: r.Seq, Window: e.ReplayWindow, Bitmap: bmp}
			}
		case nl.XFRMA_REPLAY_ESN_VAL:
			r, ok := getReplayESN(a.Data, bmp)
			if !ok {
				return fmt.Errorf("XFRMA_REPLAY_ESN_VAL: %w", errShort)
			}
			bmp = r.Bitmap
			e.ReplayWindow = r.Window
			e.Counters.Replay = kernelops.ReplayState{OSeq: r.OSeq, Seq: r.Seq, Window: r.Window, Bitmap: bmp}
		case nl.XFRMA_OFFLOAD_DEV:
			if len(a.Data) >= 5 {
				m.HasOffload = true
				m.OffloadIfIndex = int(int32(ne.Uint32(a.Data)))
				m.OffloadFlags = a.Data[4]
				mode := kernelops.OffloadCrypto
				if m.OffloadFlags&xfrmOffloadPacket != 0 {
					mode = kernelops.OffloadPacket
				}
				e.Offload = kernelops.Offload{Mode: mode, Active: mode}
			}
		}
	}
	if it.err != nil {
		return it.err
	}
	switch {
	case !hasAlg && e.ID.Proto != kernelops.ProtoIPComp:
		e.State = kernelops.SALarval
	case softReached(e.Lifetime.Soft, cur, time.Now()):
		e.State = kernelops.SADying
	}
	return nil
}

// encryptionOf maps a kernel cipher back to its IANA id, splitting the
// key length into the IKE key size and the salt.
func encryptionOf(al algo, crypt bool, key []byte) (kernelops.Encryption, []byte) {
	icv := al.ICV
	if crypt {
		icv = 0
	}
	id, ok := encrByKernel(al.Name, icv)
	key = append(key, al.Key...)
	enc := kernelops.Encryption{ID: id, Key: key}
	if ok {
		if info, _ := id.Info(); info.KeyBits != nil {
			enc.KeyBits = al.KeyLen - info.Salt*8
		}
	}
	return enc, key
}

// softReached reports whether a soft limit has been reached.
func softReached(l kernelops.Limits, c lftCur, now time.Time) bool {
	switch {
	case l.Bytes != 0 && c.Bytes >= l.Bytes,
		l.Packets != 0 && c.Packets >= l.Packets,
		l.AddTime != 0 && c.AddTime != 0 && now.Sub(unixTime(c.AddTime)) >= l.AddTime,
		l.UseTime != 0 && c.UseTime != 0 && now.Sub(unixTime(c.UseTime)) >= l.UseTime:
		return true
	}
	return false
}

// saIDOf reads the SA id and reqid from struct xfrm_usersa_info only: the
// fast path of usage scans and ownership checks.
func saIDOf(b []byte) (kernelops.SAID, uint32, bool) {
	if len(b) < sizeUsersaInfo {
		return kernelops.SAID{}, 0, false
	}
	fam := ne.Uint16(b[212:])
	if fam != unix.AF_INET && fam != unix.AF_INET6 {
		return kernelops.SAID{}, 0, false
	}
	return kernelops.SAID{Dst: getAddr(b[56:], fam), SPI: be.Uint32(b[72:]),
		Proto: kernelops.Proto(b[76]), Src: getAddr(b[80:], fam)}, ne.Uint32(b[208:]), true
}

// decodeUsage reads what an idle scan needs from a NEWSA body.
func decodeUsage(b []byte, u *kernelops.Usage) error {
	id, reqid, ok := saIDOf(b)
	if !ok {
		return errShort
	}
	cur := getLftCur(b[160:])
	*u = kernelops.Usage{ID: id, ReqID: reqid, Bytes: cur.Bytes, Packets: cur.Packets, AddTime: unixTime(cur.AddTime)}
	it := newAttrIter(b[sizeUsersaInfo:])
	for a, ok := it.next(); ok; a, ok = it.next() {
		switch a.Type {
		case nl.XFRMA_LASTUSED:
			if len(a.Data) >= 8 {
				u.LastUsed = unixTime(ne.Uint64(a.Data))
			}
		case nl.XFRMA_MARK:
			u.ID.Mark = getMark(a.Data)
		}
	}
	return it.err
}

// saOwnerInfo reads the id, reqid and mark of a NEWSA body.
func saOwnerInfo(b []byte) (kernelops.SAID, uint32, bool) {
	id, reqid, ok := saIDOf(b)
	if !ok {
		return id, 0, false
	}
	it := newAttrIter(b[sizeUsersaInfo:])
	for a, ok := it.next(); ok; a, ok = it.next() {
		if a.Type == nl.XFRMA_MARK {
			id.Mark = getMark(a.Data)
		}
	}
	return id, reqid, true
}
