package kernelops

import (
	"fmt"
	"net/netip"
	"slices"

	"github.com/keyplane/keyplane/iana"
)

// ValidateSA checks an SA before any dataplane sees it, so every backend
// rejects the same bad input with the same ErrInvalid naming the field,
// and nothing is installed. algs, when non-nil, is what the dataplane can
// install: a known algorithm outside it is ErrNotSupported, an unknown
// transform id is ErrInvalid.
func ValidateSA(backend, op string, sa *SA, algs *AlgorithmSet) error {
	if sa == nil {
		return Invalid(backend, op, "", "SA", "nil SA")
	}
	// The object's name is made only for an error: batches check
	// thousands of SAs.
	bad := func(field, format string, args ...any) error {
		return Invalid(backend, op, sa.ID.String(), field, format, args...)
	}
	if err := validateSAID(sa.ID, bad); err != nil {
		return err
	}
	switch sa.Mode {
	case ModeTransport, ModeTunnel:
	default:
		return bad("Mode", "mode %d: want transport or tunnel", sa.Mode)
	}
	if err := validateSelector(sa.Selector, "Selector", bad); err != nil {
		return err
	}
	if sa.Mode == ModeTransport && sa.Selector.Src.IsValid() && sa.Selector.Src.Addr().Is4() != sa.ID.Src.Is4() {
		return bad("Selector.Src", "transport-mode selector family differs from the SA's addresses")
	}
	switch sa.ID.Proto {
	case ProtoESP:
		if err := validateEncryption(sa, algs, bad, backend, op); err != nil {
			return err
		}
	case ProtoAH:
		if sa.Encryption.ID != 0 || len(sa.Encryption.Key) != 0 {
			return bad("Encryption", "AH SAs carry no cipher")
		}
		if sa.Integrity.ID == iana.IntegNone {
			return bad("Integrity.ID", "AH needs an integrity algorithm")
		}
	}
	if sa.ID.Proto != ProtoIPComp {
		if err := validateIntegrity(sa, algs, bad, backend, op); err != nil {
			return err
		}
	}
	if sa.ESN && sa.ReplayWindow == 0 && sa.Dir == DirIn {
		return bad("ReplayWindow", "ESN on an inbound SA needs a replay window")
	}
	if sa.Encap != nil {
		if sa.ID.Proto != ProtoESP {
			return bad("Encap", "UDP encapsulation is for ESP only")
		}
		if sa.Encap.SrcPort == 0 || sa.Encap.DstPort == 0 {
			return bad("Encap", "ports must be non-zero (got %d->%d)", sa.Encap.SrcPort, sa.Encap.DstPort)
		}
	}
	if err := validateLifetimes(sa.Lifetime, "Lifetime", bad); err != nil {
		return err
	}
	switch sa.Dir {
	case DirAny, DirIn, DirOut:
	default:
		return bad("Dir", "SA direction %s: want in, out or unset", sa.Dir)
	}
	if sa.Sync != nil {
		if err := validateInitialSync(sa, bad); err != nil {
			return err
		}
	}
	switch sa.Offload.Mode {
	case OffloadNone:
	case OffloadCrypto, OffloadPacket, OffloadAuto:
		if sa.Offload.Device == "" {
			return bad("Offload.Device", "%s offload needs a device", sa.Offload.Mode)
		}
	default:
		return bad("Offload.Mode", "unknown offload mode %d", sa.Offload.Mode)
	}
	return nil
}

// validateInitialSync checks the sync state an SA is added with: what
// SetSyncState on the SA would refuse is refused before the add.
func validateInitialSync(sa *SA, bad badFunc) error {
	r := sa.Sync.Replay
	if !sa.ESN && (r.OSeq > 1<<32-1 || r.Seq > 1<<32-1) {
		return bad("Sync.Replay", "sequence numbers beyond 32 bits on an SA without ESN")
	}
	if sa.Dir == DirOut && (r.Seq != 0 || slices.ContainsFunc(r.Bitmap, func(w uint32) bool { return w != 0 })) {
		return bad("Sync.Replay", "an outbound SA has no inbound replay state (Seq, Bitmap)")
	}
	if words := int((sa.ReplayWindow + 31) / 32); len(r.Bitmap) > max(words, 1) {
		return bad("Sync.Replay.Bitmap", "%d words for a %d-packet window", len(r.Bitmap), sa.ReplayWindow)
	}
	if r.Window != 0 && r.Window != sa.ReplayWindow {
		return bad("Sync.Replay.Window", "%d: the SA's window is %d (leave 0)", r.Window, sa.ReplayWindow)
	}
	return nil
}

// ValidateSAID checks an SA id (delete/get/update paths).
func ValidateSAID(backend, op string, id SAID) error {
	return validateSAID(id, func(field, format string, args ...any) error {
		return Invalid(backend, op, id.String(), field, format, args...)
	})
}

