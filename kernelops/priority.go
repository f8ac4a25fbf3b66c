package kernelops

// Priority bands: lower wins. Pass policies (holes, bypass) outrank
// protection; trap policies sit below installed ipsec policies so an
// established child is preferred over the on-demand trap of a wider
// selector.
const (
	PriorityBandPass  uint32 = 1 << 16
	PriorityBandIPsec uint32 = 2 << 16
	PriorityBandTrap  uint32 = 3 << 16
	PriorityBandBlock uint32 = 4 << 16
)

// AutoPriority derives a policy priority from its action and selector
// specificity: within a band, every prefix bit, a protocol and each port
// make the policy win over a wider one. It is what Policy.Priority == 0
// means; backends call it so all derive the same value.
func AutoPriority(p *Policy) uint32 {
	band := PriorityBandIPsec
	switch p.Action {
	case ActionPass:
		band = PriorityBandPass
	case ActionTrap:
		band = PriorityBandTrap
	case ActionBlock:
		band = PriorityBandBlock
	}
	s := p.Selector
	bits := 0
	if s.Src.IsValid() {
		bits += s.Src.Bits()
	}
	if s.Dst.IsValid() {
		bits += s.Dst.Bits()
	}
	pen := uint32(256-bits) * 8
	if s.Proto == 0 {
		pen += 4
	}
	if s.SrcPort == 0 {
		pen += 2
	}
	if s.DstPort == 0 {
		pen++
	}
	return band + pen
}

// EffectivePriority is p.Priority, or AutoPriority(p) when it is 0.
func EffectivePriority(p *Policy) uint32 {
	if p.Priority != 0 {
		return p.Priority
	}
	return AutoPriority(p)
}
