package xfrm

import (
	"encoding/binary"
	"fmt"
	"math"
	"net/netip"
	"time"

	"github.com/keyplane/keyplane/kernelops"
	"github.com/vishvananda/netlink/nl"
	"golang.org/x/sys/unix"
)

// XFRM structures as laid out by include/uapi/linux/xfrm.h on Linux's
// 64-bit ABIs (the kernel pads u64-bearing structs to 8). Multi-byte
// fields are native-endian except SPIs and ports, which are big-endian.
// Every decoder checks lengths first: these bytes come from the kernel
// and are fuzzed.

var be = binary.BigEndian

const (
	sizeAddr        = 16
	sizeSelector    = 56
	sizeLftCfg      = 64
	sizeLftCur      = 32
	sizeUsersaInfo  = 224
	sizeUsersaID    = 24
	sizeUserSPIInfo = 232
	sizePolicyInfo  = 168
	sizePolicyID    = 64
	sizeUserTmpl    = 64
	sizeUserExpire  = 232
	sizePolExpire   = 176
	sizeAcquire     = 280
	sizeMapping     = 64
	sizeAeventID    = 48
	sizeUserMigrate = 76
	sizeKmAddress   = 40
	sizeOffload     = 8
	sizeEncapTmpl   = 24
	sizeReplay      = 12
	sizeReplayESN   = 24 // without the bitmap
	sizeMark        = 8
	sizeAlgo        = 68 // name[64] + key_len
	sizeAlgoAuth    = 72 // name[64] + key_len + trunc/icv len
	sizePolicyType  = 6

	xfrmInf = math.MaxUint64

	// uapi constants the nl package lacks.
	xfrmModeTransport = 0
	xfrmModeTunnel    = 1

	xfrmPolicyAllow = 0
	xfrmPolicyBlock = 1

	xfrmPolicyIn  = 0
	xfrmPolicyOut = 1
	xfrmPolicyFwd = 2

	xfrmOffloadIPv6    = 1
	xfrmOffloadInbound = 2
	xfrmOffloadPacket  = 4

	xfrmSADirIn  = 1
	xfrmSADirOut = 2

	// enum xfrm_ae_ftype_t
	xfrmAERthr = 1  // replay threshold
	xfrmAERval = 2  // replay value
	xfrmAELval = 4  // lifetime value
	xfrmAEEthr = 8  // expiry timer threshold
	xfrmAECR   = 16 // event cause: replay update
	xfrmAECE   = 32 // event cause: timer expired
	xfrmAECU   = 64 // event cause: updated by NEWAE

	udpEncapESPinUDP = 2
)

// netipZero is the invalid address, a readable fallback argument.
var netipZero netip.Addr

// famOf returns the address family number of a.
func famOf(a netip.Addr) uint16 {
	if a.Is4() {
		return unix.AF_INET
	}
	return unix.AF_INET6
}

func putAddr(b []byte, a netip.Addr) {
	clear(b[:sizeAddr])
	if !a.IsValid() {
		return
	}
	if a.Is4() {
		v := a.As4()
		copy(b, v[:])
		return
	}
	v := a.As16()
	copy(b, v[:])
}

// getAddr reads an xfrm_address_t of family fam; an unknown family gives
// the zero Addr.
func getAddr(b []byte, fam uint16) netip.Addr {
	switch fam {
	case unix.AF_INET:
		return netip.AddrFrom4([4]byte(b[:4]))
	case unix.AF_INET6:
		return netip.AddrFrom16([16]byte(b[:16]))
	}
	return netip.Addr{}
}

func isZero(b []byte) bool {
	for _, c := range b {
		if c != 0 {
			return false
		}
	}
	return true
}

// selectorFamily picks the family for a selector: the selector's own,
// else fallback's.
func selectorFamily(s kernelops.Selector, fallback netip.Addr) uint16 {
	switch {
	case s.Src.IsValid():
		return famOf(s.Src.Addr())
	case s.Dst.IsValid():
		return famOf(s.Dst.Addr())
	case fallback.IsValid():
		return famOf(fallback)
	}
	return unix.AF_INET
}