type badFunc func(field, format string, args ...any) error

func validateSAID(id SAID, bad badFunc) error {
	if !id.Src.IsValid() {
		return bad("ID.Src", "missing source address")
	}
	if !id.Dst.IsValid() {
		return bad("ID.Dst", "missing destination address")
	}
	if id.Src.Is4() != id.Dst.Is4() || id.Src.Is4In6() || id.Dst.Is4In6() {
		return bad("ID.Dst", "mixed address families (%s, %s)", id.Src, id.Dst)
	}
	switch id.Proto {
	case ProtoESP, ProtoAH:
		if id.SPI == 0 {
			return bad("ID.SPI", "SPI 0 is reserved")
		}
		if id.SPI < 256 {
			return bad("ID.SPI", "SPI %d is in the IANA-reserved range 1..255", id.SPI)
		}
	case ProtoIPComp:
		if id.SPI == 0 || id.SPI > 0xffff {
			return bad("ID.SPI", "IPComp CPI %d: want 1..65535", id.SPI)
		}
	default:
		return bad("ID.Proto", "protocol %d: want esp, ah or comp", uint8(id.Proto))
	}
	return nil
}

func validateEncryption(sa *SA, algs *AlgorithmSet, bad badFunc, backend, op string) error {
	e := sa.Encryption
	info, ok := e.ID.Info()
	if !ok {
		return bad("Encryption.ID", "unknown encryption transform %d", uint16(e.ID))
	}
	want, err := e.ID.KeyLen(e.KeyBits)
	if err != nil {
		return bad("Encryption.KeyBits", "%v", err)
	}
	if len(e.Key) != want {
		saltNote := ""
		if info.Salt > 0 {
			saltNote = fmt.Sprintf(" (%d key + %d salt)", want-info.Salt, info.Salt)
		}
		return bad("Encryption.Key", "%d bytes for %s: want %d%s", len(e.Key), e.ID, want, saltNote)
	}
	if algs != nil && !algs.HasEncr(e.ID) {
		return &Error{Backend: backend, Op: op, Object: sa.ID.String(), Field: "Encryption.ID", Err: ErrNotSupported,
			Detail: fmt.Sprintf("%s is not available in this dataplane", e.ID)}
	}
	return nil
}

func validateIntegrity(sa *SA, algs *AlgorithmSet, bad badFunc, backend, op string) error {
	in := sa.Integrity
	info, ok := in.ID.Info()
	if !ok {
		return bad("Integrity.ID", "unknown integrity transform %d", uint16(in.ID))
	}
	aead := sa.ID.Proto == ProtoESP && sa.Encryption.ID.AEAD()
	switch {
	case aead && in.ID != iana.IntegNone:
		return bad("Integrity.ID", "%s is an AEAD cipher; integrity must be NONE, not %s", sa.Encryption.ID, in.ID)
	case !aead && in.ID == iana.IntegNone && sa.ID.Proto == ProtoESP && sa.Encryption.ID != iana.EncrNull:
		return bad("Integrity.ID", "%s needs an integrity algorithm", sa.Encryption.ID)
	case sa.ID.Proto == ProtoESP && sa.Encryption.ID == iana.EncrNull && in.ID == iana.IntegNone:
		return bad("Integrity.ID", "ENCR_NULL without integrity protects nothing")
	}
	if len(in.Key) != info.KeyLen {
		return bad("Integrity.Key", "%d bytes for %s: want %d", len(in.Key), in.ID, info.KeyLen)
	}
	if algs != nil && !algs.HasInteg(in.ID) {
		return &Error{Backend: backend, Op: op, Object: sa.ID.String(), Field: "Integrity.ID", Err: ErrNotSupported,
			Detail: fmt.Sprintf("%s is not available in this dataplane", in.ID)}
	}
	return nil
}

func validateLifetimes(l Lifetimes, field string, bad badFunc) error {
	type pair struct {
		name       string
		soft, hard uint64
	}
	for _, p := range []pair{
		{"Bytes", l.Soft.Bytes, l.Hard.Bytes},
		{"Packets", l.Soft.Packets, l.Hard.Packets},
		{"AddTime", uint64(l.Soft.AddTime), uint64(l.Hard.AddTime)},
		{"UseTime", uint64(l.Soft.UseTime), uint64(l.Hard.UseTime)},
	} {
		if p.soft != 0 && p.hard != 0 && p.soft > p.hard {
			return bad(field+".Soft."+p.name, "soft limit above hard limit")
		}
	}
	if l.Soft.AddTime < 0 || l.Hard.AddTime < 0 || l.Soft.UseTime < 0 || l.Hard.UseTime < 0 {
		return bad(field, "negative time limit")
	}
	return nil
}

