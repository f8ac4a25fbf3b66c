package ike

import (
	"fmt"
	"slices"
	"strings"

	"github.com/keyplane/keyplane/ike/config"
	"github.com/keyplane/keyplane/ike/message"
)

// Proposal selection (RFC 7296 §2.7, §3.3): pure functions of our
// configured proposals and the peer's, table-tested in
// proposals_test.go.

// ikeProposals builds the SA payload of an IKE_SA_INIT request.
func ikeProposals(ps []config.Proposal) *message.SA {
	sa := &message.SA{}
	for i, p := range ps {
		sa.Proposals = append(sa.Proposals, message.Proposal{Num: uint8(i + 1), Protocol: message.ProtocolIKE, Transforms: p.Transforms(true)})
	}
	return sa
}

// espProposals builds the SA payload of a child request with our inbound
// SPI; withKE adds the key exchange transforms (CREATE_CHILD_SA only).
func espProposals(ps []config.Proposal, spi uint32, withKE bool) *message.SA {
	sa := &message.SA{}
	for i, p := range ps {
		sa.Proposals = append(sa.Proposals, message.Proposal{Num: uint8(i + 1), Protocol: message.ProtocolESP,
			SPI: spiBytes(spi), Transforms: p.Transforms(withKE)})
	}
	return sa
}

func spiBytes(spi uint32) []byte {
	return []byte{byte(spi >> 24), byte(spi >> 16), byte(spi >> 8), byte(spi)}
}

func spiFrom(b []byte) uint32 {
	if len(b) != 4 {
		return 0
	}
	return uint32(b[0])<<24 | uint32(b[1])<<16 | uint32(b[2])<<8 | uint32(b[3])
}

// The transform types a chosen proposal carries, by protocol and by
// whether the exchange negotiates a key exchange.
// ADDKE1..7 (RFC 9370) count wherever a key exchange does.
var (
	ikeTypes       = withAddKE(message.TransformENCR, message.TransformPRF, message.TransformINTEG, message.TransformKE)
	espTypes       = []message.TransformType{message.TransformENCR, message.TransformINTEG, message.TransformESN}
	espTypesWithKE = withAddKE(message.TransformENCR, message.TransformINTEG, message.TransformKE, message.TransformESN)
)

func withAddKE(ts ...message.TransformType) []message.TransformType {
	for n := 1; n <= 7; n++ {
		ts = append(ts, message.AddKE(n))
	}
	return ts
}

// choose chooses an IKE proposal (IKE_SA_INIT, an IKE SA rekey).
func choose(ours []config.Proposal, theirs []message.Proposal) (message.Proposal, bool, string) {
	return chooseTypes(ours, theirs, message.ProtocolIKE, ikeTypes, true)
}

// chooseESP chooses an ESP proposal. withKE is false in IKE_AUTH, where
// key exchange transforms are left out on both sides (RFC 7296 §1.2),
// and true in CREATE_CHILD_SA: then a proposal of ours that names key
// exchanges matches only a peer proposal that names one of them (PFS as
// configured, never less), and one of ours without matches only one
// without.
func chooseESP(ours []config.Proposal, theirs []message.Proposal, withKE bool) (message.Proposal, bool, string) {
	if withKE {
		return chooseTypes(ours, theirs, message.ProtocolESP, espTypesWithKE, true)
	}
	return chooseTypes(ours, theirs, message.ProtocolESP, espTypes, false)
}

// chooseTypes picks, in our order of preference, the first of our
// proposals that has a transform of every type in types in common with
// one of the peer's, and returns the peer's proposal number with one
// transform per type (ours, in our order). A type we name none of (INTEG
// with an AEAD cipher, KE without PFS) must be absent from the peer's
// proposal too. A peer ESP proposal without ESN means no ESN. The string
// explains a failure.
func chooseTypes(ours []config.Proposal, theirs []message.Proposal, proto message.ProtocolID, types []message.TransformType, withKE bool) (message.Proposal, bool, string) {
	for _, o := range ours {
		ot := o.Transforms(withKE)
		for _, t := range theirs {
			if t.Protocol != proto {
				continue
			}
			tt := t.Transforms
			if proto == message.ProtocolESP && !slices.ContainsFunc(tt, func(x message.Transform) bool { return x.Type == message.TransformESN }) {
				tt = append(append([]message.Transform(nil), tt...), message.ESNTransform(message.ESNNo))
			}
			if chosen, ok := common(ot, tt, types); ok {
				chosen.Num, chosen.Protocol = t.Num, proto
				return chosen, true, ""
			}
		}
	}
	var th []string
	for _, t := range theirs {
		th = append(th, t.String())
	}
	var ou []string
	for _, o := range ours {
		ou = append(ou, o.Text)
	}
	return message.Proposal{}, false, fmt.Sprintf("no common proposal: ours %s; theirs %s", strings.Join(ou, ", "), strings.Join(th, "; "))
}

