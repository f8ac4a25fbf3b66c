package ike

import (
	"crypto/rand"
	"encoding/binary"
	"fmt"
	"log/slog"
	"net/netip"
	"strings"
	"time"

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
	}
	return fmt.Sprintf("state(%d)", uint8(s))
}

// ikeSA is one IKE SA, in either role. Loop-owned.
type ikeSA struct {
	e         *Engine
	conn      *config.Connection   // nil for a responder until IKE_AUTH picks one
	cands     []*config.Connection // responder: connections the addresses allow
	initiator bool
	spii      uint64
	spir      uint64
	state     ikeState
	created   time.Time
	estAt     time.Time
	log       *slog.Logger

	sock          *sock
	local, remote netip.AddrPort
	natLocal      bool // we are behind a NAT
	natRemote     bool // the peer is behind a NAT (or fakes it to force encapsulation)

	suite  ikecrypto.IKESuite
	keys   *ikecrypto.IKEKeys
	out    message.Cipher
	in     message.Cipher
	ni, nr []byte
	dh     *ikecrypto.DH
	cookie []byte
	// initReq and initResp are the IKE_SA_INIT messages as sent and
	// received (RealMessage1/2 of the AUTH computation).
	initReq, initResp []byte

	// Requests we send: one outstanding (window 1), the rest queued.
	nextMsgID uint32
	pending   *request
	queue     []*request
	// Requests we answer.
	peerMsgID  uint32 // the next request ID we expect
	lastResp   []byte // the answer to peerMsgID-1, for retransmits
	lastRespOK bool

	children []*childSA
	// first is the child negotiated in IKE_AUTH (initiator).
	first *childSA

	halfOpenTimer *timer
	dpdTimer      *timer
	// rekeyTimer: when to rekey the SA (rekey_ike.go), or, once rekeyed
	// by the peer, when to stop waiting for its delete.
	rekeyTimer  *timer
	rekeyIKEOut *ikeRekey // our IKE rekey in flight
	dpdKind     dpdKind
	// lastHeard is when an authenticated message last came from the peer.
	lastHeard time.Time
	// idleSeen: idle reports were acted on; once the peer has answered,
	// the children's watches are nudged for fresh ones (liveness.go).
	idleSeen bool
	// Link awareness (links.go): ifIndex is the interface its local
	// address was last seen on (0: none known).
	link         linkState
	ifIndex      int
	reviveQueued bool
	deleteReason string
	// startedAt is when our first IKE_SA_INIT went out (handshake timing).
	startedAt   time.Time
	initRetries int
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

func (sa *ikeSA) setLogger() {
	sa.log = sa.e.log.With("ike", sa.name(), "spis", sa.spis())
}

// setState logs the change (one line per change) and publishes it.
func (sa *ikeSA) setState(s ikeState, reason string) {
	if sa.state == s {
		return
	}
	sa.state = s
	sa.setLogger()
	args := []any{"state", s.String(), "local", sa.local, "remote", sa.remote}
	if reason != "" {
		args = append(args, "reason", reason)
	}
	lvl := slog.LevelInfo
	if s == ikeDead && !normalEnd(reason) {
		lvl = slog.LevelWarn
	}
	sa.log.Log(sa.e.ctx, lvl, "IKE SA "+s.String(), args...)
	sa.e.publish(Event{Kind: "ike", Name: sa.name(), State: s.String(), Reason: reason, SPIs: sa.spis()})
}

// natAny reports whether ESP must be encapsulated in UDP.
func (sa *ikeSA) natAny() bool {
	return sa.natLocal || sa.natRemote || (sa.conn != nil && sa.conn.Encap)
}

// destroy removes the SA and its children's dataplane state without
// telling the peer.
func (sa *ikeSA) destroy(reason string) {
	if sa.state == ikeDead {
		return
	}
	for _, ch := range sa.children {
		ch.remove(reason)
	}
	sa.children = nil
	if sa.first != nil && sa.first.state != childInstalled {
		sa.first.fail(reason)
	}
	if sa.pending != nil {
		sa.pending.stopTimer()
		sa.pending = nil
	}
	sa.queue = nil
	sa.halfOpenTimer.Stop()
	sa.stopLiveness()
	sa.rekeyTimer.Stop()
	if rk := sa.rekeyIKEOut; rk != nil {
		sa.endIKERekey(rk, nil)
	}
	delete(sa.e.sas, sa.localSPI())
	if !sa.initiator {
		k := initKey{sa.spii, sa.remote}
		if sa.e.initIndex[k] == sa {
			delete(sa.e.initIndex, k)
		}
	}
	if sa.keys != nil {
		sa.keys.Zero()
	}
	sa.setState(ikeDead, reason)
}

// startDelete tells the peer the IKE SA goes (INFORMATIONAL Delete), and
// removes it when answered or when the peer gives no answer.
func (sa *ikeSA) startDelete(reason string) {
	switch sa.state {
	case ikeDead, ikeDeleting:
		return
	case ikeEstablished, ikeRekeyed:
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
	sa.deleteReason = reason
	sa.setState(ikeDeleting, reason)
	// Pending requests are moot; the delete goes next.
	sa.queue = nil
	req := &request{exch: message.INFORMATIONAL, payloads: []message.Payload{&message.Delete{Protocol: message.ProtocolIKE}},
		onResponse: func(*message.Message) { sa.destroy(reason) },
		onTimeout:  func() { sa.destroy(reason + "; the peer did not answer our delete") }}
	if sa.pending != nil {
		// Window of 1: wait for the outstanding exchange, but not for long.
		sa.queue = append(sa.queue, req)
		return
	}
	sa.send(req)
}

// normalEnd tells an orderly end of an IKE SA from a failure, for the log
// level.
func normalEnd(reason string) bool {
	for _, p := range []string{"deleted by peer", "terminated by command", "shutdown", "engine closed", "connection removed", "rekeyed"} {
		if strings.HasPrefix(reason, p) {
			return true
		}
	}
	return false
}
