package message

import (
	"errors"
	"fmt"
	"time"
)

// Reassembly errors. Every error of Reassembler.Add is a *FragmentError
// wrapping one of them.
var (
	// ErrFragmentLimit: the message exceeds a ReassemblyLimits bound; what
	// was collected of it is dropped.
	ErrFragmentLimit = errors.New("fragment limit exceeded")
	// ErrFragmentOtherMessage: the fragment belongs to a message other than
	// the one being reassembled (Message ID, exchange or direction); the
	// caller decides, from its message window, whether to Reset and start
	// over with it.
	ErrFragmentOtherMessage = errors.New("fragment of another message")
	// ErrFragmentDuplicate: this fragment number was already received (a
	// retransmission); nothing changes.
	ErrFragmentDuplicate = errors.New("duplicate fragment")
	// ErrFragmentStale: the fragment has a smaller Total Fragments than the
	// ones collected, so it comes from an older fragmentation of the message
	// and is dropped (RFC 7383 §2.6.2).
	ErrFragmentStale = errors.New("fragment of an older fragmentation")
	// ErrFragmentInvalid: the fragment breaks RFC 7383 §2.5 (Next Payload
	// set in a fragment other than the first, or unset in the first).
	ErrFragmentInvalid = errors.New("invalid fragment")
)

// FragmentError reports a fragment that was not taken.
type FragmentError struct {
	MessageID     uint32
	Number, Total uint16
	Reason        string
	Err           error
}

func (e *FragmentError) Error() string {
	return fmt.Sprintf("ikev2 fragment %d/%d of message %d: %v: %s", e.Number, e.Total, e.MessageID, e.Err, e.Reason)
}

func (e *FragmentError) Unwrap() error { return e.Err }

// ReassemblyLimits bound what one message in fragments may take. Zero
// fields take the defaults.
type ReassemblyLimits struct {
	// MaxFragments is the largest Total Fragments accepted (default 64).
	MaxFragments int
	// MaxSize bounds the sum of the fragments' plaintexts (default 65531
	// octets: as much as one SK payload can hold, so that RFC 9242's
	// IntAuth, computed as if the message came whole, stays expressible).
	MaxSize int
	// Timeout is how long a message may take to complete after its first
	// fragment arrived; an older incomplete one is dropped when the next
	// fragment comes (default 30 s).
	Timeout time.Duration
}

// Default reassembly limits.
const (
	DefaultMaxFragments       = 64
	DefaultMaxReassembledSize = 0xffff - genericHeaderLen
	DefaultReassemblyTimeout  = 30 * time.Second
)

func (l ReassemblyLimits) withDefaults() ReassemblyLimits {
	if l.MaxFragments <= 0 {
		l.MaxFragments = DefaultMaxFragments
	}
	if l.MaxFragments > 0xffff {
		l.MaxFragments = 0xffff
	}
	if l.MaxSize <= 0 || l.MaxSize > DefaultMaxReassembledSize {
		l.MaxSize = DefaultMaxReassembledSize
	}
	if l.Timeout <= 0 {
		l.Timeout = DefaultReassemblyTimeout
	}
	return l
}

// Reassembler collects the fragments of one message at a time (RFC 7383
// §2.6.2), after each was authenticated and decrypted (Message.OpenFragment).
// It keeps at most MaxSize octets and MaxFragments slots. It is not safe for
// concurrent use; an IKE SA holds one per direction.
type Reassembler struct {
	limits ReassemblyLimits

	active   bool
	header   Header
	total    uint16
	first    PayloadType
	parts    [][]byte
	received int
	size     int
	start    time.Time
}

// NewReassembler returns a Reassembler with the given limits.
func NewReassembler(l ReassemblyLimits) *Reassembler {
	return &Reassembler{limits: l.withDefaults()}
}

// Limits returns the limits in force.
func (r *Reassembler) Limits() ReassemblyLimits { return r.limits }

// Active reports whether a message is partly collected, and its header.
func (r *Reassembler) Active() (Header, bool) { return r.header, r.active }

// Reset drops whatever was collected.
func (r *Reassembler) Reset() {
	clear(r.parts)
	*r = Reassembler{limits: r.limits}
}

// Expired reports whether the message being collected is older than the
// timeout at now.
func (r *Reassembler) Expired(now time.Time) bool {
	return r.active && now.Sub(r.start) > r.limits.Timeout
}

func sameMessage(a, b Header) bool {
	return a.MessageID == b.MessageID && a.Exchange == b.Exchange && a.Response == b.Response &&
		a.SPIi == b.SPIi && a.SPIr == b.SPIr
}