// common picks one transform of each type from mine that theirs has too.
func common(mine, theirs []message.Transform, types []message.TransformType) (message.Proposal, bool) {
	// Mine are walked once per type in place, not copied out per type:
	// every handshake comes here.
	var chosen message.Proposal
	for _, typ := range types {
		ofType := func(x message.Transform) bool { return x.Type == typ }
		if !slices.ContainsFunc(mine, ofType) {
			// We name none of this type: the peer must not insist on one
			// (it does not when it offers NONE among them).
			insists := false
			for _, x := range theirs {
				if x.Type == typ {
					if noneTransform(x) {
						insists = false
						break
					}
					insists = true
				}
			}
			if insists {
				return message.Proposal{}, false
			}
			continue
		}
		found, offersNone := false, false
		for _, m := range mine {
			if m.Type != typ {
				continue
			}
			offersNone = offersNone || noneTransform(m)
			if slices.ContainsFunc(theirs, func(x message.Transform) bool {
				return x.Type == m.Type && x.ID == m.ID && x.KeyLength == m.KeyLength && len(x.Attributes) == 0
			}) {
				if chosen.Transforms == nil {
					chosen.Transforms = make([]message.Transform, 0, len(types))
				}
				chosen.Transforms = append(chosen.Transforms, m)
				found = true
				break
			}
		}
		if !found && !(offersNone && !slices.ContainsFunc(theirs, ofType)) {
			// (We offer NONE of an optional type the peer names none
			// of: nothing of it is chosen.)
			return message.Proposal{}, false
		}
	}
	return chosen, true
}

// noneTransform is a transform that stands for "none of this type":
// INTEG NONE with an AEAD cipher, KE NONE (RFC 7296 §3.3.2), ADDKEn NONE
// (RFC 9370 §2.2.1: the additional exchange is optional).
func noneTransform(x message.Transform) bool {
	return (x.Type == message.TransformINTEG || x.Type == message.TransformKE || x.Type.AddKEIndex() > 0) && x.ID == 0
}

// acceptable checks the responder's chosen proposal against the one of
// ours it answers: the same number (RFC 7296 §3.3.1), exactly one
// transform of each type that proposal of ours has, each one of ours, and
// no other type. withKE is false for a child in IKE_AUTH (key exchange
// transforms left out) and true everywhere else, so a proposal of ours
// that names key exchanges cannot come back without one: the peer cannot
// drop the PFS we asked for.
func acceptable(chosen *message.Proposal, ours []config.Proposal, proto message.ProtocolID, withKE bool) error {
	if chosen.Protocol != proto {
		return fmt.Errorf("chosen proposal is for %v, not %v", chosen.Protocol, proto)
	}
	n := int(chosen.Num)
	if n < 1 || n > len(ours) {
		return fmt.Errorf("chosen proposal number %d is none we sent (1-%d)", n, len(ours))
	}
	o := ours[n-1]
	ot := o.Transforms(withKE)
	// Each transform type in either proposal, once, in order of first
	// appearance; the checks count and search in place (this runs for
	// every proposal chosen, so it allocates nothing but ot).
	var seen [256]bool
	check := func(typ message.TransformType) error {
		if seen[typ] {
			return nil
		}
		seen[typ] = true
		var mineN, gotN int
		mineNone, first := false, message.Transform{}
		for _, m := range ot {
			if m.Type == typ {
				mineN++
				mineNone = mineNone || noneTransform(m)
			}
		}
		for _, g := range chosen.Transforms {
			if g.Type != typ {
				continue
			}
			if gotN == 0 {
				first = g
			}
			gotN++
			if mineN == 0 && !noneTransform(g) {
				return fmt.Errorf("chosen proposal has %v %s, our proposal %d (%s) has none", typ, g, n, o.Text)
			}
		}
		switch {
		case mineN == 0:
		case gotN == 0 && mineNone:
			// An optional additional key exchange left out (keN_none).
		case gotN == 0 && typ == message.TransformKE:
			return fmt.Errorf("chosen proposal drops the key exchange (PFS) of our proposal %d (%s)", n, o.Text)
		case gotN != 1:
			return fmt.Errorf("chosen proposal has %d %v transforms, want one of proposal %d (%s)", gotN, typ, n, o.Text)
		case !slices.ContainsFunc(ot, func(m message.Transform) bool { return m.Type == typ && m.Equal(first) }):
			return fmt.Errorf("chosen %v %s is not in our proposal %d (%s)", typ, first, n, o.Text)
		}
		return nil
	}
	for _, x := range ot {
		if err := check(x.Type); err != nil {
			return err
		}
	}
	for _, x := range chosen.Transforms {
		if err := check(x.Type); err != nil {
			return err
		}
	}
	return nil
}

