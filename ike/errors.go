package ike

import (
	"errors"
	"fmt"

	"github.com/keyplane/keyplane/ike/message"
)

// NotifyError is a negotiation that ended with an IKE error notify
// (RFC 7296 §3.10.1): one the peer sent us (FromPeer), or one of ours —
// sent to the peer in answer to its request, or naming why we refused
// the peer's answer to ours (an initiator has no notify to send then; it
// deletes what the peer installed). Use errors.As to read it:
//
//	var ne *ike.NotifyError
//	if errors.As(err, &ne) && ne.Type == message.NO_PROPOSAL_CHOSEN { ... }
type NotifyError struct {
	Type     message.NotifyType
	FromPeer bool
	Reason   string // what was wrong, for humans
}

func (e *NotifyError) Error() string {
	s := "peer answered " + e.Type.String()
	if !e.FromPeer {
		s = "refused with " + e.Type.String()
	}
	if e.Reason != "" {
		s += ": " + e.Reason
	}
	return s
}

// peerNotify is the peer's error notify, with why it matters.
func peerNotify(t message.NotifyType, format string, args ...any) *NotifyError {
	return &NotifyError{Type: t, FromPeer: true, Reason: fmt.Sprintf(format, args...)}
}

// ourNotify is our refusal, named by the notify that means it.
func ourNotify(t message.NotifyType, format string, args ...any) *NotifyError {
	return &NotifyError{Type: t, Reason: fmt.Sprintf(format, args...)}
}

// ErrPeerNotResponding: a request of ours got no answer after every
// retransmission (the peer is dead, or the path to it is).
var ErrPeerNotResponding = errors.New("peer not responding")

func errPeerGone(what string) error { return fmt.Errorf("%s: %w", what, ErrPeerNotResponding) }

// notifyOf returns the notify type an error carries, if any.
func notifyOf(err error) (message.NotifyType, bool) {
	var ne *NotifyError
	if errors.As(err, &ne) {
		return ne.Type, true
	}
	return 0, false
}
