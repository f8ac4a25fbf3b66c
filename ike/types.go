package ike

import (
	"errors"
	"fmt"
	"strconv"
	"strings"
)

// The Go API's typed values: event kinds, SA states and SPIs. Kinds and
// states are string types whose values are the words the control
// socket, the CLI and the metrics have always shown (so JSON and
// comparisons with those words are unchanged), with a constant for each.

// EventKind is what an Event is about.
type EventKind string

// The event kinds.
const (
	EventIKE       EventKind = "ike"       // an IKE SA: State is its IKEState, or "invalid-spi", "moved", "reauthenticating", "recovering", "mobike-move", "mobike-update", "mobike-refused" (mobike.go)
	EventChild     EventKind = "child"     // a CHILD SA: State is its ChildState, or "rekeying", "rekey-needed", "refused"
	EventDataplane EventKind = "dataplane" // a dataplane event the engine acted on
	EventLink      EventKind = "link"      // an interface went down or up
	EventAddr      EventKind = "addr"      // a local address came or went
	EventOverrun   EventKind = "overrun"   // this subscriber fell behind and lost events
)

func (k EventKind) String() string { return string(k) }

// IKEState is where an IKE SA is (IKESAInfo.State, and Event.State of
// an EventIKE state change).
type IKEState string

// The IKE SA states.
const (
	IKEInitSent    IKEState = "init-sent"   // initiator: IKE_SA_INIT request out
	IKEAuthSent    IKEState = "auth-sent"   // initiator: IKE_AUTH request out
	IKEHalfOpen    IKEState = "half-open"   // responder: IKE_SA_INIT answered, waiting for IKE_AUTH
	IKEEstablished IKEState = "established" // authenticated
	IKEDeleting    IKEState = "deleting"    // our delete is out
	IKEDead        IKEState = "dead"        // gone
	IKERekeyed     IKEState = "rekeyed"     // replaced by a rekey; waiting for its delete
	IKERedundant   IKEState = "redundant"   // the peer's redundant SA after a rekey collision
)

func (s IKEState) String() string { return string(s) }

// ChildState is where a CHILD SA is (ChildInfo.State, and Event.State
// of an EventChild state change).
type ChildState string

// The CHILD SA states.
const (
	ChildNegotiating ChildState = "negotiating"
	ChildInstalled   ChildState = "installed"
	ChildDeleting    ChildState = "deleting"
	ChildDeleted     ChildState = "deleted"
	ChildFailed      ChildState = "failed"
)

func (s ChildState) String() string { return string(s) }

func (s ikeState) public() IKEState     { return IKEState(s.String()) }
func (s childState) public() ChildState { return ChildState(s.String()) }

// SPIs are the SPIs an event names: an IKE SA's (I the initiator's, R
// the responder's) or, Child set, a CHILD SA's (In our inbound, Out our
// outbound ESP SPI). As text (JSON, the control socket) they are
// "%016x_i %016x_r" or "%08x_i %08x_o", the zero value "".
type SPIs struct {
	Child   bool
	I, R    uint64
	In, Out uint32
}

// IsZero reports the zero value (no SPIs: omitted from JSON).
func (s SPIs) IsZero() bool { return s == SPIs{} }

func (s SPIs) String() string {
	switch {
	case s.Child:
		return fmt.Sprintf("%08x_i %08x_o", s.In, s.Out)
	case s.IsZero():
		return ""
	}
	return fmt.Sprintf("%016x_i %016x_r", s.I, s.R)
}

// MarshalText is String.
func (s SPIs) MarshalText() ([]byte, error) { return []byte(s.String()), nil }

// ErrBadSPIs is text that is not SPIs' String.
var ErrBadSPIs = errors.New("ike: bad SPIs text")

// UnmarshalText parses what String prints.
func (s *SPIs) UnmarshalText(b []byte) error {
	t := string(b)
	if t == "" {
		*s = SPIs{}
		return nil
	}
	bad := func() error {
		if len(t) > 40 {
			t = t[:40] + "..."
		}
		return fmt.Errorf("%w: %q", ErrBadSPIs, t)
	}
	a, c, ok := strings.Cut(t, " ")
	if !ok || !strings.HasSuffix(a, "_i") || len(c) < 2 {
		return bad()
	}
	a = strings.TrimSuffix(a, "_i")
	suffix := c[len(c)-2:]
	c = c[:len(c)-2]
	hex := func(v string, digits int) (uint64, bool) {
		if len(v) != digits {
			return 0, false
		}
		for _, c := range v {
			if !(c >= '0' && c <= '9' || c >= 'a' && c <= 'f') {
				return 0, false // one spelling: String's
			}
		}
		n, err := strconv.ParseUint(v, 16, digits*4)
		return n, err == nil
	}
	switch suffix {
	case "_r":
		i, ok1 := hex(a, 16)
		r, ok2 := hex(c, 16)
		if !ok1 || !ok2 || i == 0 { // an IKE SA's initiator SPI is never zero
			return bad()
		}
		*s = SPIs{I: i, R: r}
	case "_o":
		in, ok1 := hex(a, 8)
		out, ok2 := hex(c, 8)
		if !ok1 || !ok2 {
			return bad()
		}
		*s = SPIs{Child: true, In: uint32(in), Out: uint32(out)}
	default:
		return bad()
	}
	return nil
}

// eventSPIs are the IKE SA's SPIs for an event.
func (sa *ikeSA) eventSPIs() SPIs { return SPIs{I: sa.spii, R: sa.spir} }

// eventSPIs are the child's SPIs for an event.
func (ch *childSA) eventSPIs() SPIs { return SPIs{Child: true, In: ch.inSPI, Out: ch.outSPI} }