// keGroup is the key exchange method a chosen proposal names (0: none).
func keGroup(p *message.Proposal) message.DHGroup {
	for t := range p.Of(message.TransformKE) {
		if t.ID != 0 {
			return message.DHGroup(t.ID)
		}
	}
	return 0
}

// adoptKEGroup returns the key exchange group of a proposal we chose
// (IKE_SA_INIT, an IKE SA rekey, a CREATE_CHILD_SA with PFS): the
// initiator's, sent, when both its proposal and ours allow it, sparing an
// INVALID_KE_PAYLOAD round; chosen is changed to name it. Otherwise the
// chosen one, which then differs from sent (0: the proposal has none).
func adoptKEGroup(chosen *message.Proposal, sap *message.SA, ours []config.Proposal, sent message.DHGroup) message.DHGroup {
	group := keGroup(chosen)
	if group == 0 || sent == 0 || sent == group || !theirProposalHas(sap, chosen.Num, sent) || !ourGroupWith(ours, chosen, sent) {
		return group
	}
	for i, t := range chosen.Transforms {
		if t.Type == message.TransformKE {
			chosen.Transforms[i] = message.KETransform(sent)
		}
	}
	return sent
}

func theirProposalHas(sap *message.SA, num uint8, g message.DHGroup) bool {
	for i := range sap.Proposals {
		if sap.Proposals[i].Num == num && hasGroup(&sap.Proposals[i], g) {
			return true
		}
	}
	return false
}

// ourGroupWith reports whether one of our proposals holds every non-KE
// transform of chosen and the group g.
func ourGroupWith(ours []config.Proposal, chosen *message.Proposal, g message.DHGroup) bool {
	for _, o := range ours {
		ot := o.Transforms(true)
		ok := slices.ContainsFunc(ot, func(t message.Transform) bool {
			return t.Type == message.TransformKE && message.DHGroup(t.ID) == g
		})
		for _, x := range chosen.Transforms {
			if x.Type != message.TransformKE && !slices.ContainsFunc(ot, func(t message.Transform) bool { return t.Equal(x) }) {
				ok = false
			}
		}
		if ok {
			return true
		}
	}
	return false
}

// hasGroup reports whether proposal p names key exchange g.
func hasGroup(p *message.Proposal, g message.DHGroup) bool {
	for t := range p.Of(message.TransformKE) {
		if message.DHGroup(t.ID) == g {
			return true
		}
	}
	return false
}

// offersGroup reports whether one of the proposals names group g.
func offersGroup(ps []config.Proposal, g message.DHGroup) bool {
	for _, p := range ps {
		if slices.Contains(p.DH, g) {
			return true
		}
	}
	return false
}

// pfsGroup is the key exchange a CREATE_CHILD_SA for a child with these
// ESP proposals sends: prefer (the group the replaced child used, or the
// one the peer asked for with INVALID_KE_PAYLOAD) when a proposal names
// it, else the first group of the first proposal that names one. 0: no
// proposal names one, no PFS.
func pfsGroup(ps []config.Proposal, prefer message.DHGroup) message.DHGroup {
	if prefer != 0 && offersGroup(ps, prefer) {
		return prefer
	}
	for _, p := range ps {
		if len(p.DH) > 0 {
			return p.DH[0]
		}
	}
	return 0
}

func proposalsText(ps []config.Proposal) string {
	s := make([]string, len(ps))
	for i, p := range ps {
		s[i] = p.Text
	}
	return strings.Join(s, ", ")
}

// fitsOurs checks a proposal chosen earlier, numbered as the peer
// numbered it, against our proposals: one of ours must allow it (the
// responder's re-check at IKE_AUTH against the connection it picks, whose
// proposals need not be numbered like the peer's).
func fitsOurs(chosen *message.Proposal, ours []config.Proposal, proto message.ProtocolID) error {
	var first error
	for i := range ours {
		c := *chosen
		c.Num = uint8(i + 1)
		err := acceptable(&c, ours, proto, true)
		if err == nil {
			return nil
		}
		if first == nil {
			first = err
		}
	}
	return first
}
