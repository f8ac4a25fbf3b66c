package xfrm

import (
	"fmt"

	"github.com/keyplane/keyplane/kernelops"
	"github.com/vishvananda/netlink/nl"
	"golang.org/x/sys/unix"
)

// policyFamily is the family a policy is installed with: its selector's,
// else its first template's outer family, else IPv4.
func policyFamily(p *kernelops.Policy) uint16 {
	if !p.Selector.IsZero() && (p.Selector.Src.IsValid() || p.Selector.Dst.IsValid()) {
		return selectorFamily(p.Selector, netipZero)
	}
	for _, t := range p.Templates {
		if t.Dst.IsValid() {
			return famOf(t.Dst)
		}
	}
	return unix.AF_INET
}

func policyIDFamily(id kernelops.PolicyID, hint uint16) uint16 {
	if id.Selector.Src.IsValid() || id.Selector.Dst.IsValid() {
		return selectorFamily(id.Selector, netipZero)
	}
	return hint
}

// appendPolicy builds NEWPOLICY or UPDPOLICY. index is the policy index
// keyplane chooses (see doc.go), 0 to let the kernel pick.
func appendPolicy(mb *msgBuilder, typ, flags uint16, seq uint32, p *kernelops.Policy, index uint32) {
	mb.begin(typ, flags, seq)
	b := mb.grow(sizePolicyInfo)
	fam := policyFamily(p)
	putSelector(b[0:], p.Selector, fam)
	putLftCfg(b[56:], kernelops.Lifetimes{
		Soft: kernelops.Limits{AddTime: p.Lifetime.Soft.AddTime, UseTime: p.Lifetime.Soft.UseTime},
		Hard: kernelops.Limits{AddTime: p.Lifetime.Hard.AddTime, UseTime: p.Lifetime.Hard.UseTime},
	})
	ne.PutUint32(b[152:], kernelops.EffectivePriority(p))
	ne.PutUint32(b[156:], index)
	b[160] = dirToKernel(p.Dir)
	if p.Action == kernelops.ActionBlock {
		b[161] = xfrmPolicyBlock
	}
	if len(p.Templates) > 0 {
		t := mb.attr(nl.XFRMA_TMPL, sizeUserTmpl*len(p.Templates))
		for i, tp := range p.Templates {
			putTmpl(t[i*sizeUserTmpl:], tp, fam)
		}
	}
	putMark(mb, p.Mark)
	if p.IfID != 0 {
		mb.attrU32(nl.XFRMA_IF_ID, p.IfID)
	}
	mb.end()
}

func putTmpl(b []byte, t kernelops.Template, selFam uint16) {
	fam := selFam
	if t.Dst.IsValid() {
		fam = famOf(t.Dst)
	} else if t.Src.IsValid() {
		fam = famOf(t.Src)
	}
	putAddr(b[0:], t.Dst)
	be.PutUint32(b[16:], t.SPI)
	b[20] = uint8(t.Proto)
	ne.PutUint16(b[24:], fam)
	putAddr(b[28:], t.Src)
	ne.PutUint32(b[44:], t.ReqID)
	b[48] = modeToKernel(t.Mode)
	if t.Optional {
		b[50] = 1
	}
	// Any algorithm: keyplane negotiates them in IKE, not in the SPD.
	ne.PutUint32(b[52:], ^uint32(0))
	ne.PutUint32(b[56:], ^uint32(0))
	ne.PutUint32(b[60:], ^uint32(0))
}

func getTmpl(b []byte) kernelops.Template {
	fam := ne.Uint16(b[24:])
	t := kernelops.Template{
		SPI: be.Uint32(b[16:]), Proto: kernelops.Proto(b[20]), ReqID: ne.Uint32(b[44:]),
		Mode: modeFromKernel(b[48]), Optional: b[50] != 0,
	}
	if !isZero(b[0:16]) {
		t.Dst = getAddr(b[0:], fam)
	}
	if !isZero(b[28:44]) {
		t.Src = getAddr(b[28:], fam)
	}
	return t
}

