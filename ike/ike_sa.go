package ike

import (
	"crypto/rand"
	"encoding/binary"
	"errors"
	"fmt"
	"log/slog"
	"net/netip"
	"strings"

	"github.com/keyplane/keyplane/ike/config"
	"github.com/keyplane/keyplane/ike/ikecrypto"
	"github.com/keyplane/keyplane/ike/message"
)

// ikeState is where an IKE SA is.
type ikeState uint8

const (
	ikeInitSent    ikeState = iota + 1 // initiator: IKE_SA_INIT request out
	ikeAuthSent                        // initiator: IKE_AUTH request out
	ikeHalfOpen                        // responder: IKE_SA_INIT answered, waiting for IKE_AUTH
	ikeEstablished                     // authenticated
	ikeDeleting                        // our delete is out
	ikeDead                            // gone
	ikeRekeyed                         // replaced by a rekey; waiting for its delete
	ikeRedundant                       // the peer's redundant SA after a rekey collision; waiting for its delete
)

func (s ikeState) String() string {
	switch s {
	case ikeInitSent:
		return "init-sent"
	case ikeAuthSent:
		return "auth-sent"
	case ikeHalfOpen:
		return "half-open"
	case ikeEstablished:
		return "established"
	case ikeDeleting:
		return "deleting"
	case ikeDead:
		return "dead"
	case ikeRekeyed:
		return "rekeyed"
	case ikeRedundant:
		return "redundant"
	}
	return fmt.Sprintf("state(%d)", uint8(s))
}

// ikeSA is one IKE SA, in either role. Loop-owned.
type ikeSA struct {
	e  *Engine
	id uint32 // unique within the engine's run (ids.go)
	// chg: its node in the list of SAs by last change (changes.go; 0:
	// not listed).
	chg       uint32
	conn      *config.Connection // nil for a responder until IKE_AUTH picks one
	initiator bool
	// keComputing: a request is on a worker (ke_offload.go); beside
	// initiator, in what was its padding.
	keComputing bool
	// timeHandshake: our first IKE_SA_INIT went out as the SA was
	// created, and the handshake's length is still to be recorded
	// (Engine.handshakeDone).
	timeHandshake bool
	state         ikeState
	natLocal      bool // we are behind a NAT
	natRemote     bool // the peer is behind a NAT (or fakes it to force encapsulation)
	dpdKind       dpdKind
	// idleSeen: idle reports were acted on; once the peer has answered,
	// the children's watches are nudged for fresh ones (liveness.go).
	idleSeen bool
	spii     uint64
	spir     uint64
	created  stamp
	estAt    stamp

	sock          *sock
	local, remote netip.AddrPort

	suite ikecrypto.IKESuite
	keys  *ikecrypto.IKEKeys
	out   message.Cipher
	in    message.Cipher
	// hs: the IKE_SA_INIT state (handshake.go); nil before the first
	// write and once established.
	hs *handshake

	// w is the message window: our requests and the peer's.
	w window

	children []*childSA
	byOut    outIndex // installed children by the peer's SPI (outindex.go)
	// first is the child negotiated in IKE_AUTH (initiator).
	first *childSA

	dpdTimer *timer
	// rekeyTimer: when to rekey the SA (rekey_ike.go), or, once rekeyed
	// by the peer, when to stop waiting for its delete.
	rekeyTimer  *timer
	rekeyIKEOut *ikeRekey // our IKE rekey in flight
	// rekeyIKEIn is the peer's rekey of this SA, answered while ours was
	// out: a collision, settled when ours is answered (collision.go).
	rekeyIKEIn *peerIKERekey
	// pendingOf: this SA came from the peer's rekey of pendingOf during a
	// collision not settled yet; it holds no children meanwhile.
	pendingOf *ikeSA
	// lastHeard is when an authenticated message last came from the peer.
	lastHeard stamp
	// Link awareness (links.go): ifIndex is the interface its local
	// address was last seen on (0: none known).
	link         linkState
	reviveQueued bool
	// invalidSPISeen: the peer's INVALID_IKE_SPI was logged.
	invalidSPISeen bool
	initExt                   // IKE_SA_INIT's notifications (init_ext.go)
	ifIndex        int32      // beside the small fields above: no padding
	frag           *fragState // RFC 7383 fragmentation (fragments.go); nil: none yet
	mke            *multiKE   // RFC 9242/9370 (intermediate.go, followup.go); nil: none yet

	// mob: RFC 4555 (mobike.go).
	mob mobikeState

	// rec: recovery, reauthentication, keepalives (recovery.go).
	rec recoveryState
	// vips: virtual IPs installed or leased (vips.go, pools.go); nil:
	// none.
	vips *vipState
}

// stateText is the state, and whether it is a replacement not settled
// yet.
func (sa *ikeSA) stateText() string {
	if sa.pendingOf != nil {
		return sa.state.String() + " (rekey collision pending)"
	}
	return sa.state.String()
}

func randomSPI(taken func(uint64) bool) uint64 {
	var b [8]byte
	for {
		rand.Read(b[:])
		v := binary.BigEndian.Uint64(b[:])
		// A zero high word could look like a non-ESP marker on port 4500.
		if v>>32 != 0 && !taken(v) {
			return v
		}
	}
}

func (e *Engine) newSPI() uint64 {
	return randomSPI(func(v uint64) bool { _, ok := e.sas[v]; return ok || e.reserved[v] })
}

