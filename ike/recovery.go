package ike

import (
	"errors"
	"fmt"
	"time"

	"github.com/keyplane/keyplane/ike/config"
	"github.com/keyplane/keyplane/ike/message"
	"github.com/keyplane/keyplane/kernelops"
)

// Recovery (swanctl's keyingtries, dpd_action, close_action): what
// happens after an IKE SA or a child ends without being asked to.
//
//   - An IKE SA we initiate whose peer does not answer IKE_SA_INIT or
//     IKE_AUTH is tried again, keyingtries times in all (0: until it
//     succeeds or fails for good), after a backoff; the first child and
//     whoever waits for it move to the new attempt. An attempt that ended
//     because its link was down, never sending a packet, does not count.
//   - An established IKE SA that ends because the peer stopped answering
//     (liveness check, rekey, any request), because its link stayed down
//     past down_timeout, or because it outlived over_time, applies each
//     child's dpd_action: clear, trap (install trap policies) or restart
//     (initiate it again under a new IKE SA).
//   - A child the peer deletes, alone or with its IKE SA, applies its
//     close_action: none, trap or start — unless a child of the same name
//     is installed or under negotiation elsewhere: a rekey, a
//     reauthentication or a collision replaced it, nothing was lost.
//     (The same holds for dpd_action = restart. If that negotiation
//     then fails for good, the action applies after all.)
//   - What we end ourselves (terminate, reload, shutdown, INITIAL_CONTACT,
//     unique) recovers nothing. Authentication and proposal failures are
//     final: they would fail again.
//
// The decisions are pure functions (endOf, keyingRetry, keyingBackoff)
// with table tests; the engine applies them after the SA is gone.

// ErrLinkDown: an IKE SA ended because the link of its local address
// stayed down (or a request held for the link was dropped).
var ErrLinkDown = errors.New("link down")

// endKind says how an IKE SA ended, for recovery.
type endKind uint8

const (
	endQuiet   endKind = iota // asked for, or failed for good: nothing to recover
	endRetry                  // an initiation the peer did not answer: keyingtries
	endDead                   // the peer is gone (or unreachable): dpd_action
	endByPeer                 // the peer deleted it: close_action
	endLinkTry                // an initiation that waited for a dead link: tried again, not counted
)

func (k endKind) String() string {
	switch k {
	case endRetry:
		return "retry"
	case endDead:
		return "dead"
	case endByPeer:
		return "closed by peer"
	case endLinkTry:
		return "link retry"
	}
	return "quiet"
}

// endOf classifies an IKE SA's end: connecting says it was our
// initiation still under way (IKE_SA_INIT or IKE_AUTH out), established
// that it was up; marked is what the code that ended it on purpose set
// (endQuiet: nothing), why the error it ended with.
func endOf(connecting, established bool, marked endKind, why error) endKind {
	if marked != endQuiet {
		return marked
	}
	notAnswering := errors.Is(why, ErrPeerNotResponding)
	linkDown := errors.Is(why, ErrLinkDown)
	switch {
	case connecting && linkDown:
		return endLinkTry
	case connecting && notAnswering:
		return endRetry
	case established && (notAnswering || linkDown):
		return endDead
	}
	return endQuiet
}

// keyingRetry reports whether an initiation that made tries attempts so
// far (the failed one included) gets another under keyingtries (0:
// forever).
func keyingRetry(keyingtries, tries int) bool {
	return keyingtries == 0 || tries < keyingtries
}

// Backoff between keying tries: 1 s after the first failed attempt,
// doubling up to keyingBackoffMax, of which a random half is taken off
// so that many IKE SAs to one dead peer spread out. Each attempt is a
// whole retransmission sequence already, so this only keeps a peer that
// refuses quickly from being hammered. (Variables for tests.)
var (
	keyingBackoffBase = time.Second
	keyingBackoffMax  = 2 * time.Minute
)

// keyingBackoff is the wait before attempt tries+1, before the random
// part: keyingBackoffBase doubled per attempt, at most keyingBackoffMax.
func keyingBackoff(tries int) time.Duration {
	d := keyingBackoffBase
	for i := 1; i < tries && d < keyingBackoffMax; i++ {
		d *= 2
	}
	return min(d, keyingBackoffMax)
}

// linkRetryWait is the wait before an initiation that ended on a dead
// link is started again (it sent nothing; it will wait for the link).
var linkRetryWait = time.Second