// putSelector writes struct xfrm_selector.
func putSelector(b []byte, s kernelops.Selector, fam uint16) {
	clear(b[:sizeSelector])
	if s.Dst.IsValid() {
		putAddr(b[0:], s.Dst.Addr())
		b[42] = uint8(s.Dst.Bits())
	}
	if s.Src.IsValid() {
		putAddr(b[16:], s.Src.Addr())
		b[43] = uint8(s.Src.Bits())
	}
	if s.DstPort != 0 {
		be.PutUint16(b[32:], s.DstPort)
		be.PutUint16(b[34:], 0xffff)
	}
	if s.SrcPort != 0 {
		be.PutUint16(b[36:], s.SrcPort)
		be.PutUint16(b[38:], 0xffff)
	}
	ne.PutUint16(b[40:], fam)
	b[44] = s.Proto
}

// getSelector reads struct xfrm_selector, in canonical form (canonSel).
func getSelector(b []byte) (kernelops.Selector, uint16) {
	fam := ne.Uint16(b[40:])
	var s kernelops.Selector
	pfx := func(addr []byte, bits uint8) netip.Prefix {
		a := getAddr(addr, fam)
		if !a.IsValid() || int(bits) > a.BitLen() {
			return netip.Prefix{}
		}
		p, _ := a.Prefix(int(bits))
		return p
	}
	s.Dst = pfx(b[0:16], b[42])
	s.Src = pfx(b[16:32], b[43])
	if be.Uint16(b[34:]) != 0 {
		s.DstPort = be.Uint16(b[32:])
	}
	if be.Uint16(b[38:]) != 0 {
		s.SrcPort = be.Uint16(b[36:])
	}
	s.Proto = b[44]
	return canonSel(s), fam
}

// canonSel is the one spelling of a selector that reads back unchanged:
// a /0 prefix is "any" (the zero Prefix), and since a selector of two
// zero prefixes installs as IPv4, an IPv6 match-all keeps ::/0 on both
// sides to say its family.
func canonSel(s kernelops.Selector) kernelops.Selector {
	v6 := (s.Src.IsValid() && s.Src.Addr().Is6()) || (s.Dst.IsValid() && s.Dst.Addr().Is6())
	if s.Src.IsValid() && s.Src.Bits() == 0 {
		s.Src = netip.Prefix{}
	}
	if s.Dst.IsValid() && s.Dst.Bits() == 0 {
		s.Dst = netip.Prefix{}
	}
	if v6 && !s.Src.IsValid() && !s.Dst.IsValid() {
		s.Src = netip.PrefixFrom(netip.IPv6Unspecified(), 0)
		s.Dst = s.Src
	}
	return s
}

// canonID is id with its selector in canonical form.
func canonID(id kernelops.PolicyID) kernelops.PolicyID {
	id.Selector = canonSel(id.Selector)
	return id
}

// secs converts a time limit; the kernel reads 0 as "no limit" for time
// fields (and XFRM_INF for byte and packet fields: a 0 there expires at once).
func secs(d time.Duration) uint64 {
	if d <= 0 {
		return 0
	}
	return uint64((d + time.Second - 1) / time.Second)
}

func limit(v uint64) uint64 {
	if v == 0 {
		return xfrmInf
	}
	return v
}

// putLftCfg writes struct xfrm_lifetime_cfg; zero limits are no limits.
func putLftCfg(b []byte, l kernelops.Lifetimes) {
	ne.PutUint64(b[0:], limit(l.Soft.Bytes))
	ne.PutUint64(b[8:], limit(l.Hard.Bytes))
	ne.PutUint64(b[16:], limit(l.Soft.Packets))
	ne.PutUint64(b[24:], limit(l.Hard.Packets))
	ne.PutUint64(b[32:], secs(l.Soft.AddTime))
	ne.PutUint64(b[40:], secs(l.Hard.AddTime))
	ne.PutUint64(b[48:], secs(l.Soft.UseTime))
	ne.PutUint64(b[56:], secs(l.Hard.UseTime))
}

func getLftCfg(b []byte) kernelops.Lifetimes {
	v := func(off int) uint64 {
		x := ne.Uint64(b[off:])
		if x == xfrmInf {
			return 0
		}
		return x
	}
	d := func(off int) time.Duration {
		x := v(off)
		if x > uint64(math.MaxInt64/int64(time.Second)) {
			return 0
		}
		return time.Duration(x) * time.Second
	}
	return kernelops.Lifetimes{
		Soft: kernelops.Limits{Bytes: v(0), Packets: v(16), AddTime: d(32), UseTime: d(48)},
		Hard: kernelops.Limits{Bytes: v(8), Packets: v(24), AddTime: d(40), UseTime: d(56)},
	}
}

