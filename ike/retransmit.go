package ike

import (
	"net/netip"
	"time"

	"github.com/keyplane/keyplane/ike/message"
)

// setupWindow connects the SA's message window to the SA: its encoder,
// its socket, the daemon's retransmission settings and the loop's timers.
func (sa *ikeSA) setupWindow() { sa.w.host = sa }

// The IKE SA is its window's host (window.go).

func (sa *ikeSA) winPolicy() retransmitPolicy {
	d := sa.e.cfg.Daemon
	return retransmitPolicy{Timeout: d.RetransmitTimeout, Base: d.RetransmitBase, Tries: d.RetransmitTries}
}

func (sa *ikeSA) winAfter(d time.Duration, f func()) stopper { return sa.e.after(d, f) }

func (sa *ikeSA) winChanged() { sa.e.haIKE(sa) } // hastate.go

func (sa *ikeSA) winXmit(r *request) {
	if r.tries > 0 {
		sa.logger().Info("retransmitting", "exchange", r.exch, "msgid", r.msgID, "try", r.tries)
	}
	sa.transmit(r.data, r.frags)
}

func (sa *ikeSA) winGiveUp(r *request) {
	sa.logger().Warn("peer not responding: giving up", "exchange", r.exch, "msgid", r.msgID, "retransmits", r.tries)
	if r.onTimeout != nil {
		r.onTimeout()
	} else {
		sa.destroyErr(errPeerGone("peer not responding"))
	}
}

func (sa *ikeSA) encodeRequest(r *request) ([]byte, error) {
	m := &message.Message{Header: message.Header{SPIi: sa.spii, SPIr: sa.spir, Exchange: r.exch,
		Initiator: sa.initiator, MessageID: r.msgID}, Payloads: r.payloads}
	sa.logger().Debug("sending request", "message", logText{m}, "to", sa.remote)
	if r.exch == message.IKE_SA_INIT {
		b, err := m.Encode()
		made(&sa.hs).initReq = b
		return b, err
	}
	if r.built != nil {
		r.built(m)
	}
	b, frags, err := sa.seal(m)
	r.frags = frags
	return b, err
}

// send starts a request, or queues it behind the outstanding one, or
// holds it while the SA's link is down.
func (sa *ikeSA) send(r *request) {
	if sa.quiet() {
		sa.hold(r)
		return
	}
	if err := sa.w.start(r); err != nil {
		sa.logger().Error("cannot encode request", "exchange", r.exch, "err", err)
		if r.onTimeout != nil {
			r.onTimeout()
		}
	}
}

// answered completes the outstanding request and starts the next queued.
func (sa *ikeSA) answered(m *message.Message) {
	r := sa.w.complete()
	if r != nil && r.onResponse != nil {
		r.onResponse(m)
	}
	sa.exchangeDone()
	sa.next()
}

// next sends the first queued request when nothing is in flight.
func (sa *ikeSA) next() {
	if sa.state == ikeDead || sa.quiet() {
		return
	}
	if r := sa.w.pop(); r != nil {
		sa.send(r)
	}
}

// respond sends the answer to the peer's request and keeps it for
// retransmitted copies of that request.
func (sa *ikeSA) respond(req *message.Message, payloads []message.Payload, s *sock, local, remote netip.AddrPort) {
	if f := sa.e.rewriteResponse; f != nil {
		payloads = f(req, payloads)
	}
	m := sa.responseMessage(req, payloads)
	b, frags, err := sa.seal(m)
	if err != nil {
		sa.logger().Error("cannot encode response", "exchange", req.Exchange, "err", err)
		return
	}
	sa.w.answered(req.MessageID, b)
	if frags != nil || sa.frag != nil {
		made(&sa.frag).lastResp = frags
	}
	sa.logger().Debug("sending response", "message", logText{m}, "to", remote)
	sa.sendResponse(s, local, remote)
}

// responseMessage is our answer to req with these payloads, unencrypted.
func (sa *ikeSA) responseMessage(req *message.Message, payloads []message.Payload) *message.Message {
	return &message.Message{Header: message.Header{SPIi: sa.spii, SPIr: sa.spir, Exchange: req.Exchange,
		Initiator: sa.initiator, Response: true, MessageID: req.MessageID}, Payloads: payloads}
}
