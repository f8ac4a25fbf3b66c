package ike

import (
	"bytes"
	"errors"
	"net/netip"

	"github.com/keyplane/keyplane/ike/message"
)

// IKE fragmentation (RFC 7383). Announced in IKE_SA_INIT unless
// fragmentation = no; once both ends did, an encrypted message whose
// datagram would exceed fragment_size goes out in Encrypted Fragment
// payloads (fragmentation = yes), each retransmission resending all of
// them. Fragments from the peer are taken only after IKE_SA_INIT and only
// when we announced support; each is authenticated on its own, then
// collected by a Reassembler per direction (requests, responses) within
// message.ReassemblyLimits (fragments per message, total size, time), and
// the whole message is handled as if it had come in one piece.

// fragState is an IKE SA's fragmentation state, made when it first takes
// a fragment or sends an answer in fragments: most SAs never do, and
// behind a pointer it costs them 8 octets instead of 48.
type fragState struct {
	req, resp *message.Reassembler // what is being collected, by direction
	timer     *timer
	// lastResp is our answer to the peer's last request in fragments,
	// when it was sent so (window.lastResp holds it whole); nil once a
	// later answer went whole.
	lastResp [][]byte
}

// fragLimits bound one reassembled message (a variable for tests).
var fragLimits = message.ReassemblyLimits{}

// fragmentLen is the largest IKE message one fragment may be: fragment_size
// less the IP and UDP headers and, on the NAT-T port, the non-ESP marker.
func (sa *ikeSA) fragmentLen() int {
	size := sa.e.cfg.Daemon.FragmentSize
	v6 := sa.remote.Addr().Is6() && !sa.remote.Addr().Is4In6()
	if size == 0 {
		// strongSwan's fragment_size = 0: the address family's minimum
		// datagram every host must take.
		size = 576
		if v6 {
			size = 1280
		}
	}
	return message.FragmentMessageLen(size, v6, sa.sock != nil && sa.sock.nat)
}

// seal encrypts a message for sending: whole, or in fragments when both
// ends announced fragmentation, ours sends them, and the whole datagram
// would be larger than fragment_size. frags is nil when whole.
func (sa *ikeSA) seal(m *message.Message) (whole []byte, frags [][]byte, err error) {
	whole, err = m.EncodeEncrypted(sa.out)
	if err != nil || !sa.fragPeer || sa.conn == nil || !sa.conn.Fragmentation.Sends() {
		return whole, nil, err
	}
	max := sa.fragmentLen()
	if len(whole) <= max {
		return whole, nil, nil
	}
	frags, err = m.EncodeFragments(sa.out, max)
	if err != nil {
		return nil, nil, err
	}
	sa.logger().Debug("sending in fragments", "exchange", m.Exchange, "msgid", m.MessageID, "octets", len(whole), "fragments", len(frags), "max", max)
	return whole, frags, nil
}

// transmit sends a request: its fragments, or the whole message.
func (sa *ikeSA) transmit(whole []byte, frags [][]byte) {
	sa.rec.lastSent = sa.e.nowStamp() // NAT keepalives wait for a pause (keepalive.go)
	if frags == nil {
		sa.e.sendTo(sa.sock, sa.local, sa.remote, whole)
		return
	}
	for _, f := range frags {
		sa.e.sendTo(sa.sock, sa.local, sa.remote, f)
	}
}

// sendResponse sends our answer to the peer's last request (again).
func (sa *ikeSA) sendResponse(s *sock, local, remote netip.AddrPort) {
	sa.rec.lastSent = sa.e.nowStamp()
	if fs := orZero(sa.frag).lastResp; fs != nil {
		for _, f := range fs {
			sa.e.sendTo(s, local, remote, f)
		}
		return
	}
	sa.e.sendTo(s, local, remote, sa.w.lastResp)
}

