package sadb

import (
	"fmt"
	"strings"
)

// Header is struct sadb_msg.
type Header struct {
	Version  uint8 // Version; Marshal writes 2 when zero
	Type     MsgType
	Errno    uint8
	SAType   SAType
	Reserved uint16 // Linux puts a policy's refcount here in replies
	Seq      uint32
	PID      uint32
}

// Msg is a PF_KEY message: a header and its extensions in wire order.
type Msg struct {
	Header
	Exts []Ext
}

// Marshal encodes m in dialect d, computing every length field and
// padding every extension to 8 bytes.
func (m *Msg) Marshal(d *Dialect) ([]byte, error) {
	return m.AppendTo(d, make([]byte, 0, 256))
}

// AppendTo appends m's encoding to b.
func (m *Msg) AppendTo(d *Dialect, b []byte) ([]byte, error) {
	start := len(b)
	v := m.Version
	if v == 0 {
		v = Version
	}
	b = append(b, v, byte(m.Type), m.Errno, byte(m.SAType))
	b = d.Order.AppendUint16(b, 0) // length, set below
	b = d.Order.AppendUint16(b, m.Reserved)
	b = d.Order.AppendUint32(b, m.Seq)
	b = d.Order.AppendUint32(b, m.PID)
	seen := make(map[ExtType]bool, len(m.Exts))
	for _, e := range m.Exts {
		t := e.Type(d)
		if t == 0 {
			return nil, merr(0, fmt.Sprintf("%T", e), ErrAbsent, "%s has no such extension", d.Name)
		}
		if seen[t] {
			return nil, merr(t, "sadb_ext_type", ErrDuplicate, "%s twice", d.ExtName(t))
		}
		seen[t] = true
		es := len(b)
		b = append(b, 0, 0, 0, 0)
		var err error
		if b, err = e.appendBody(d, b); err != nil {
			if me, ok := err.(*MarshalError); ok && me.Ext == 0 {
				me.Ext = t
			}
			return nil, err
		}
		for (len(b)-es)%8 != 0 {
			b = append(b, 0)
		}
		n := (len(b) - es) / 8
		if n > 0xffff {
			return nil, merr(t, "sadb_ext_len", ErrLength, "%d bytes", len(b)-es)
		}
		d.Order.PutUint16(b[es:], uint16(n))
		d.Order.PutUint16(b[es+2:], uint16(t))
	}
	total := len(b) - start
	if total > MaxLen {
		return nil, merr(0, "sadb_msg_len", ErrLength, "%d bytes", total)
	}
	d.Order.PutUint16(b[start+4:], uint16(total/8))
	return b, nil
}

// Parse decodes one message in dialect d. b must hold exactly the
// message, as one read from a PF_KEY socket returns it.
func Parse(d *Dialect, b []byte) (*Msg, error) {
	if len(b) < HeaderLen {
		return nil, perr(0, 0, "sadb_msg", ErrTruncated, "%d bytes, want at least %d", len(b), HeaderLen)
	}
	m := &Msg{Header: Header{
		Version:  b[0],
		Type:     MsgType(b[1]),
		Errno:    b[2],
		SAType:   SAType(b[3]),
		Reserved: d.Order.Uint16(b[6:8]),
		Seq:      d.Order.Uint32(b[8:12]),
		PID:      d.Order.Uint32(b[12:16]),
	}}
	if m.Version != Version {
		return nil, perr(0, 0, "sadb_msg_version", ErrVersion, "version %d", m.Version)
	}
	n := int(d.Order.Uint16(b[4:6])) * 8
	switch {
	case n < HeaderLen:
		return nil, perr(0, 0, "sadb_msg_len", ErrLength, "%d bytes is shorter than the header", n)
	case n > len(b):
		return nil, perr(0, 0, "sadb_msg_len", ErrTruncated, "says %d bytes, have %d", n, len(b))
	case n < len(b):
		return nil, perr(0, 0, "sadb_msg_len", ErrLength, "says %d bytes, have %d", n, len(b))
	}
	var seen [1 << 16 / 64]uint64 // bit set of extension types
	for off := HeaderLen; off < n; {
		if n-off < 8 {
			return nil, perr(off, 0, "sadb_ext", ErrTruncated, "%d bytes left", n-off)
		}
		elen := int(d.Order.Uint16(b[off:])) * 8
		t := ExtType(d.Order.Uint16(b[off+2:]))
		switch {
		case elen < 8:
			return nil, perr(off, t, "sadb_ext_len", ErrLength, "zero length")
		case elen > n-off:
			return nil, perr(off, t, "sadb_ext_len", ErrTruncated, "says %d bytes, %d left", elen, n-off)
		case t == ExtReserved:
			return nil, perr(off, t, "sadb_ext_type", ErrReserved, "")
		}
		if seen[t/64]&(1<<(t%64)) != 0 {
			return nil, perr(off, t, "sadb_ext_type", ErrDuplicate, "%s twice", d.ExtName(t))
		}
		seen[t/64] |= 1 << (t % 64)
		e, err := d.parseExt(t, b[off:off+elen], off)
		if err != nil {
			return nil, err
		}
		m.Exts = append(m.Exts, e)
		off += elen
	}
	return m, nil
}

