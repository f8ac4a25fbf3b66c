package ike

import (
	"math"
	"net/netip"
	"time"

	"github.com/keyplane/keyplane/ike/message"
)

// request is one exchange we start: encoded once, retransmitted
// unchanged (RFC 7296 §2.1) with exponential backoff until answered or
// given up.
type request struct {
	exch       message.ExchangeType
	payloads   []message.Payload
	msgID      uint32
	data       []byte
	tries      int
	timer      *timer
	onResponse func(*message.Message)
	onTimeout  func()
	// held is when the request was held back because the SA's link was
	// down (zero: never held); onDrop runs if it is dropped unsent.
	held   time.Time
	onDrop func(why string)
}

func (r *request) stopTimer() { r.timer.Stop() }

// send starts a request, or queues it behind the outstanding one, or
// holds it while the SA's link is down.
func (sa *ikeSA) send(r *request) {
	if sa.quiet() {
		sa.hold(r)
		return
	}
	if sa.pending != nil {
		sa.queue = append(sa.queue, r)
		return
	}
	m := &message.Message{Header: message.Header{SPIi: sa.spii, SPIr: sa.spir, Exchange: r.exch,
		Initiator: sa.initiator, MessageID: sa.nextMsgID}, Payloads: r.payloads}
	r.msgID = sa.nextMsgID
	var err error
	if r.exch == message.IKE_SA_INIT {
		m.MessageID = 0
		r.msgID = 0
		r.data, err = m.Encode()
		sa.initReq = r.data
	} else {
		r.data, err = m.EncodeEncrypted(sa.out)
	}
	if err != nil {
		sa.log.Error("cannot encode request", "exchange", r.exch, "err", err)
		if r.onTimeout != nil {
			r.onTimeout()
		}
		return
	}
	sa.pending = r
	sa.log.Debug("sending request", "msg", m.String(), "to", sa.remote)
	sa.e.sendTo(sa.sock, sa.local, sa.remote, r.data)
	sa.arm(r)
}

// arm schedules the next retransmission: timeout * base^tries.
func (sa *ikeSA) arm(r *request) {
	d := sa.e.cfg.Daemon
	wait := time.Duration(float64(d.RetransmitTimeout) * math.Pow(d.RetransmitBase, float64(r.tries)))
	r.timer = sa.e.after(wait, func() {
		if sa.pending != r || sa.quiet() {
			return
		}
		if r.tries >= d.RetransmitTries {
			sa.pending = nil
			sa.log.Warn("peer not responding: giving up", "exchange", r.exch, "msgid", r.msgID, "retransmits", r.tries)
			if r.onTimeout != nil {
				r.onTimeout()
			} else {
				sa.destroy("peer not responding")
			}
			return
		}
		r.tries++
		sa.log.Info("retransmitting", "exchange", r.exch, "msgid", r.msgID, "try", r.tries)
		sa.e.sendTo(sa.sock, sa.local, sa.remote, r.data)
		sa.arm(r)
	})
}

// answered completes the outstanding request and starts the next queued.
func (sa *ikeSA) answered(m *message.Message) {
	r := sa.pending
	r.stopTimer()
	sa.pending = nil
	if r.exch != message.IKE_SA_INIT {
		sa.nextMsgID++
	}
	if r.onResponse != nil {
		r.onResponse(m)
	}
	sa.exchangeDone()
	sa.next()
}

func (sa *ikeSA) next() {
	if sa.pending == nil && len(sa.queue) > 0 && sa.state != ikeDead && !sa.quiet() {
		r := sa.queue[0]
		sa.queue = sa.queue[1:]
		sa.send(r)
	}
}

// respond sends the answer to the peer's request and keeps it for
// retransmitted copies of that request.
func (sa *ikeSA) respond(req *message.Message, payloads []message.Payload, s *sock, local, remote netip.AddrPort) {
	m := &message.Message{Header: message.Header{SPIi: sa.spii, SPIr: sa.spir, Exchange: req.Exchange,
		Initiator: sa.initiator, Response: true, MessageID: req.MessageID}, Payloads: payloads}
	b, err := m.EncodeEncrypted(sa.out)
	if err != nil {
		sa.log.Error("cannot encode response", "exchange", req.Exchange, "err", err)
		return
	}
	sa.peerMsgID = req.MessageID + 1
	sa.lastResp, sa.lastRespOK = b, true
	sa.log.Debug("sending response", "msg", m.String(), "to", remote)
	sa.e.sendTo(s, local, remote, b)
}
