package ike

import (
	"errors"
	"fmt"
	"log/slog"
	"net/netip"

	"github.com/keyplane/keyplane/ike/config"
	"github.com/keyplane/keyplane/ike/ikecrypto"
	"github.com/keyplane/keyplane/kernelops"
)

type childState uint8

const (
	childNegotiating childState = iota + 1
	childInstalled
	childDeleting
	childDeleted
	childFailed
)

func (s childState) String() string {
	switch s {
	case childNegotiating:
		return "negotiating"
	case childInstalled:
		return "installed"
	case childDeleting:
		return "deleting"
	case childDeleted:
		return "deleted"
	case childFailed:
		return "failed"
	}
	return fmt.Sprintf("state(%d)", uint8(s))
}

// childSA is one CHILD_SA pair. Loop-owned.
type childSA struct {
	e     *Engine
	id    uint32 // unique within the engine's run (ids.go)
	cfg   *config.Child
	ike   *ikeSA
	state childState
	reqid uint32
	mode  kernelops.Mode
	// keepReqID: reqid is the one of the child this one replaces (a
	// rekey); reqidHeld: installed, the child counts as a user of reqid
	// (reqidindex.go).
	keepReqID, reqidHeld bool

	// initiator: we initiated the exchange that made the child (IKE_AUTH
	// or CREATE_CHILD_SA); it decides which KEYMAT keys go which way.
	initiator     bool
	inSPI, outSPI uint32
	// larval: inSPI came from AllocSPI and no SA fills it yet.
	larval bool
	suite  ikecrypto.ChildSuite
	keys   *ikecrypto.ChildKeys
	// addSecrets are the shared secrets of its additional key exchanges
	// (IKE_FOLLOWUP_KE), until its keys are derived: behind a pointer, as
	// few children have them (secrets, setSecrets).
	addSecrets *[][]byte

	localAddr, remoteAddr netip.Addr
	localTS, remoteTS     []tsRange
	encap                 *kernelops.Encap
	// offIn and offOut are the offload the dataplane installed the SAs
	// with (offload.go).
	offIn, offOut kernelops.OffloadMode

	// Idle-driven liveness (liveness.go): watched says the inbound SA is
	// watched; idleAt is when its last idle report came (zero: none since
	// the last check); watchAlt picks the threshold's variant.
	watched  bool
	watchAlt bool
	rekey    bool // a soft expire asked for a rekey
	listed   bool // in its IKE SA's children
	// hasIn and hasOut say which of its SAs the dataplane holds (install,
	// a takeover's batch): their IDs are inID and outID, never kept apart
	// (migrateChild moves the addresses they are made of).
	hasIn, hasOut bool
	// nextIn and nextOut link it in Engine.bySA (saindex.go).
	nextIn  *childByIn
	nextOut *childByOut
	idleAt  stamp

	// lifetime is the configured one with this child's random soft
	// limits (lifetime.go).
	lifetime kernelops.Lifetimes
	// polRefs are the engine's entries of the policies it counts: the
	// ID is kept once, in the entry (8 octets here instead of 88).
	polRefs []*polRefEntry
	xfrmi   string // the xfrm interface held (xfrmi.go)
	estAt   stamp
	// ours is our CREATE_CHILD_SA that replaces this child (in flight, or
	// answered); theirs is the peer's, answered. Both set: a collision
	// (RFC 7296 §2.8.1, collision.go).
	ours, theirs *childRekey
	// rec is what an initiated child carries until it is up or fails
	// (recovery.go); nil for the peer's children, which are most.
	rec *childRecovery
}

func (ch *childSA) inID() kernelops.SAID {
	return kernelops.SAID{Src: ch.remoteAddr, Dst: ch.localAddr, SPI: ch.inSPI, Proto: kernelops.ProtoESP, Mark: ch.cfg.MarkIn}
}

func (ch *childSA) outID() kernelops.SAID {
	return kernelops.SAID{Src: ch.localAddr, Dst: ch.remoteAddr, SPI: ch.outSPI, Proto: kernelops.ProtoESP, Mark: ch.cfg.MarkOut}
}

// installedSAs are the IDs of the SAs the dataplane holds for the child,
// inbound first: ids[:n].
func (ch *childSA) installedSAs() (ids [2]kernelops.SAID, n int) {
	if ch.hasIn {
		ids[n], n = ch.inID(), n+1
	}
	if ch.hasOut {
		ids[n], n = ch.outID(), n+1
	}
	return ids, n
}

// logger logs with the child's and its IKE SA's attributes as they are
// when each line is logged (salog.go).
func (ch *childSA) logger() *slog.Logger {
	return slog.New(&saLog{inner: ch.e.log.Handler(), sa: ch})
}