// parseExt decodes one extension; e holds it whole, header included.
func (d *Dialect) parseExt(t ExtType, e []byte, off int) (Ext, error) {
	bad := func(field string, err error, format string, args ...any) error {
		return perr(off, t, field, err, format, args...)
	}
	exact := func(want int) error {
		if len(e) != want {
			return bad("sadb_ext_len", ErrLength, "%d bytes, want %d", len(e), want)
		}
		return nil
	}
	o := d.Order
	switch d.kind(t) {
	case kSA:
		if len(e) < 16 {
			return nil, bad("sadb_ext_len", ErrLength, "%d bytes, want at least 16", len(e))
		}
		x := &SA{SPI: uint32(e[4])<<24 | uint32(e[5])<<16 | uint32(e[6])<<8 | uint32(e[7]),
			Replay: e[8], State: e[9], Auth: e[10], Encrypt: e[11], Flags: o.Uint32(e[12:16])}
		if len(e) > 16 {
			x.Tail = append([]byte(nil), e[16:]...)
		}
		return x, nil
	case kLifetime:
		if err := exact(32); err != nil {
			return nil, err
		}
		return &Lifetime{T: t, Allocations: o.Uint32(e[4:8]), Bytes: o.Uint64(e[8:16]),
			AddTime: o.Uint64(e[16:24]), UseTime: o.Uint64(e[24:32])}, nil
	case kAddress:
		a, n, err := d.parseSockaddr(e[8:])
		if err != nil {
			return nil, bad("sockaddr", err, "in a %d-byte extension", len(e))
		}
		if err := exact(align8(8 + n)); err != nil {
			return nil, err
		}
		if int(e[5]) > a.Addr().BitLen() {
			return nil, bad("sadb_address_prefixlen", ErrPrefix, "/%d for %s", e[5], a.Addr())
		}
		return &Address{T: t, Proto: e[4], PrefixLen: e[5], Addr: a}, nil
	case kKey:
		bits := o.Uint16(e[4:6])
		nb := (int(bits) + 7) / 8
		if align8(8+nb) != len(e) {
			return nil, bad("sadb_key_bits", ErrLength, "%d bits in a %d-byte extension", bits, len(e))
		}
		return &Key{T: t, Bits: bits, Data: append([]byte(nil), e[8:8+nb]...)}, nil
	case kIdentity:
		if len(e) < 16 {
			return nil, bad("sadb_ext_len", ErrLength, "%d bytes, want at least 16", len(e))
		}
		return &Identity{T: t, IdentType: o.Uint16(e[4:6]), ID: o.Uint64(e[8:16]),
			Data: append([]byte(nil), e[16:]...)}, nil
	case kSensitivity:
		if len(e) < 16 {
			return nil, bad("sadb_ext_len", ErrLength, "%d bytes, want at least 16", len(e))
		}
		sl, il := int(e[9]), int(e[11])
		if err := exact(16 + 8*(sl+il)); err != nil {
			return nil, err
		}
		x := &Sensitivity{DPD: o.Uint32(e[4:8]), SensLevel: e[8], IntegLevel: e[10]}
		for i := range sl {
			x.SensBitmap = append(x.SensBitmap, o.Uint64(e[16+8*i:]))
		}
		for i := range il {
			x.IntegBitmap = append(x.IntegBitmap, o.Uint64(e[16+8*(sl+i):]))
		}
		return x, nil
	case kProposal:
		if (len(e)-8)%combLen != 0 {
			return nil, bad("sadb_prop_len", ErrLength, "%d bytes of combinations, not a multiple of %d", len(e)-8, combLen)
		}
		x := &Proposal{Replay: e[4]}
		for c := e[8:]; len(c) > 0; c = c[combLen:] {
			x.Combs = append(x.Combs, Comb{Auth: c[0], Encrypt: c[1], Flags: o.Uint16(c[2:]),
				AuthMinBits: o.Uint16(c[4:]), AuthMaxBits: o.Uint16(c[6:]),
				EncryptMinBits: o.Uint16(c[8:]), EncryptMaxBits: o.Uint16(c[10:]),
				SoftAllocations: o.Uint32(c[16:]), HardAllocations: o.Uint32(c[20:]),
				SoftBytes: o.Uint64(c[24:]), HardBytes: o.Uint64(c[32:]),
				SoftAddTime: o.Uint64(c[40:]), HardAddTime: o.Uint64(c[48:]),
				SoftUseTime: o.Uint64(c[56:]), HardUseTime: o.Uint64(c[64:])})
		}
		return x, nil
	case kSupported:
		x := &Supported{T: t}
		for a := e[8:]; len(a) > 0; a = a[8:] {
			x.Algs = append(x.Algs, Alg{ID: a[0], IVLen: a[1], MinBits: o.Uint16(a[2:]), MaxBits: o.Uint16(a[4:])})
		}
		return x, nil
	case kSPIRange:
		if err := exact(16); err != nil {
			return nil, err
		}
		return &SPIRange{Min: o.Uint32(e[4:8]), Max: o.Uint32(e[8:12])}, nil
	case kKMPrivate:
		return &KMPrivate{Data: append([]byte(nil), e[8:]...)}, nil
	case kPolicy:
		if len(e) < 16 {
			return nil, bad("sadb_ext_len", ErrLength, "%d bytes, want at least 16", len(e))
		}
		x := &Policy{PolicyType: o.Uint16(e[4:6]), Dir: e[6], Reserved: e[7], ID: o.Uint32(e[8:12]),
			Priority: o.Uint32(e[12:16])}
		for r, roff := e[16:], off+16; len(r) > 0; {
			req, n, err := d.parseRequest(r, roff)
			if err != nil {
				return nil, err
			}
			x.Requests = append(x.Requests, req)
			r, roff = r[n:], roff+n
		}
		return x, nil
	case kSA2:
		if err := exact(16); err != nil {
			return nil, err
		}
		return &SA2{Mode: e[4], Reserved1: e[5], Reserved2: o.Uint16(e[6:8]), Sequence: o.Uint32(e[8:12]),
			ReqID: o.Uint32(e[12:16])}, nil
	case kNATTType:
		if err := exact(8); err != nil {
			return nil, err
		}
		return &NATTType{EncapType: e[4]}, nil
	case kNATTPort:
		if err := exact(8); err != nil {
			return nil, err
		}
		return &NATTPort{Dst: t == d.ExtNATTDport, Port: uint16(e[4])<<8 | uint16(e[5])}, nil
	case kNATTFrag:
		if err := exact(8); err != nil {
			return nil, err
		}
		return &NATTFrag{FragLen: o.Uint16(e[4:6])}, nil
	case kSAReplay:
		if err := exact(8); err != nil {
			return nil, err
		}
		return &SAReplay{Replay: o.Uint32(e[4:8])}, nil
	case kKMAddress:
		l, n1, err := d.parseSockaddr(e[8:])
		if err != nil {
			return nil, bad("local sockaddr", err, "")
		}
		r, n2, err := d.parseSockaddr(e[8+n1:])
		if err != nil {
			return nil, bad("remote sockaddr", err, "")
		}
		if n1 != n2 {
			return nil, bad("remote sockaddr", ErrFamily, "mixed families")
		}
		if err := exact(8 + align8(n1+n2)); err != nil {
			return nil, err
		}
		return &KMAddress{Reserved: o.Uint32(e[4:8]), Local: l.Addr(), Remote: r.Addr()}, nil
	case kSecCtx:
		cl := int(o.Uint16(e[6:8]))
		if err := exact(align8(8 + cl)); err != nil {
			return nil, err
		}
		return &SecCtx{Alg: e[4], DOI: e[5], Ctx: append([]byte(nil), e[8:8+cl]...)}, nil
	case kFilter:
		if err := exact(40); err != nil {
			return nil, err
		}
		fam := o.Uint16(e[36:38])
		x := &Filter{SPLen: e[38], DPLen: e[39]}
		switch fam {
		case d.AFInet:
			x.Src, x.Dst = netipFrom4(e[4:8]), netipFrom4(e[20:24])
		case d.AFInet6:
			x.Src, x.Dst = netipFrom16(e[4:20]), netipFrom16(e[20:36])
		default:
			return nil, bad("sadb_x_filter_family", ErrFamily, "family %d", fam)
		}
		if int(x.SPLen) > x.Src.BitLen() || int(x.DPLen) > x.Dst.BitLen() {
			return nil, bad("sadb_x_filter_splen", ErrPrefix, "/%d, /%d", x.SPLen, x.DPLen)
		}
		return x, nil
	}
	return &Raw{T: t, Data: append([]byte(nil), e[4:]...)}, nil
}