// recoveryState is an IKE SA's part in recovery and the features around
// it (reauth.go, keepalive.go, unique.go, natmove.go).
type recoveryState struct {
	// ending is set by code that ends the SA on purpose, to say how.
	ending endKind
	// peerID is the peer's authenticated identity (unique.go).
	peerID *message.ID
	// reauthAt is when the SA is reauthenticated; it survives IKE
	// rekeys, as in strongSwan (reauth.go).
	reauthAt stamp
	// reauthing is our reauthentication of this SA under way.
	reauthing *reauthRun
	// replacedBy is the SA an IKE rekey moved the children to.
	replacedBy *ikeSA
	// lastSent is when we last sent the peer an IKE message
	// (keepalives are skipped when it is recent).
	lastSent stamp

	reauthTimer, hardTimer, keepaliveTimer, downTimer *timer
}

// inherited is what an IKE SA made by a rekey of this one takes over:
// the peer's identity, the reauthentication deadline and one under way.
func (r *recoveryState) inherited() recoveryState {
	return recoveryState{peerID: r.peerID, reauthAt: r.reauthAt, reauthing: r.reauthing, lastSent: r.lastSent}
}

// childRecovery is a child's part in recovery, and who waits for it: an
// initiated child's, made on first use (made(&ch.rec)).
type childRecovery struct {
	// acquire is the kernel's acquire that started the child, if one did.
	acquire *kernelops.AcquireEvent
	// waiters are the Initiate calls waiting for the child's outcome.
	waiters []chan error
	// onDone run when the child is installed (nil) or fails: the
	// reestablishment and reauthentication waiting for it. They get the
	// child that ended (a retried initiation carries them to a new one).
	onDone []func(*childSA, error)
	// keyingTries: IKE_SA_INIT/IKE_AUTH attempts made so far for the
	// IKE SA that carries this child first.
	keyingTries int
	// newIKE: the child must come up on a new IKE SA of its own (a
	// reauthentication), never on one that is established.
	newIKE bool
}

// ended is the IKE SA's end as recovery sees it, called as it ends with
// why: its timers stop, and what recovery follows is decided (run it
// once the SA is gone).
func (sa *ikeSA) ended(why error) *recovery {
	sa.stopRecoveryTimers()
	return sa.recoveryFor(why)
}

// stopRecoveryTimers stops the SA's timers of this file's family.
func (sa *ikeSA) stopRecoveryTimers() {
	r := &sa.rec
	for _, t := range []**timer{&r.reauthTimer, &r.hardTimer, &r.keepaliveTimer, &r.downTimer} {
		(*t).Stop()
		*t = nil
	}
}

// recovery is what to do once an IKE SA is gone.
type recovery struct {
	kind  endKind
	conn  *config.Connection
	first *childSA // the first child to carry into a new attempt (endRetry, endLinkTry)
	tries int      // attempts made, the failed one included
	// children whose action applies (endDead, endByPeer).
	children []*config.Child
}

// recoveryFor decides, as the SA ends with why and before its children
// go, what recovery follows; run applies it once the SA is gone. It takes
// the first child of a retried initiation (with its waiters) off the SA,
// so the SA's end does not fail them.
func (sa *ikeSA) recoveryFor(why error) *recovery {
	connecting := sa.initiator && (sa.state == ikeInitSent || sa.state == ikeAuthSent)
	kind := endOf(connecting, sa.state == ikeEstablished, sa.rec.ending, why)
	if kind == endQuiet || sa.conn == nil {
		return nil
	}
	r := &recovery{kind: kind, conn: sa.conn}
	switch kind {
	case endRetry, endLinkTry:
		f := sa.first
		if f == nil || f.state != childNegotiating {
			return nil
		}
		if f.rec != nil {
			r.tries = f.rec.keyingTries
		}
		if kind == endRetry {
			r.tries++
			if !keyingRetry(sa.conn.KeyingTries, r.tries) {
				sa.logger().Warn("giving up the initiation: the peer did not answer", "keyingtries", sa.conn.KeyingTries, "attempts", r.tries)
				return nil
			}
		}
		// A fresh child takes over the old one's rec whole (waiters,
		// acquire, what waits for it); the old one fails unheard with
		// the SA.
		rec := made(&f.rec)
		f.rec = nil
		rec.keyingTries = r.tries
		r.first = &childSA{e: sa.e, id: sa.e.newChildID(), cfg: f.cfg, state: childNegotiating, reqid: f.reqid, keepReqID: f.keepReqID, mode: f.mode, rec: rec}
	case endDead, endByPeer:
		seen := map[string]bool{}
		for _, ch := range sa.children {
			if ch.state != childInstalled && ch.state != childNegotiating || seen[ch.cfg.Name] {
				continue
			}
			seen[ch.cfg.Name] = true
			r.children = append(r.children, ch.cfg)
		}
		if len(r.children) == 0 {
			return nil
		}
	}
	return r
}

