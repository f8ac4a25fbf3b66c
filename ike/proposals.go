package ike

import (
	"fmt"
	"strings"

	"github.com/keyplane/keyplane/ike/config"
	"github.com/keyplane/keyplane/ike/message"
)

// ikeProposals builds the SA payload of an IKE_SA_INIT request.
func ikeProposals(ps []config.Proposal) *message.SA {
	sa := &message.SA{}
	for i, p := range ps {
		sa.Proposals = append(sa.Proposals, message.Proposal{Num: uint8(i + 1), Protocol: message.ProtocolIKE, Transforms: p.Transforms(true)})
	}
	return sa
}

// espProposals builds the SA payload of a child request with our inbound
// SPI; pfs adds the key exchange transforms (CREATE_CHILD_SA only).
func espProposals(ps []config.Proposal, spi uint32, pfs bool) *message.SA {
	sa := &message.SA{}
	for i, p := range ps {
		sa.Proposals = append(sa.Proposals, message.Proposal{Num: uint8(i + 1), Protocol: message.ProtocolESP,
			SPI: spiBytes(spi), Transforms: p.Transforms(pfs)})
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

// transformTypes are the types a chosen proposal carries, by protocol.
var (
	ikeTypes = []message.TransformType{message.TransformENCR, message.TransformPRF, message.TransformINTEG, message.TransformKE}
	espTypes = []message.TransformType{message.TransformENCR, message.TransformINTEG, message.TransformESN}
)

// choose picks, in our order of preference, the first of our proposals
// that has a transform of every needed type in common with one of the
// peer's, and returns the peer's proposal number with one transform per
// type. For ESP, KE transforms are ignored (no PFS in IKE_AUTH) and a
// peer proposal without ESN means no ESN. The string explains a failure.
func choose(ours []config.Proposal, theirs []message.Proposal, proto message.ProtocolID) (message.Proposal, bool, string) {
	types := ikeTypes
	withKE := true
	if proto == message.ProtocolESP {
		types, withKE = espTypes, false
	}
	return chooseTypes(ours, theirs, proto, types, withKE)
}

// chooseESP chooses an ESP proposal; with pfs (a CREATE_CHILD_SA with a
// KE payload) a common key exchange method is needed too.
func chooseESP(ours []config.Proposal, theirs []message.Proposal, pfs bool) (message.Proposal, bool, string) {
	if !pfs {
		return choose(ours, theirs, message.ProtocolESP)
	}
	return chooseTypes(ours, theirs, message.ProtocolESP,
		[]message.TransformType{message.TransformENCR, message.TransformINTEG, message.TransformKE, message.TransformESN}, true)
}

func chooseTypes(ours []config.Proposal, theirs []message.Proposal, proto message.ProtocolID, types []message.TransformType, withKE bool) (message.Proposal, bool, string) {
	for _, o := range ours {
		ot := o.Transforms(withKE)
		for _, t := range theirs {
			if t.Protocol != proto {
				continue
			}
			tt := t.Transforms
			if proto == message.ProtocolESP && len(t.Of(message.TransformESN)) == 0 {
				tt = append(append([]message.Transform(nil), tt...), message.ESNTransform(message.ESNNo))
			}
			chosen := message.Proposal{Num: t.Num, Protocol: proto}
			ok := true
			for _, typ := range types {
				var mine []message.Transform
				for _, x := range ot {
					if x.Type == typ {
						mine = append(mine, x)
					}
				}
				if len(mine) == 0 {
					// We name none of this type (INTEG with an AEAD): the
					// peer must not insist on one either.
					for _, x := range tt {
						if x.Type == typ && !(typ == message.TransformINTEG && message.IntegID(x.ID) == message.IntegNone) {
							ok = false
						}
					}
					continue
				}
				found := false
				for _, m := range mine {
					for _, x := range tt {
						if x.Type == m.Type && x.ID == m.ID && x.KeyLength == m.KeyLength && len(x.Attributes) == 0 {
							chosen.Transforms = append(chosen.Transforms, m)
							found = true
							break
						}
					}
					if found {
						break
					}
				}
				if !found {
					ok = false
				}
			}
			if ok {
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

// acceptable checks a responder's chosen proposal against ours: one
// transform per type, every one of them in the same one of our proposals.
func acceptable(chosen *message.Proposal, ours []config.Proposal, proto message.ProtocolID) error {
	types := ikeTypes
	withKE := true
	if proto == message.ProtocolESP {
		types, withKE = espTypes, false
	}
	if chosen.Protocol != proto {
		return fmt.Errorf("chosen proposal is for %v, not %v", chosen.Protocol, proto)
	}
	for _, o := range ours {
		ot := o.Transforms(withKE || len(chosen.Of(message.TransformKE)) > 0)
		ok := true
		for _, x := range chosen.Transforms {
			if proto == message.ProtocolESP && x.Type == message.TransformKE && !pfsAllowed(ot) {
				ok = false
				break
			}
			in := false
			for _, m := range ot {
				if m.Equal(x) {
					in = true
					break
				}
			}
			if !in {
				ok = false
				break
			}
		}
		for _, typ := range types {
			if len(chosen.Of(typ)) > 1 {
				return fmt.Errorf("chosen proposal has %d %v transforms", len(chosen.Of(typ)), typ)
			}
		}
		if ok {
			return nil
		}
	}
	return fmt.Errorf("chosen proposal %v is not one we offered", chosen)
}

// proposalGroups lists the key exchange methods of a chosen proposal's
// peer proposal (for accepting the KE the initiator sent).
func hasGroup(p *message.Proposal, g message.DHGroup) bool {
	for _, t := range p.Of(message.TransformKE) {
		if message.DHGroup(t.ID) == g {
			return true
		}
	}
	return false
}

func pfsAllowed(ts []message.Transform) bool {
	for _, t := range ts {
		if t.Type == message.TransformKE {
			return true
		}
	}
	return false
}