// reassemble takes one Encrypted Fragment message. It returns the whole
// message when this fragment completed it, else nil: the fragment was
// collected, or dropped (outside the window, not authentic, over a
// limit), or it was the first fragment of a retransmitted request, which
// resends our answer (RFC 7383 §2.6.1).
func (sa *ikeSA) reassemble(s *sock, m *message.Message, local, remote netip.AddrPort) *message.Message {
	h := m.Header
	if !sa.fragAnnounced {
		sa.logger().Debug("dropping a fragment: we did not announce fragmentation", "msgid", h.MessageID)
		return nil
	}
	var r **message.Reassembler
	if h.Response {
		if !sa.w.expects(h.MessageID, h.Exchange) {
			sa.logger().Debug("dropping a fragment of an unexpected response", "msgid", h.MessageID)
			return nil
		}
		r = &made(&sa.frag).resp
	} else {
		switch sa.w.classify(h.MessageID) {
		case reqNew:
			r = &made(&sa.frag).req
		case reqRetransmit:
			if f, _, err := m.OpenFragment(sa.in); (err == nil && f.Number == 1) || (orZero(sa.mke).lastInterReq != nil && bytes.Equal(m.Raw(), orZero(sa.mke).lastInterReq)) {
				sa.logger().Debug("answering retransmitted request (fragment 1)", "msgid", h.MessageID)
				sa.sendResponse(s, local, remote)
			}
			return nil
		default:
			sa.logger().Debug("dropping a fragment of a request outside the window", "msgid", h.MessageID, "expected", sa.w.peerNext)
			return nil
		}
	}
	f, pt, err := m.OpenFragment(sa.in)
	if err != nil {
		sa.logger().Debug("dropping a fragment that fails to decrypt", "msgid", h.MessageID, "err", err)
		return nil
	}
	if *r == nil {
		*r = message.NewReassembler(fragLimits)
	}
	now := sa.e.clk.Now()
	first, inner, done, err := (*r).Add(h, f, pt, now)
	if errors.Is(err, message.ErrFragmentOtherMessage) {
		// The window let this message in: what was being collected is
		// stale (an abandoned request, a response no longer awaited).
		(*r).Reset()
		first, inner, done, err = (*r).Add(h, f, pt, now)
	}
	if err != nil {
		if errors.Is(err, message.ErrFragmentLimit) {
			sa.logger().Warn("dropping a fragmented message", "err", err)
		} else {
			sa.logger().Debug("fragment not taken", "err", err)
		}
		return nil
	}
	if f.Number == 1 && !h.Response && h.Exchange == message.IKE_INTERMEDIATE {
		made(&sa.mke).lastInterReq = m.Raw()
	}
	if !done {
		sa.armFragTimer()
		return nil
	}
	whole, err := message.Reassembled(h, first, inner)
	if err != nil {
		sa.logger().Debug("dropping a reassembled message that does not parse", "msgid", h.MessageID, "err", err)
		return nil
	}
	sa.logger().Debug("reassembled", "exchange", h.Exchange, "msgid", h.MessageID, "fragments", f.Total, "octets", len(inner))
	return whole
}

// armFragTimer drops incomplete messages once they are older than the
// reassembly timeout, so an abandoned one holds no memory.
func (sa *ikeSA) armFragTimer() {
	f := made(&sa.frag)
	if f.timer != nil {
		return
	}
	f.timer = sa.e.after(message.NewReassembler(fragLimits).Limits().Timeout, func() {
		f.timer = nil
		now := sa.e.clk.Now()
		pending := false
		for _, r := range []*message.Reassembler{f.req, f.resp} {
			if r == nil {
				continue
			}
			if r.Expired(now) {
				h, _ := r.Active()
				sa.logger().Info("incomplete fragmented message dropped after the reassembly timeout", "msgid", h.MessageID, "exchange", h.Exchange)
				r.Reset()
			}
			if _, active := r.Active(); active {
				pending = true
			}
		}
		if pending {
			sa.armFragTimer()
		}
	})
}

// dropFragments forgets everything being collected (the SA goes).
func (sa *ikeSA) dropFragments() {
	if f := sa.frag; f != nil {
		f.timer.Stop()
		f.timer = nil
		f.req, f.resp = nil, nil
	}
}
