package ike

import (
	"encoding/binary"
	"fmt"
	"net/netip"

	"github.com/keyplane/keyplane/ike/config"
	"github.com/keyplane/keyplane/ike/message"
	"github.com/keyplane/keyplane/kernelops"
)

// Child selection for the responder (RFC 7296 §2.9, §1.3.1): which of our
// child configurations takes a peer's child request, with what
// selectors, proposal and key exchange. A pure function, table-tested in
// childselect_test.go; acceptChild does the I/O around it.

// childOffer is what a peer's child request asks for.
type childOffer struct {
	proposals []message.Proposal
	sap       *message.SA // the SA payload (for adoptKEGroup)
	tsi, tsr  []tsRange   // the initiator's and the responder's selectors
	transport bool        // USE_TRANSPORT_MODE
	// create is a CREATE_CHILD_SA (KE transforms count, PFS applies);
	// false for the child of IKE_AUTH.
	create bool
	ke     message.DHGroup // the KE payload's group; 0: none sent
	// remoteDyn: the peer's virtual IPs leased from a pool (pools.go),
	// which its dynamic selectors stand for instead of its address.
	remoteDyn []netip.Addr
}

// childChoice is the child configuration that takes the offer.
type childChoice struct {
	cfg           *config.Child
	proposal      message.Proposal // with the peer's proposal number
	local, remote []tsRange        // narrowed: ours, the peer's
	group         message.DHGroup  // the key exchange (PFS); 0: none
}

// childRefusal is why no child configuration takes the offer: the
// notify to answer with (with its data, for INVALID_KE_PAYLOAD) and a
// reason for the log.
type childRefusal struct {
	notify message.NotifyType
	data   []byte
	why    string
}

// selectChild picks the first of children whose selectors, mode and ESP
// proposals fit the offer, narrowing the selectors to ours. keep, for a
// rekey, replaces every child's configured selectors by the replaced
// child's (local, remote). In a CREATE_CHILD_SA a chosen proposal that
// names a key exchange needs a KE payload of that group: without one, or
// with another, the answer is INVALID_KE_PAYLOAD naming it (and an offer
// without key exchanges never matches one of ours that has them: PFS is
// refused, not dropped).
func selectChild(children []*config.Child, o childOffer, localAddr, remoteAddr netip.Addr, keep *[2][]tsRange) (childChoice, *childRefusal) {
	var propWhy, tsWhy string
	for _, c := range children {
		ourL, ourR := configRanges(c.LocalTS, localAddr), configRanges(c.RemoteTS, remoteAddr)
		if o.remoteDyn != nil {
			ourR = dynRanges(c.RemoteTS, o.remoteDyn)
		}
		if keep != nil {
			ourL, ourR = keep[0], keep[1]
		}
		l := narrow(o.tsr, ourL)
		r := narrow(o.tsi, ourR)
		if len(l) == 0 || len(r) == 0 {
			tsWhy += fmt.Sprintf("; child %s has local %s remote %s", c.Name, rangesString(ourL), rangesString(ourR))
			continue
		}
		if c.Mode == kernelops.ModeTransport && !o.transport {
			tsWhy += fmt.Sprintf("; child %s is transport mode, the peer asked for tunnel", c.Name)
			continue
		}
		p, ok, why := chooseESP(c.ESPProposals, o.proposals, o.create)
		if !ok {
			propWhy += fmt.Sprintf("; child %s: %s", c.Name, why)
			continue
		}
		ch := childChoice{cfg: c, proposal: p, local: l, remote: r}
		if o.create {
			sap := o.sap
			if sap == nil {
				sap = &message.SA{Proposals: o.proposals}
			}
			ch.group = adoptKEGroup(&ch.proposal, sap, c.ESPProposals, o.ke)
			if ch.group != 0 && ch.group != o.ke {
				sent := "none"
				if o.ke != 0 {
					sent = o.ke.String()
				}
				return ch, &childRefusal{notify: message.INVALID_KE_PAYLOAD,
					data: binary.BigEndian.AppendUint16(nil, uint16(ch.group)),
					why:  fmt.Sprintf("child %s: chosen proposal needs key exchange %v, the KE payload has %s", c.Name, ch.group, sent)}
			}
		}
		return ch, nil
	}
	if propWhy != "" {
		return childChoice{}, &childRefusal{notify: message.NO_PROPOSAL_CHOSEN, why: propWhy[2:]}
	}
	return childChoice{}, &childRefusal{notify: message.TS_UNACCEPTABLE,
		why: fmt.Sprintf("peer proposed TSi %s TSr %s%s", rangesString(o.tsi), rangesString(o.tsr), tsWhy)}
}
