package xfrm

import (
	"encoding/binary"
	"errors"
	"slices"
	"syscall"

	"golang.org/x/sys/unix"
)

// Netlink framing: a message builder that appends into one buffer (so a
// batch of requests is one slice handed to one sendmsg), and bounds-checked
// iterators over messages and attributes that never panic on bad input.

var ne = binary.NativeEndian

const (
	nlmsgHdrLen = unix.NLMSG_HDRLEN // 16
	nlaHdrLen   = unix.SizeofNlAttr // 4
	nlmsgErrLen = 4 + nlmsgHdrLen   // struct nlmsgerr: error + original header
)

func align4(n int) int { return (n + 3) &^ 3 }

// msgBuilder appends netlink messages to buf.
type msgBuilder struct {
	buf   []byte
	start int // offset of the message being built
}

// begin starts a message; end must follow once its body is written.
func (b *msgBuilder) begin(typ, flags uint16, seq uint32) {
	b.start = len(b.buf)
	h := b.grow(nlmsgHdrLen)
	ne.PutUint16(h[4:], typ)
	ne.PutUint16(h[6:], flags)
	ne.PutUint32(h[8:], seq)
}

// end fixes the message length.
func (b *msgBuilder) end() {
	b.pad()
	ne.PutUint32(b.buf[b.start:], uint32(len(b.buf)-b.start))
}

func (b *msgBuilder) pad() {
	for len(b.buf)%4 != 0 {
		b.buf = append(b.buf, 0)
	}
}

// grow appends n zero bytes and returns them for the caller to fill.
// It allocates only when buf's capacity runs out (a batch reuses one
// buffer for all its requests).
func (b *msgBuilder) grow(n int) []byte {
	off := len(b.buf)
	b.buf = slices.Grow(b.buf, n)[:off+n]
	p := b.buf[off:]
	clear(p)
	return p
}

// attr appends an attribute of type t with payload size n and returns
// the payload to fill.
func (b *msgBuilder) attr(t uint16, n int) []byte {
	b.pad()
	h := b.grow(nlaHdrLen + n)
	ne.PutUint16(h[0:], uint16(nlaHdrLen+n))
	ne.PutUint16(h[2:], t)
	return h[nlaHdrLen:]
}

func (b *msgBuilder) attrBytes(t uint16, p []byte) { copy(b.attr(t, len(p)), p) }
func (b *msgBuilder) attrU32(t uint16, v uint32)   { ne.PutUint32(b.attr(t, 4), v) }
func (b *msgBuilder) attrU8(t uint16, v uint8)     { b.attr(t, 1)[0] = v }

// nlMsg is one received netlink message; Data aliases the receive buffer.
type nlMsg struct {
	Len   uint32
	Type  uint16
	Flags uint16
	Seq   uint32
	Pid   uint32
	Data  []byte // the payload after the header
}

var errTruncated = errors.New("truncated netlink message")

// nextMsg splits the first message off b. It returns the rest, or an
// error for a length that does not fit.
func nextMsg(b []byte) (m nlMsg, rest []byte, err error) {
	if len(b) < nlmsgHdrLen {
		return m, nil, errTruncated
	}
	m.Len = ne.Uint32(b[0:])
	if m.Len < nlmsgHdrLen || int64(m.Len) > int64(len(b)) {
		return m, nil, errTruncated
	}
	m.Type = ne.Uint16(b[4:])
	m.Flags = ne.Uint16(b[6:])
	m.Seq = ne.Uint32(b[8:])
	m.Pid = ne.Uint32(b[12:])
	m.Data = b[nlmsgHdrLen:m.Len]
	next := align4(int(m.Len))
	if next > len(b) {
		next = len(b)
	}
	return m, b[next:], nil
}

// attrIter walks netlink attributes:
//
//	it := newAttrIter(b)
//	for a, ok := it.next(); ok; a, ok = it.next() { ... }
//
// A malformed tail ends the walk (as the kernel's nla_for_each_attr does)
// and sets err.
type attrIter struct {
	b   []byte
	err error
}

type nlAttr struct {
	Type uint16 // with NLA_F_NESTED and NLA_F_NET_BYTEORDER masked off
	Data []byte
}

func newAttrIter(b []byte) attrIter { return attrIter{b: b} }

func (it *attrIter) next() (nlAttr, bool) {
	if len(it.b) < nlaHdrLen {
		if len(it.b) != 0 {
			it.err = errTruncated
		}
		return nlAttr{}, false
	}
	l := int(ne.Uint16(it.b[0:]))
	t := ne.Uint16(it.b[2:]) &^ (unix.NLA_F_NESTED | unix.NLA_F_NET_BYTEORDER)
	if l < nlaHdrLen || l > len(it.b) {
		it.err = errTruncated
		return nlAttr{}, false
	}
	a := nlAttr{Type: t, Data: it.b[nlaHdrLen:l]}
	n := align4(l)
	if n > len(it.b) {
		n = len(it.b)
	}
	it.b = it.b[n:]
	return a, true
}

// nlError is a decoded NLMSG_ERROR: Errno 0 is an ack.
type nlError struct {
	Errno  syscall.Errno
	Seq    uint32
	ExtMsg string // NLMSGERR_ATTR_MSG, the kernel's extack text
	Offset uint32 // NLMSGERR_ATTR_OFFS: byte offset of the bad attribute
}

// parseNlError decodes an NLMSG_ERROR payload. With NETLINK_CAP_ACK the
// original request is cut to its header; with NLM_F_ACK_TLVS the extended
// ack attributes follow it.
func parseNlError(m nlMsg) (nlError, error) {
	if len(m.Data) < nlmsgErrLen {
		return nlError{}, errTruncated
	}
	code := int32(ne.Uint32(m.Data[0:]))
	e := nlError{Seq: ne.Uint32(m.Data[4+8:])}
	if code < 0 {
		e.Errno = syscall.Errno(-code)
	}
	if m.Flags&unix.NLM_F_ACK_TLVS == 0 {
		return e, nil
	}
	rest := m.Data[nlmsgErrLen:]
	if m.Flags&unix.NLM_F_CAPPED == 0 {
		// The whole original request is echoed: skip it.
		olen := int(ne.Uint32(m.Data[4:]))
		off := 4 + align4(olen)
		if olen < nlmsgHdrLen || olen > len(m.Data) || off > len(m.Data) {
			return e, nil
		}
		rest = m.Data[off:]
	}
	it := newAttrIter(rest)
	for a, ok := it.next(); ok; a, ok = it.next() {
		switch a.Type {
		case unix.NLMSGERR_ATTR_MSG:
			e.ExtMsg = cString(a.Data)
		case unix.NLMSGERR_ATTR_OFFS:
			if len(a.Data) >= 4 {
				e.Offset = ne.Uint32(a.Data)
			}
		}
	}
	return e, nil
}

// cString returns b up to its first NUL.
func cString(b []byte) string {
	for i, c := range b {
		if c == 0 {
			return string(b[:i])
		}
	}
	return string(b)
}