// Add takes one opened fragment: h is the header of its message, f its
// SKF payload, plaintext its decrypted content (padding removed). It
// returns the complete message's inner payloads when this fragment was the
// last one missing: the payload type of the first (from fragment 1) and
// the joined plaintext, ready for ParsePayloads; the Reassembler is then
// empty again. A fragment not taken is a *FragmentError.
func (r *Reassembler) Add(h Header, f *EncryptedFragment, plaintext []byte, now time.Time) (first PayloadType, inner []byte, done bool, err error) {
	fail := func(sentinel error, format string, args ...any) (PayloadType, []byte, bool, error) {
		return 0, nil, false, &FragmentError{MessageID: h.MessageID, Number: f.Number, Total: f.Total,
			Reason: fmt.Sprintf(format, args...), Err: sentinel}
	}
	if f.Number == 0 || f.Total == 0 || f.Number > f.Total {
		return fail(ErrFragmentInvalid, "fragment number out of range")
	}
	if (f.Number == 1) != (f.NextPayload != PayloadNone) {
		return fail(ErrFragmentInvalid, "Next Payload %v in fragment %d", f.NextPayload, f.Number)
	}
	if int(f.Total) > r.limits.MaxFragments {
		return fail(ErrFragmentLimit, "%d fragments, at most %d accepted", f.Total, r.limits.MaxFragments)
	}
	if len(plaintext) > r.limits.MaxSize {
		return fail(ErrFragmentLimit, "%d octets in one fragment, at most %d per message", len(plaintext), r.limits.MaxSize)
	}
	if r.active && r.Expired(now) {
		r.Reset()
	}
	if r.active && !sameMessage(r.header, h) {
		return fail(ErrFragmentOtherMessage, "collecting message %d (%v)", r.header.MessageID, r.header.Exchange)
	}
	if r.active && f.Total != r.total {
		if f.Total < r.total {
			return fail(ErrFragmentStale, "collecting %d fragments", r.total)
		}
		// The sender fragmented the message again, smaller (RFC 7383
		// §2.6.2): start over with the new fragmentation.
		r.Reset()
	}
	if !r.active {
		r.active, r.header, r.total, r.start = true, h, f.Total, now
		r.parts = make([][]byte, f.Total)
	}
	i := int(f.Number) - 1
	if r.parts[i] != nil {
		return fail(ErrFragmentDuplicate, "already received")
	}
	if r.size+len(plaintext) > r.limits.MaxSize {
		r.Reset()
		return fail(ErrFragmentLimit, "message exceeds %d octets", r.limits.MaxSize)
	}
	r.parts[i] = append(make([]byte, 0, len(plaintext)+1), plaintext...) // non-nil even when empty
	r.size += len(plaintext)
	r.received++
	if f.Number == 1 {
		r.first = f.NextPayload
	}
	if r.received < int(r.total) {
		return 0, nil, false, nil
	}
	inner = make([]byte, 0, r.size)
	for _, p := range r.parts {
		inner = append(inner, p...)
	}
	first = r.first
	r.Reset()
	return first, inner, true, nil
}

// FragmentMessageLen is the largest IKE message (header included, non-ESP
// marker excluded) that fits in one IP datagram of fragmentSize octets,
// strongSwan's fragment_size, which counts the whole datagram: less the
// IPv4 (20) or IPv6 (40) header, the UDP header (8) and, on port 4500, the
// non-ESP marker (4). It returns 0 if nothing fits.
func FragmentMessageLen(fragmentSize int, ipv6, nonESPMarker bool) int {
	n := fragmentSize - 8
	if ipv6 {
		n -= 40
	} else {
		n -= 20
	}
	if nonESPMarker {
		n -= 4
	}
	return max(n, 0)
}

// Reassembled returns the message a Reassembler completed: h is the
// header of its fragments, first and inner what Add returned. Its
// payloads are decoded from inner (a *ParseError if they do not decode);
// it is Protected, Decrypt does nothing on it, Raw is nil, and
// IntAuthOctets gives RFC 9242's octets as if it had come whole
// (IntAuthOctetsOfFragments).
func Reassembled(h Header, first PayloadType, inner []byte) (*Message, error) {
	ps, err := ParsePayloads(first, inner)
	if err != nil {
		return nil, err
	}
	h.NextPayload = first
	return &Message{Header: h, Payloads: ps, Protected: true, skOff: -1, plain: inner, reassembled: true, first: first}, nil
}