// lftCur is struct xfrm_lifetime_cur.
type lftCur struct {
	Bytes, Packets, AddTime, UseTime uint64
}

func getLftCur(b []byte) lftCur {
	return lftCur{ne.Uint64(b[0:]), ne.Uint64(b[8:]), ne.Uint64(b[16:]), ne.Uint64(b[24:])}
}

func putLftCur(b []byte, c lftCur) {
	ne.PutUint64(b[0:], c.Bytes)
	ne.PutUint64(b[8:], c.Packets)
	ne.PutUint64(b[16:], c.AddTime)
	ne.PutUint64(b[24:], c.UseTime)
}

// unixTime turns kernel seconds into a time; 0 is "never".
func unixTime(s uint64) time.Time {
	if s == 0 || s > math.MaxInt64/2 {
		return time.Time{}
	}
	return time.Unix(int64(s), 0)
}

func unixSecs(t time.Time) uint64 {
	if t.IsZero() {
		return 0
	}
	return uint64(t.Unix())
}

// putUsersaID writes struct xfrm_usersa_id for id.
func putUsersaID(b []byte, id kernelops.SAID) {
	putAddr(b[0:], id.Dst)
	be.PutUint32(b[16:], id.SPI)
	ne.PutUint16(b[20:], famOf(id.Dst))
	b[22] = uint8(id.Proto)
}

// getUsersaID reads struct xfrm_usersa_id (without the source address,
// which travels in XFRMA_SRCADDR).
func getUsersaID(b []byte) (dst netip.Addr, spi uint32, fam uint16, proto uint8) {
	fam = ne.Uint16(b[20:])
	return getAddr(b[0:], fam), be.Uint32(b[16:]), fam, b[22]
}

// putMark writes XFRMA_MARK when m is set.
func putMark(mb *msgBuilder, m kernelops.Mark) {
	if m.IsZero() {
		return
	}
	p := mb.attr(nl.XFRMA_MARK, sizeMark)
	ne.PutUint32(p[0:], m.Value)
	ne.PutUint32(p[4:], m.Mask)
}

func getMark(b []byte) kernelops.Mark {
	if len(b) < sizeMark {
		return kernelops.Mark{}
	}
	return kernelops.Mark{Value: ne.Uint32(b[0:]), Mask: ne.Uint32(b[4:])}
}

func putAlgo(mb *msgBuilder, typ uint16, name string, key []byte, icvOrTrunc int) error {
	if len(name) >= 64 {
		return fmt.Errorf("algorithm name %q too long", name)
	}
	hdr := sizeAlgo
	if typ != nl.XFRMA_ALG_CRYPT && typ != nl.XFRMA_ALG_COMP {
		hdr = sizeAlgoAuth
	}
	p := mb.attr(typ, hdr+len(key))
	copy(p[0:64], name)
	ne.PutUint32(p[64:], uint32(len(key)*8))
	if hdr == sizeAlgoAuth {
		ne.PutUint32(p[68:], uint32(icvOrTrunc))
	}
	copy(p[hdr:], key)
	return nil
}

// algo is a decoded xfrm_algo / xfrm_algo_auth / xfrm_algo_aead.
type algo struct {
	Name   string
	KeyLen int // bits
	ICV    int // trunc_len or icv_len in bits; 0 for xfrm_algo
	Key    []byte
}

func getAlgo(b []byte, withICV bool) (algo, bool) {
	hdr := sizeAlgo
	if withICV {
		hdr = sizeAlgoAuth
	}
	if len(b) < hdr {
		return algo{}, false
	}
	a := algo{Name: cString(b[0:64]), KeyLen: int(ne.Uint32(b[64:]))}
	if withICV {
		a.ICV = int(ne.Uint32(b[68:]))
	}
	n := (a.KeyLen + 7) / 8
	if n > len(b)-hdr {
		return algo{}, false
	}
	a.Key = b[hdr : hdr+n]
	return a, true
}

// replay is the anti-replay state in either kernel form.
type replay struct {
	ESN    bool // decoded from XFRMA_REPLAY_ESN_VAL
	OSeq   uint64
	Seq    uint64
	Window uint32
	Bitmap []uint32
}

