package ike

import (
	"context"
	"log/slog"
	"net/netip"
	"time"

	"github.com/keyplane/keyplane/ike/message"
)

// INVALID_IKE_SPI (RFC 7296 §2.21.4, §1.5): a request for an IKE SA we do
// not know (we restarted, or deleted it while the peer did not hear) is
// answered with an unprotected INVALID_IKE_SPI notify, SPIs, exchange and
// message ID copied, so the peer learns at once rather than after its
// retransmissions. The answer is unauthenticated and costs us a packet
// for each one received, so it is rate-limited: one token bucket for the
// whole engine (invalidSPIRate per second, invalidSPIBurst at once), no
// state per source. Responses and IKE_SA_INIT are never answered.

const (
	invalidSPIRate  = 10.0
	invalidSPIBurst = 20
)

// tokenBucket is a rate limit: burst tokens at most, refilled at rate per
// second.
type tokenBucket struct {
	rate, burst float64
	tokens      float64
	at          time.Time
}

// refill adds the tokens earned since the last call.
func (b *tokenBucket) refill(now time.Time) {
	if b.at.IsZero() {
		b.tokens = b.burst
	} else if now.After(b.at) {
		b.tokens = min(b.burst, b.tokens+b.rate*now.Sub(b.at).Seconds())
	}
	b.at = now
}

// take spends one token if there is one.
func (b *tokenBucket) take(now time.Time) bool {
	b.refill(now)
	if b.tokens < 1 {
		return false
	}
	b.tokens--
	return true
}

// wait is how long until the next token, from the last refill.
func (b *tokenBucket) wait() time.Duration {
	if b.tokens >= 1 {
		return 0
	}
	return time.Duration((1 - b.tokens) / b.rate * float64(time.Second))
}

// unknownSPI handles a message for an IKE SA we do not have.
func (e *Engine) unknownSPI(s *sock, m *message.Message, local, remote netip.AddrPort) {
	h := m.Header
	if h.Response || h.Exchange == message.IKE_SA_INIT {
		e.log.Debug("dropping message for an unknown IKE SA", "from", remote, "message", logText{m})
		return
	}
	if e.holdUnknown {
		// Taking over (HA): the SA may be one about to be restored, and an
		// INVALID_IKE_SPI now would make the peer drop it. Unanswered, the
		// peer retransmits and the restored SA answers.
		e.unknownHeld++
		e.log.Debug("unknown IKE SA while taking over: not answering", "from", remote, "message", logText{m})
		return
	}
	if !e.invalidSPI.take(e.clk.Now()) {
		e.invalidSPIDropped++
		e.log.Debug("unknown IKE SA: INVALID_IKE_SPI answers over their rate; not answering", "from", remote, "message", logText{m})
		return
	}
	e.preLog(e.log, remote.Addr(), slog.LevelInfo, "request for an unknown IKE SA: answering INVALID_IKE_SPI", "port", remote.Port(), "message", logText{m})
	a := &message.Message{Header: message.Header{SPIi: h.SPIi, SPIr: h.SPIr, Exchange: h.Exchange,
		Initiator: !h.Initiator, Response: true, MessageID: h.MessageID},
		Payloads: []message.Payload{&message.Notify{NotifyType: message.INVALID_IKE_SPI}}}
	b, err := a.Encode()
	if err != nil {
		e.log.Error("cannot encode INVALID_IKE_SPI", "err", err)
		return
	}
	e.invalidSPISent++
	e.sendTo(s, local, remote, b)
}

// peerForgotSA: the peer answered our request with an unprotected
// INVALID_IKE_SPI. Anyone on the path could have sent it, so the SA does
// not change (RFC 7296 §2.21.4: MUST NOT change state); the request in
// flight keeps being retransmitted and the SA ends if the peer never
// answers it. Logged once per SA. A child to restart on a dead peer
// makes it a hint to reauthenticate at once (peerMayHaveRestarted).
func (sa *ikeSA) peerForgotSA(from netip.AddrPort) {
	if sa.invalidSPISeen {
		return
	}
	sa.invalidSPISeen = true
	sa.logger().Warn("peer answered INVALID_IKE_SPI (unauthenticated): it may have lost this IKE SA; waiting for the retransmissions' outcome", "from", from)
	sa.e.publish(Event{Kind: "ike", IKEID: sa.id, Name: sa.name(), State: "invalid-spi", SPIs: sa.eventSPIs(),
		Reason: "peer answered INVALID_IKE_SPI"})
	sa.peerMayHaveRestarted() // recovery.go
}

// HoldUnknownSPIs, while on, drops requests for IKE SAs the engine does
// not have without the INVALID_IKE_SPI answer. An HA node turns it on
// before it takes the virtual address and off once the mirrored SAs are
// restored: in between, the peer's requests for those SAs reach an engine
// that does not have them yet, and an INVALID_IKE_SPI would end them at
// the peer.
func (e *Engine) HoldUnknownSPIs(ctx context.Context, on bool) error {
	return e.call(ctx, func() { e.holdUnknown = on })
}