// parseRequest decodes the ipsecrequest at r and returns its length.
func (d *Dialect) parseRequest(r []byte, off int) (Request, int, error) {
	bad := func(field string, err error, format string, args ...any) error {
		return perr(off, ExtPolicy, "sadb_x_ipsecrequest."+field, err, format, args...)
	}
	if len(r) < d.RequestLen {
		return Request{}, 0, bad("len", ErrTruncated, "%d bytes left, want %d", len(r), d.RequestLen)
	}
	o := d.Order
	n := int(o.Uint16(r[0:2]))
	if n < d.RequestLen || n > len(r) {
		return Request{}, 0, bad("len", ErrLength, "%d bytes with %d left", n, len(r))
	}
	q := Request{Proto: o.Uint16(r[2:4]), Mode: r[4], Level: r[5]}
	if d.RequestLen == 16 {
		q.ReqID = o.Uint32(r[8:12])
	} else {
		q.ReqID = uint32(o.Uint16(r[6:8]))
	}
	if n > d.RequestLen {
		src, n1, err := d.parseSockaddr(r[d.RequestLen:n])
		if err != nil {
			return Request{}, 0, bad("src", err, "")
		}
		dst, n2, err := d.parseSockaddr(r[d.RequestLen+n1 : n])
		if err != nil {
			return Request{}, 0, bad("dst", err, "")
		}
		if n1 != n2 {
			return Request{}, 0, bad("dst", ErrFamily, "mixed families %v, %v", src, dst)
		}
		if align8(d.RequestLen+n1+n2) != n {
			return Request{}, 0, bad("len", ErrLength, "%d bytes for two %d-byte sockaddrs", n, n1)
		}
		q.Src, q.Dst = src, dst
	}
	return q, n, nil
}

