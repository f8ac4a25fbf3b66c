// Package observe is how the IKE engine reports what it measures
// (handshake times, failures, retransmissions, cookies, dropped
// datagrams, dataplane errors) to whoever wants it, a metrics exporter
// for one, without importing any metrics library.
//
// The engine will take a Recorder in its Options and call it from its
// loop: implementations must be quick and must not block (count, don't
// do I/O). keyplane's Prometheus exporter (internal/metrics) implements
// it. Nothing calls it yet: the engine's instrumentation is the next
// step of issue 18.
package observe

import "time"

// Role is the side of an IKE SA: "initiator" or "responder".
type Role string

const (
	Initiator Role = "initiator"
	Responder Role = "responder"
)

// Recorder receives the engine's measurements.
type Recorder interface {
	// HandshakeDone: an IKE SA and its first child are up, took after
	// the first IKE_SA_INIT was sent (initiator) or received (responder).
	HandshakeDone(role Role, took time.Duration)
	// HandshakeFailed: an IKE SA did not come up; reason is a notify
	// type name (AUTHENTICATION_FAILED, NO_PROPOSAL_CHOSEN, ...) or a
	// short fixed cause ("timeout"), never free text (it is a label).
	HandshakeFailed(role Role, reason string)
	// Retransmit: a request of this exchange type was sent again.
	Retransmit(exchange string)
	// CookieSent: a responder under load answered with a COOKIE.
	CookieSent()
	// DatagramDropped: an IKE datagram was dropped unanswered; reason is
	// a short fixed cause ("unknown SPI", "malformed", ...).
	DatagramDropped(reason string)
	// DataplaneError: a dataplane call failed; op is kernelops.Error.Op.
	DataplaneError(op string)
}

// Nop records nothing.
type Nop struct{}

func (Nop) HandshakeDone(Role, time.Duration) {}
func (Nop) HandshakeFailed(Role, string)      {}
func (Nop) Retransmit(string)                 {}
func (Nop) CookieSent()                       {}
func (Nop) DatagramDropped(string)            {}
func (Nop) DataplaneError(string)             {}

var _ Recorder = Nop{}