func getReplay(b []byte) (replay, bool) {
	if len(b) < sizeReplay {
		return replay{}, false
	}
	return replay{OSeq: uint64(ne.Uint32(b[0:])), Seq: uint64(ne.Uint32(b[4:])),
		Bitmap: []uint32{ne.Uint32(b[8:])}}, true
}

// maxBmpLen is the kernel's limit on the ESN bitmap (XFRMA_REPLAY_ESN_MAX
// bits): 128 words, a 4096-packet window.
const maxBmpLen = 4096 / 32

func getReplayESN(b []byte, bmp []uint32) (replay, bool) {
	if len(b) < sizeReplayESN {
		return replay{}, false
	}
	n := int(ne.Uint32(b[0:]))
	if n > maxBmpLen || len(b) < sizeReplayESN+4*n {
		return replay{}, false
	}
	r := replay{ESN: true,
		OSeq:   uint64(ne.Uint32(b[12:]))<<32 | uint64(ne.Uint32(b[4:])),
		Seq:    uint64(ne.Uint32(b[16:]))<<32 | uint64(ne.Uint32(b[8:])),
		Window: ne.Uint32(b[20:]),
	}
	bmp = bmp[:0]
	for i := range n {
		bmp = append(bmp, ne.Uint32(b[sizeReplayESN+4*i:]))
	}
	r.Bitmap = bmp
	return r, true
}

// bmpLen is the bitmap length in words for a window of w packets.
func bmpLen(w uint32) int { return int((w + 31) / 32) }

func putReplayESN(mb *msgBuilder, r kernelops.ReplayState, words int) {
	p := mb.attr(nl.XFRMA_REPLAY_ESN_VAL, sizeReplayESN+4*words)
	ne.PutUint32(p[0:], uint32(words))
	ne.PutUint32(p[4:], uint32(r.OSeq))
	ne.PutUint32(p[8:], uint32(r.Seq))
	ne.PutUint32(p[12:], uint32(r.OSeq>>32))
	ne.PutUint32(p[16:], uint32(r.Seq>>32))
	ne.PutUint32(p[20:], r.Window)
	for i := 0; i < words && i < len(r.Bitmap); i++ {
		ne.PutUint32(p[sizeReplayESN+4*i:], r.Bitmap[i])
	}
}

func putReplay(mb *msgBuilder, r kernelops.ReplayState) {
	p := mb.attr(nl.XFRMA_REPLAY_VAL, sizeReplay)
	ne.PutUint32(p[0:], uint32(r.OSeq))
	ne.PutUint32(p[4:], uint32(r.Seq))
	if len(r.Bitmap) > 0 {
		ne.PutUint32(p[8:], r.Bitmap[0])
	}
}

// encap is a decoded xfrm_encap_tmpl.
func getEncap(b []byte, fam uint16) (*kernelops.Encap, bool) {
	if len(b) < sizeEncapTmpl {
		return nil, false
	}
	e := &kernelops.Encap{SrcPort: be.Uint16(b[2:]), DstPort: be.Uint16(b[4:])}
	if !isZero(b[8:24]) {
		e.OrigAddr = getAddr(b[8:], fam)
	}
	return e, true
}

func putEncap(mb *msgBuilder, e *kernelops.Encap) {
	p := mb.attr(nl.XFRMA_ENCAP, sizeEncapTmpl)
	ne.PutUint16(p[0:], udpEncapESPinUDP)
	be.PutUint16(p[2:], e.SrcPort)
	be.PutUint16(p[4:], e.DstPort)
	putAddr(p[8:], e.OrigAddr)
}

func modeToKernel(m kernelops.Mode) uint8 {
	if m == kernelops.ModeTunnel {
		return xfrmModeTunnel
	}
	return xfrmModeTransport
}

func modeFromKernel(m uint8) kernelops.Mode {
	if m == xfrmModeTunnel {
		return kernelops.ModeTunnel
	}
	return kernelops.ModeTransport
}

func dirToKernel(d kernelops.Direction) uint8 {
	switch d {
	case kernelops.DirIn:
		return xfrmPolicyIn
	case kernelops.DirFwd:
		return xfrmPolicyFwd
	}
	return xfrmPolicyOut
}

func dirFromKernel(d uint8) kernelops.Direction {
	switch d {
	case xfrmPolicyIn:
		return kernelops.DirIn
	case xfrmPolicyOut:
		return kernelops.DirOut
	case xfrmPolicyFwd:
		return kernelops.DirFwd
	}
	return kernelops.DirAny
}