// run applies r; the SA it came from is gone.
func (r *recovery) run(e *Engine) {
	if r == nil || e.shuttingDown {
		if r != nil && r.first != nil {
			r.first.failf("engine shutting down")
		}
		return
	}
	switch r.kind {
	case endRetry, endLinkTry:
		e.retryInitiation(r)
	case endDead:
		var restart []*config.Child
		for _, ch := range r.children {
			switch ch.DPDAction {
			case config.DPDTrap:
				e.trapForRecovery(r.conn, ch, "dpd_action")
			case config.DPDRestart:
				restart = append(restart, ch)
			}
		}
		e.reestablish(r.conn.Name, restart, "dpd_action = restart")
	case endByPeer:
		var start []*config.Child
		for _, ch := range r.children {
			switch ch.CloseAction {
			case config.CloseTrap:
				e.trapForRecovery(r.conn, ch, "close_action")
			case config.CloseStart:
				start = append(start, ch)
			}
		}
		e.reestablish(r.conn.Name, start, "close_action = start")
	}
}

// retryInitiation starts the initiation of r again after its wait.
func (e *Engine) retryInitiation(r *recovery) {
	wait := linkRetryWait
	if r.kind == endRetry {
		d := keyingBackoff(r.tries)
		wait = d - randUpTo(d/2)
	}
	tries := "forever"
	if r.conn.KeyingTries > 0 {
		tries = fmt.Sprint(r.conn.KeyingTries)
	}
	e.log.Info("initiating again", "connection", r.conn.Name, "child", r.first.cfg.Name, "attempt", r.tries+1,
		"keyingtries", tries, "in", wait.String(), "reason", r.kind.String())
	e.after(wait, func() {
		c, ch := e.cfg.Child(r.first.cfg.Name)
		if ch == nil || c.Name != r.conn.Name {
			r.first.failf("connection %s or its child %s left the configuration", r.conn.Name, r.first.cfg.Name)
			return
		}
		r.first.cfg = ch
		e.initiateChild(c, r.first)
	})
}

// reestablish brings up children of connection conn afresh (dpd_action =
// restart, close_action = start): those not installed or under
// negotiation already, on an established IKE SA of the connection if
// there is one, else on a new one that carries the first in IKE_AUTH and
// creates the others once it is up.
func (e *Engine) reestablish(conn string, children []*config.Child, why string) {
	c := e.cfg.Connection(conn)
	if c == nil || len(children) == 0 {
		return
	}
	var todo []*config.Child
	for _, ch := range children {
		cc, cur := e.cfg.Child(ch.Name)
		if cur == nil || cc != c {
			continue
		}
		if x := e.childComing(conn, ch.Name); x != nil {
			e.recoverIfFails(x, conn, cur, why)
			continue
		}
		if !e.childBusy(conn, ch.Name) {
			todo = append(todo, cur)
		}
	}
	if len(todo) == 0 {
		return
	}
	e.log.Info("bringing children up again", "connection", conn, "children", len(todo), "reason", why)
	e.publish(Event{Kind: "ike", Name: conn, State: "recovering", Reason: why})
	first := e.newChild(todo[0])
	rest := todo[1:]
	fr := made(&first.rec)
	fr.onDone = append(fr.onDone, func(first *childSA, _ error) {
		// The rest go on the IKE SA that carried the first, if it is
		// up (the first child itself may have been refused).
		sa := first.ike
		for _, ch := range rest {
			if e.childBusy(conn, ch.Name) {
				continue
			}
			if sa != nil && sa.state == ikeEstablished {
				sa.createChild(e.newChild(ch))
			}
		}
	})
	e.initiateChild(c, first)
}