// appendPolicyID builds DELPOLICY or GETPOLICY for id.
func appendPolicyID(mb *msgBuilder, typ, flags uint16, seq uint32, id kernelops.PolicyID, fam uint16) {
	mb.begin(typ, flags, seq)
	b := mb.grow(sizePolicyID)
	putSelector(b[0:], id.Selector, fam)
	b[60] = dirToKernel(id.Dir)
	putMark(mb, id.Mark)
	if id.IfID != 0 {
		mb.attrU32(nl.XFRMA_IF_ID, id.IfID)
	}
	mb.end()
}

// appendPolicyIndex builds DELPOLICY or GETPOLICY by kernel index.
func appendPolicyIndex(mb *msgBuilder, typ, flags uint16, seq uint32, index uint32, dir uint8, m kernelops.Mark, ifID uint32) {
	mb.begin(typ, flags, seq)
	b := mb.grow(sizePolicyID)
	ne.PutUint32(b[56:], index)
	b[60] = dir
	putMark(mb, m)
	if ifID != 0 {
		mb.attrU32(nl.XFRMA_IF_ID, ifID)
	}
	mb.end()
}

// polMeta is what a decoded policy says beyond kernelops.PolicyEntry.
type polMeta struct {
	Index   uint32
	Dir     uint8 // kernel direction, incl. socket policies (>= 3)
	Action  uint8 // XFRM_POLICY_ALLOW / BLOCK
	Family  uint16
	SubType bool // XFRM_POLICY_TYPE_SUB
}

// decodePolicyInfo fills e from struct xfrm_userpolicy_info.
func decodePolicyInfo(b []byte, e *kernelops.PolicyEntry, m *polMeta) {
	tmpls := e.Templates[:0]
	*e = kernelops.PolicyEntry{}
	e.Templates = tmpls
	e.Selector, m.Family = getSelector(b[0:])
	lft := getLftCfg(b[56:])
	e.Lifetime = kernelops.Lifetimes{
		Soft: kernelops.Limits{AddTime: lft.Soft.AddTime, UseTime: lft.Soft.UseTime},
		Hard: kernelops.Limits{AddTime: lft.Hard.AddTime, UseTime: lft.Hard.UseTime},
	}
	cur := getLftCur(b[120:])
	e.AddTime, e.UseTime = unixTime(cur.AddTime), unixTime(cur.UseTime)
	e.Priority = ne.Uint32(b[152:])
	m.Index = ne.Uint32(b[156:])
	m.Dir = b[160]
	m.Action = b[161]
	e.Dir = dirFromKernel(m.Dir)
	if m.Action == xfrmPolicyBlock {
		e.Action = kernelops.ActionBlock
	} else {
		e.Action = kernelops.ActionPass
	}
}

// decodePolicyAttrs reads a policy's attributes into e.
func decodePolicyAttrs(b []byte, e *kernelops.PolicyEntry, m *polMeta) error {
	it := newAttrIter(b)
	for a, ok := it.next(); ok; a, ok = it.next() {
		switch a.Type {
		case nl.XFRMA_TMPL:
			if len(a.Data)%sizeUserTmpl != 0 {
				return fmt.Errorf("XFRMA_TMPL length %d: %w", len(a.Data), errShort)
			}
			for i := 0; i+sizeUserTmpl <= len(a.Data); i += sizeUserTmpl {
				e.Templates = append(e.Templates, getTmpl(a.Data[i:]))
			}
		case nl.XFRMA_MARK:
			e.Mark = getMark(a.Data)
		case nl.XFRMA_IF_ID:
			if len(a.Data) >= 4 {
				e.IfID = ne.Uint32(a.Data)
			}
		case nl.XFRMA_POLICY_TYPE:
			if len(a.Data) >= 1 && a.Data[0] != 0 {
				m.SubType = true
			}
		}
	}
	if len(e.Templates) > 0 && e.Action == kernelops.ActionPass {
		e.Action = kernelops.ActionIPsec
	}
	return it.err
}

// decodePolicy fills e from a NEWPOLICY/UPDPOLICY body.
func decodePolicy(b []byte, e *kernelops.PolicyEntry, m *polMeta) error {
	if len(b) < sizePolicyInfo {
		return errShort
	}
	decodePolicyInfo(b, e, m)
	return decodePolicyAttrs(b[sizePolicyInfo:], e, m)
}