func (ch *childSA) setState(s childState, reason string) {
	if ch.state == s {
		return
	}
	from := ch.state
	ch.state = s
	ch.e.childChanged(ch) // changes.go
	defer ch.e.childHook(ch, from, s, reason)
	lvl := slog.LevelInfo
	switch {
	case s == childFailed:
		lvl = slog.LevelWarn
	case reason == reasonTakeover:
		lvl = slog.LevelDebug // a takeover logs a line per IKE SA (hastate.go)
	}
	if ch.e.log.Enabled(ch.e.ctx, lvl) { // the line's text and logger cost more than the change
		args := []any{"state", s.String()}
		if s == childInstalled {
			args = append(args, "mode", ch.mode.String(), "suite", childSuiteText(ch.suite),
				"local-ts", rangesString(ch.localTS), "remote-ts", rangesString(ch.remoteTS), "encap", ch.encap != nil)
		}
		if reason != "" {
			args = append(args, "reason", reason)
		}
		ch.logger().Log(ch.e.ctx, lvl, "CHILD SA "+s.String(), args...)
	}
	ch.e.publish(Event{Kind: "child", Name: ch.cfg.Name, State: s.String(), Reason: reason, SPIs: ch.eventSPIs(), ChildID: ch.id, IKEID: ch.ikeID()})
}

func childSuiteText(s ikecrypto.ChildSuite) string {
	t := fmt.Sprintf("%v/%d", s.Encr, s.EncrKeyBits)
	if s.Integ != 0 {
		t += "-" + s.Integ.String()
	}
	if s.DH != 0 {
		t += "-" + s.DH.String() // PFS
	}
	for i, g := range s.AddKE {
		if g != 0 {
			t += fmt.Sprintf("-ke%d_%v", i+1, g)
		}
	}
	if s.ESN {
		t += "-ESN"
	}
	return t
}

// acquired is the kernel's acquire that started the child (nil: none).
func (ch *childSA) acquired() *kernelops.AcquireEvent {
	if ch.rec == nil {
		return nil
	}
	return ch.rec.acquire
}

// notify wakes every Initiate waiting for this child, and runs what
// waits for its outcome; then rec goes (nothing reads it once the child
// is up or failed: an initiated child keeps no more than the peer's).
func (ch *childSA) notify(err error) {
	if r := ch.rec; r != nil {
		for _, w := range r.waiters {
			w <- err
		}
		r.waiters = nil
	}
	ch.childDone(err)
	ch.rec = nil
}

// fail ends a child that never got installed: the larval SPI goes back,
// and whoever waits for it gets why (a *NotifyError when a notify says).
func (ch *childSA) fail(why error) {
	if ch.state == childFailed || ch.state == childDeleted {
		return
	}
	ch.releaseSPI()
	ch.setState(childFailed, why.Error())
	ch.notify(fmt.Errorf("child %s: %w", ch.cfg.Name, why))
}

// failf is fail with a plain reason.
func (ch *childSA) failf(format string, args ...any) { ch.fail(fmt.Errorf(format, args...)) }

func (ch *childSA) releaseSPI() {
	if ch.larval && ch.inSPI != 0 {
		id := ch.inID()
		id.Mark = kernelops.Mark{} // AllocSPI's larval SA has no mark
		if err := ch.e.sad.DeleteSA(ch.e.ctx, id); err != nil {
			ch.logger().Debug("releasing the allocated SPI", "err", err)
		}
		ch.larval = false
	}
}

// remove takes the child's SAs and policies out of the dataplane.
func (ch *childSA) remove(reason string) {
	if ch.state == childDeleted || ch.state == childFailed {
		return
	}
	if ch.state != childInstalled && ch.state != childDeleting {
		ch.fail(errors.New(reason))
		return
	}
	ch.e.unwatchIdle(ch)
	ch.e.bySA.remove(ch)
	ch.e.uninstall(ch)
	ch.setState(childDeleted, reason)
	ch.e.haChildGone(ch) // hastate.go
	if ch.keys != nil {
		ch.keys.Zero()
	}
}

// childRekey is one CREATE_CHILD_SA that replaces a child: the new
// child and the exchange's nonces.
type childRekey struct {
	nc     *childSA
	ni, nr []byte
	done   bool // answered
}

// rekeying reports whether our rekey of the child is in flight.
func (ch *childSA) rekeying() bool { return ch.ours != nil && !ch.ours.done }

// addChild lists ch among the SA's children (once) and indexes it by the
// peer's SPI when it has one.
func (sa *ikeSA) addChild(ch *childSA) {
	ch.ike = sa
	if !ch.listed {
		ch.listed = true
		sa.children = append(sa.children, ch)
	}
	sa.e.changed(sa) // changes.go
	if ch.outSPI != 0 {
		sa.byOut.put(ch.outSPI, ch)
	}
}

func (sa *ikeSA) dropChild(ch *childSA) {
	if sa.byOut.get(ch.outSPI) == ch {
		sa.byOut.del(ch.outSPI)
	}
	if !ch.listed {
		return
	}
	for i, x := range sa.children {
		if x == ch {
			sa.e.childGone(sa, ch) // changes.go
			ch.listed = false
			sa.children = append(sa.children[:i], sa.children[i+1:]...)
			sa.armLiveness() // the last watched child gone: timed checks
			return
		}
	}
}

// childByOutSPI finds an installed (or deleting) child of sa by the
// peer's SPI, its outbound one.
func (sa *ikeSA) childByOutSPI(spi uint32) *childSA { return sa.byOut.get(spi) }

func spiHex(spi uint32) string { return fmt.Sprintf("%08x", spi) }