// Ext returns the first extension of type t in dialect d, or nil.
func (m *Msg) Ext(d *Dialect, t ExtType) Ext {
	if t == 0 {
		return nil
	}
	for _, e := range m.Exts {
		if e.Type(d) == t {
			return e
		}
	}
	return nil
}

// SA returns the SA extension, or nil.
func (m *Msg) SA() *SA { return find[*SA](m, nil) }

// SA2 returns the X_SA2 extension, or nil.
func (m *Msg) SA2() *SA2 { return find[*SA2](m, nil) }

// Policy returns the X_POLICY extension, or nil.
func (m *Msg) Policy() *Policy { return find[*Policy](m, nil) }

// SAReplay returns FreeBSD's X_SA_REPLAY extension, or nil.
func (m *Msg) SAReplay() *SAReplay { return find[*SAReplay](m, nil) }

// NATTType returns the X_NAT_T_TYPE extension, or nil.
func (m *Msg) NATTType() *NATTType { return find[*NATTType](m, nil) }

// KMAddress returns the X_KMADDRESS extension, or nil.
func (m *Msg) KMAddress() *KMAddress { return find[*KMAddress](m, nil) }

// Lifetime returns the lifetime extension of type t, or nil.
func (m *Msg) Lifetime(t ExtType) *Lifetime {
	return find(m, func(e *Lifetime) bool { return e.T == t })
}

// Address returns the address extension of type t, or nil.
func (m *Msg) Address(t ExtType) *Address {
	return find(m, func(e *Address) bool { return e.T == t })
}

// Key returns the key extension of type t, or nil.
func (m *Msg) Key(t ExtType) *Key { return find(m, func(e *Key) bool { return e.T == t }) }

// Supported returns the supported-algorithms extension of type t, or nil.
func (m *Msg) Supported(t ExtType) *Supported {
	return find(m, func(e *Supported) bool { return e.T == t })
}

// NATTPort returns the NAT-T source (dst false) or destination port
// extension, or nil.
func (m *Msg) NATTPort(dst bool) *NATTPort {
	return find(m, func(e *NATTPort) bool { return e.Dst == dst })
}

func find[T Ext](m *Msg, ok func(T) bool) T {
	var zero T
	for _, e := range m.Exts {
		if x, is := e.(T); is && (ok == nil || ok(x)) {
			return x
		}
	}
	return zero
}

// String summarises the message for logs; keys show their length only.
func (m *Msg) String() string {
	var b strings.Builder
	fmt.Fprintf(&b, "%s satype=%s seq=%d pid=%d", m.Type, m.SAType, m.Seq, m.PID)
	if m.Errno != 0 {
		fmt.Fprintf(&b, " errno=%d", m.Errno)
	}
	for _, e := range m.Exts {
		switch x := e.(type) {
		case *Key:
			fmt.Fprintf(&b, " key(%d bits)", x.Bits)
		default:
			fmt.Fprintf(&b, " %T", e)
		}
	}
	return b.String()
}

// AppendExt appends one extension, header and padding included, as the
// per-socket policy options (IP_IPSEC_POLICY) take it.
func (d *Dialect) AppendExt(b []byte, e Ext) ([]byte, error) {
	m := Msg{Exts: []Ext{e}}
	out, err := m.AppendTo(d, nil)
	if err != nil {
		return nil, err
	}
	return append(b, out[HeaderLen:]...), nil
}