// localSPI is our SPI of the SA: the index of e.sas.
func (sa *ikeSA) localSPI() uint64 {
	if sa.initiator {
		return sa.spii
	}
	return sa.spir
}

func (sa *ikeSA) spis() string { return fmt.Sprintf("%016x_i %016x_r", sa.spii, sa.spir) }

func (sa *ikeSA) name() string {
	if sa.conn != nil {
		return sa.conn.Name
	}
	return "(unknown)"
}

// logger is the SA's logger: it reads the SA's name, ID and SPIs as each
// line is logged (salog.go), so a change of state or SPIs needs no new
// one. The handshake, which logs most, keeps one; an established SA
// makes one when it logs (a few lines an hour), as children do, instead
// of keeping some 80 octets per SA for it.
func (sa *ikeSA) logger() *slog.Logger {
	if hs := sa.hs; hs != nil {
		if hs.log == nil {
			hs.log = sa.newLogger()
		}
		return hs.log
	}
	return sa.newLogger()
}

func (sa *ikeSA) newLogger() *slog.Logger { return slog.New(&saLog{inner: sa.e.log.Handler(), sa: sa}) }

// setState logs the change (one line per change) and publishes it.
func (sa *ikeSA) setState(s ikeState, reason string) {
	if sa.state == s {
		return
	}
	from := sa.state
	sa.e.halfOpenMoved(sa, s)
	sa.state = s
	sa.e.changed(sa) // changes.go
	lvl := slog.LevelInfo
	if s == ikeDead && !normalEnd(reason) {
		lvl = slog.LevelWarn
	}
	// The line's arguments only if it is written: boxing them is most of
	// what a state change allocates (a responder makes three a handshake).
	// The engine's handler answers for the SA's (saLog.Enabled), without
	// making an established SA a logger to ask.
	if sa.e.log.Enabled(sa.e.ctx, lvl) {
		args := []any{"state", s.String(), "local", sa.local, "remote", sa.remote}
		if reason != "" {
			args = append(args, "reason", reason)
		}
		sa.logStateChange(from, s, lvl, "IKE SA "+s.String(), args...)
	}
	sa.e.publish(Event{Kind: "ike", IKEID: sa.id, Name: sa.name(), State: s.String(), Reason: reason, SPIs: sa.eventSPIs()})
	sa.e.haIKE(sa) // hastate.go
}

// natAny reports whether ESP must be encapsulated in UDP.
func (sa *ikeSA) natAny() bool {
	return sa.natLocal || sa.natRemote || (sa.conn != nil && sa.conn.Encap)
}

// destroy removes the SA and its children's dataplane state without
// telling the peer.
func (sa *ikeSA) destroy(reason string) { sa.destroyErr(errors.New(reason)) }

// destroyErr is destroy with the error that ends the SA: a first child
// still negotiating fails with it.
func (sa *ikeSA) destroyErr(why error) {
	if sa.state == ikeDead {
		return
	}
	rec := sa.ended(why)
	orZero(sa.hs).credPSK.Zero()
	reason := why.Error()
	for _, ch := range sa.children {
		ch.remove(reason)
	}
	sa.e.childrenGone(sa) // changes.go
	sa.children = nil
	if sa.first != nil && sa.first.state != childInstalled {
		sa.first.fail(why)
	}
	sa.w.clear()
	sa.dropFragments()
	sa.dropFollowupIn("the IKE SA is gone")
	orZero(sa.hs).halfOpenTimer.Stop()
	sa.stopLiveness()
	sa.rekeyTimer.Stop()
	if rk := sa.rekeyIKEOut; rk != nil {
		sa.endIKERekey(rk, nil)
	}
	sa.e.removeSA(sa)
	sa.releaseVIPs()
	if sa.keys != nil {
		sa.keys.Zero()
	}
	sa.setState(ikeDead, reason)
	rec.run(sa.e)
}

// startDelete tells the peer the IKE SA goes (INFORMATIONAL Delete), and
// removes it when answered or when the peer gives no answer.
func (sa *ikeSA) startDelete(reason string) {
	switch sa.state {
	case ikeDead, ikeDeleting:
		return
	case ikeEstablished, ikeRekeyed, ikeRedundant:
		if sa.deferIKE(func(n *ikeSA) { n.startDelete(reason) }) {
			return
		}
		if sa.quiet() {
			// Never a delete into a dead link: the peer finds out by
			// its own liveness checks.
			sa.destroy(reason + "; the link is down, the peer was not told")
			return
		}
	default:
		// Not authenticated yet: nothing to tell.
		sa.destroy(reason)
		return
	}
	sa.setState(ikeDeleting, reason)
	// Queued requests are moot; the delete goes next (after the one in
	// flight: window of 1).
	sa.w.queue = nil
	sa.send(&request{exch: message.INFORMATIONAL, payloads: []message.Payload{&message.Delete{Protocol: message.ProtocolIKE}},
		onResponse: func(*message.Message) { sa.destroy(reason) },
		onTimeout:  func() { sa.destroy(reason + "; the peer did not answer our delete") }})
}

// normalEnd tells an orderly end of an IKE SA from a failure, for the log
// level.
func normalEnd(reason string) bool {
	for _, p := range []string{"deleted by peer", "terminated by command", "shutdown", "engine closed", "connection removed", "rekeyed", "redundant"} {
		if strings.HasPrefix(reason, p) {
			return true
		}
	}
	return false
}