func validateSelector(s Selector, field string, bad badFunc) error {
	check := func(name string, p netip.Prefix) error {
		if !p.IsValid() {
			if p != (netip.Prefix{}) {
				return bad(field+"."+name, "invalid prefix %s", p)
			}
			return nil
		}
		if p.Addr().Is4In6() {
			return bad(field+"."+name, "IPv4-mapped address %s: use the IPv4 form", p)
		}
		if p.Masked() != p {
			return bad(field+"."+name, "prefix %s has host bits set (did you mean %s?)", p, p.Masked())
		}
		return nil
	}
	if err := check("Src", s.Src); err != nil {
		return err
	}
	if err := check("Dst", s.Dst); err != nil {
		return err
	}
	if s.Src.IsValid() && s.Dst.IsValid() && s.Src.Addr().Is4() != s.Dst.Addr().Is4() {
		return bad(field+".Dst", "mixed address families (%s, %s)", s.Src, s.Dst)
	}
	if (s.SrcPort != 0 || s.DstPort != 0) && !portsMeaningful(s.Proto) {
		return bad(field+".Proto", "ports need a protocol with ports (tcp, udp, sctp, icmp), got %d", s.Proto)
	}
	return nil
}

func portsMeaningful(proto uint8) bool {
	switch proto {
	case 6, 17, 132, 136, 1, 58: // tcp, udp, sctp, udplite, icmp, icmpv6
		return true
	}
	return false
}

// ValidatePolicy checks a policy before any dataplane sees it.
func ValidatePolicy(backend, op string, p *Policy) error {
	if p == nil {
		return Invalid(backend, op, "", "Policy", "nil policy")
	}
	bad := func(field, format string, args ...any) error { // named only for an error
		return Invalid(backend, op, p.ID().String(), field, format, args...)
	}
	if err := validateSelector(p.Selector, "Selector", bad); err != nil {
		return err
	}
	switch p.Dir {
	case DirIn, DirOut, DirFwd:
	default:
		return bad("Dir", "policy direction %s: want in, out or fwd", p.Dir)
	}
	switch p.Action {
	case ActionIPsec, ActionTrap:
		if len(p.Templates) == 0 {
			return bad("Templates", "%s policy needs at least one template", p.Action)
		}
	case ActionPass, ActionBlock:
		if len(p.Templates) != 0 {
			return bad("Templates", "%s policy takes no templates", p.Action)
		}
	default:
		return bad("Action", "unknown action %d", p.Action)
	}
	for i, t := range p.Templates {
		f := templateField(i)
		switch t.Proto {
		case ProtoESP, ProtoAH, ProtoIPComp:
		default:
			return bad(f.String()+".Proto", "protocol %d: want esp, ah or comp", uint8(t.Proto))
		}
		switch t.Mode {
		case ModeTunnel:
			if !t.Src.IsValid() || !t.Dst.IsValid() {
				return bad(f.String()+".Src", "tunnel template needs both outer addresses")
			}
			if t.Src.Is4() != t.Dst.Is4() {
				return bad(f.String()+".Dst", "mixed address families (%s, %s)", t.Src, t.Dst)
			}
		case ModeTransport:
		default:
			return bad(f.String()+".Mode", "mode %d: want transport or tunnel", t.Mode)
		}
	}
	for _, l := range []struct {
		name string
		l    Limits
	}{{"Soft", p.Lifetime.Soft}, {"Hard", p.Lifetime.Hard}} {
		if l.l.Bytes != 0 {
			return bad("Lifetime."+l.name+".Bytes", "policy lifetimes count time only")
		}
		if l.l.Packets != 0 {
			return bad("Lifetime."+l.name+".Packets", "policy lifetimes count time only")
		}
	}
	return validateLifetimes(p.Lifetime, "Lifetime", bad)
}

// templateField names p.Templates[i] for an error, formatted only then, so that a
// valid policy (checked for every install) formats nothing.
type templateField int

func (i templateField) String() string { return fmt.Sprintf("Templates[%d]", int(i)) }

// ValidatePolicyID checks a policy id (delete/get paths): its selector and
// direction.
func ValidatePolicyID(backend, op string, id PolicyID) error {
	// What ValidatePolicy checks of the ID's fields, without making a
	// Policy: a local one would escape into the error closure, and every
	// policy delete and lookup is checked.
	bad := func(field, format string, args ...any) error {
		return Invalid(backend, op, id.String(), field, format, args...)
	}
	if err := validateSelector(id.Selector, "Selector", bad); err != nil {
		return err
	}
	switch id.Dir {
	case DirIn, DirOut, DirFwd:
		return nil
	}
	return bad("Dir", "policy direction %s: want in, out or fwd", id.Dir)
}
