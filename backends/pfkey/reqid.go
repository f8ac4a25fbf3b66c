package pfkey

import (
	"fmt"

	"github.com/keyplane/keyplane/backends/pfkey/sadb"
)

// DefaultReqIDBase is the kernel reqid the first owned reqid maps to.
//
// Why a mapping at all: every PF_KEY kernel (Linux af_key's
// parse_ipsecrequest, KAME's key_msg2sp) replaces a policy request's
// reqid above IPSEC_MANUAL_REQID_MAX (0x3fff) with one it generates, and
// KAME carries it in 16 bits. keyplane's owned range (0x4b500000.. by
// default) cannot reach the kernel as is, so the backend maps owned
// reqids onto the window DefaultReqIDBase..0x3fff and back. SAs (SA2,
// 32-bit) and policies get the same kernel value, so they still bind.
// The base stays clear of the low reqids other daemons number from 1.
const DefaultReqIDBase = 0x800

// reqidMap translates between keyplane's reqids and the kernel's.
type reqidMap struct {
	min, max uint32 // the owned range (Options.ReqIDMin..ReqIDMax)
	base     uint32 // kernel reqid of min
	size     uint32 // owned reqids that fit: min..min+size-1
	saMax    uint32 // widest reqid SA2 carries in this kernel
}

func newReqIDMap(min, max, base, saMax uint32) (reqidMap, error) {
	if base == 0 || base > sadb.ManualReqIDMax {
		return reqidMap{}, fmt.Errorf("reqid base %#x: want 1..%#x", base, sadb.ManualReqIDMax)
	}
	if min > max {
		return reqidMap{}, fmt.Errorf("reqid range %#x..%#x is empty", min, max)
	}
	size := uint64(max) - uint64(min) + 1
	if room := uint64(sadb.ManualReqIDMax - base + 1); size > room {
		size = room
	}
	return reqidMap{min: min, max: max, base: base, size: uint32(size), saMax: saMax}, nil
}

func (m reqidMap) owned(r uint32) bool { return r >= m.min && r <= m.max }

// inWindow reports whether a kernel reqid is one of keyplane's.
func (m reqidMap) inWindow(k uint32) bool { return k >= m.base && k-m.base < m.size }

// toKernel maps a reqid for the kernel. policy is set for policy
// requests, which the kernel rewrites above IPSEC_MANUAL_REQID_MAX.
func (m reqidMap) toKernel(r uint32, policy bool) (uint32, error) {
	switch {
	case r == 0:
		return 0, nil
	case m.owned(r):
		if off := r - m.min; off < m.size {
			return m.base + off, nil
		}
		return 0, fmt.Errorf("reqid %#x is owned but lies beyond the %d reqids the kernel window %#x..%#x holds "+
			"(PF_KEY policies carry reqids up to %#x)", r, m.size, m.base, m.base+m.size-1, sadb.ManualReqIDMax)
	case m.inWindow(r):
		return 0, fmt.Errorf("reqid %#x is not owned but falls in the kernel window %#x..%#x that owned reqids map to",
			r, m.base, m.base+m.size-1)
	case policy && r > sadb.ManualReqIDMax:
		return 0, fmt.Errorf("reqid %#x is above IPSEC_MANUAL_REQID_MAX (%#x): the kernel would replace it in a policy",
			r, sadb.ManualReqIDMax)
	case r > m.saMax:
		return 0, fmt.Errorf("reqid %#x is wider than this kernel's %#x", r, m.saMax)
	}
	return r, nil
}

// fromKernel maps a kernel reqid back.
func (m reqidMap) fromKernel(k uint32) uint32 {
	if m.inWindow(k) {
		return m.min + (k - m.base)
	}
	return k
}