// recoverIfFails: recovery found child ch under negotiation elsewhere (a
// reauthentication's new IKE SA, a collision, an Initiate) and did not
// start it again; if that negotiation fails for good (a retried
// initiation carries this to its last attempt), the child is brought up
// then. Next turn: until the failed IKE SA is gone its child counts as
// under negotiation.
func (e *Engine) recoverIfFails(x *childSA, conn string, ch *config.Child, why string) {
	r := made(&x.rec)
	r.onDone = append(r.onDone, func(_ *childSA, err error) {
		if err == nil || e.shuttingDown {
			return
		}
		e.log.Info("the child's negotiation that recovery waited on failed: its recovery applies now", "connection", conn, "child", ch.Name, "err", err, "reason", why)
		e.post(func() { e.reestablish(conn, []*config.Child{ch}, why) })
	})
}

// newChild is a child of configuration ch about to be negotiated.
func (e *Engine) newChild(ch *config.Child) *childSA {
	return &childSA{e: e, id: e.newChildID(), cfg: ch, state: childNegotiating, reqid: ch.ReqID, mode: ch.Mode}
}

// trapForRecovery installs trap policies for ch (dpd_action or
// close_action = trap), unless it has them.
func (e *Engine) trapForRecovery(c *config.Connection, ch *config.Child, setting string) {
	if _, ok := e.traps[ch.Name]; ok {
		return
	}
	cur := e.cfg.Connection(c.Name)
	_, cch := e.cfg.Child(ch.Name)
	if cur == nil || cch == nil {
		return
	}
	if err := e.installTrap(cur, cch); err != nil {
		e.log.Error("cannot install trap policies", "child", ch.Name, "for", setting, "err", err)
		return
	}
	if e.recoveryTraps == nil {
		e.recoveryTraps = map[string]bool{}
	}
	e.recoveryTraps[ch.Name] = true
}

// childClosed: the peer deleted ch (its IKE SA stays). Its close_action
// applies unless a child of the same name is up or coming.
func (e *Engine) childClosed(ch *childSA) {
	if e.shuttingDown || ch.ike == nil || ch.ike.conn == nil || ch.cfg.CloseAction == config.CloseNone {
		return
	}
	c := ch.ike.conn
	if e.childBusy(c.Name, ch.cfg.Name) {
		return
	}
	r := &recovery{kind: endByPeer, conn: c, children: []*config.Child{ch.cfg}}
	r.run(e)
}

// childDone runs the functions waiting for ch's outcome.
func (ch *childSA) childDone(err error) {
	if ch.rec == nil {
		return
	}
	fs := ch.rec.onDone
	ch.rec.onDone = nil
	for _, f := range fs {
		f(ch, err)
	}
}

// armDownTimeout bounds the SA's suspension (down_timeout): if its link
// is still down then, it ends as if the peer had stopped answering.
func (sa *ikeSA) armDownTimeout() {
	d := sa.e.cfg.Daemon.DownTimeout
	sa.rec.downTimer.Stop()
	sa.rec.downTimer = nil
	if d <= 0 {
		return
	}
	sa.rec.downTimer = sa.e.after(d, func() {
		sa.rec.downTimer = nil
		if sa.state == ikeDead || sa.link != linkDown {
			return
		}
		sa.logger().Warn("link down for longer than down_timeout: ending the IKE SA", "down_timeout", d.String())
		sa.destroyErr(fmt.Errorf("%w for %s (down_timeout)", ErrLinkDown, d))
	})
}

// peerMayHaveRestarted: the peer answered INVALID_IKE_SPI (unprotected:
// perhaps forged) to our request on sa. If a child of sa is to be
// restarted when the peer is gone (dpd_action = restart), a new IKE SA
// is made alongside at once — a make-before-break reauthentication —
// rather than after the retransmissions give up: a peer that restarted
// is back in one round trip. sa itself is left as it is until the new
// one is up; a forged notify costs one reauthentication, once per SA.
func (sa *ikeSA) peerMayHaveRestarted() {
	if sa.state != ikeEstablished {
		return
	}
	for _, ch := range sa.children {
		if ch.state == childInstalled && ch.cfg.DPDAction == config.DPDRestart {
			sa.reauthenticate("the peer answered INVALID_IKE_SPI: it may have lost the IKE SA")
			return
		}
	}
}
