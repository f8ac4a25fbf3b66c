package ike

import (
	"fmt"
	"time"

	"github.com/keyplane/keyplane/ike/config"
)

// Reauthentication (swanctl's reauth_time) and the hard lifetime of an
// IKE SA (over_time).
//
// At reauth_time, less a random part of rand_time, keyplane replaces the
// IKE SA by a new one made from scratch — IKE_SA_INIT and IKE_AUTH, the
// peer authenticated afresh — make before break, as charon does with
// make_before_break = yes: the new IKE SA carries the first child in
// IKE_AUTH and creates the others with CREATE_CHILD_SA, and only when
// all are up (or refused) is the old IKE SA deleted, with its children.
// The new children share the old ones' reqids and policies, so traffic
// moves to each new outbound SA as it is installed. The deadline
// survives IKE rekeys (as in strongSwan). Either end may reauthenticate;
// a connection without remote_addrs cannot (keyplane does not know where
// to initiate to).
//
// over_time bounds an IKE SA whose rekey or reauthentication does not
// complete: it is deleted over_time after the first of them fell due,
// and its children's dpd_action applies. A reauthentication that fails
// is tried again after ikeRekeyRetry (plus up to as much at random)
// until then.

// ikeReauthIn is when an IKE SA of c is reauthenticated: reauth_time
// less a random part of rand_time (0: never).
func ikeReauthIn(c *config.Connection, rnd func(uint64) uint64) time.Duration {
	return time.Duration(jittered(uint64(c.ReauthTime), uint64(c.RandTime), rnd))
}

// hardEnd is when an IKE SA ends for good: over after the first of its
// rekey and reauthentication (0: not scheduled); 0 when neither is, or
// over is 0.
func hardEnd(rekeyIn, reauthIn, over time.Duration) time.Duration {
	first := rekeyIn
	if first <= 0 || (reauthIn > 0 && reauthIn < first) {
		first = reauthIn
	}
	if first <= 0 || over <= 0 {
		return 0
	}
	return first + over
}

// armRecovery schedules the SA's reauthentication, its hard end (rekeyIn
// is its rekey's delay as drawn, 0 none) and its keepalives. It runs
// wherever the rekey is scheduled.
func (sa *ikeSA) armRecovery(rekeyIn time.Duration) {
	r := &sa.rec
	r.reauthTimer.Stop()
	r.hardTimer.Stop()
	r.reauthTimer, r.hardTimer = nil, nil
	if sa.conn == nil {
		return
	}
	now := sa.e.clk.Now()
	var reauthIn time.Duration
	if sa.conn.ReauthTime > 0 {
		if r.reauthAt == 0 {
			r.reauthAt = sa.e.stampOf(now.Add(ikeReauthIn(sa.conn, randN)))
		}
		reauthIn = max(sa.e.timeOf(r.reauthAt).Sub(now), time.Millisecond)
		r.reauthTimer = sa.e.after(reauthIn, sa.reauthDue)
	} else {
		r.reauthAt = 0
	}
	if end := hardEnd(rekeyIn, reauthIn, sa.conn.OverTime); end > 0 {
		r.hardTimer = sa.e.after(end, sa.hardExpire)
	}
	sa.armKeepalive()
}

// hardExpire: over_time has passed since the SA should have been rekeyed
// or reauthenticated. An IKE rekey still in flight decides the SA's fate
// itself; otherwise the SA is deleted and its children's dpd_action
// applies (a reauthentication under way goes on without it).
func (sa *ikeSA) hardExpire() {
	sa.rec.hardTimer = nil
	if sa.state != ikeEstablished {
		return
	}
	if sa.rekeyIKEOut != nil {
		sa.logger().Info("hard lifetime (over_time) reached while our IKE SA rekey is out: its outcome decides")
		return
	}
	sa.logger().Warn("hard lifetime reached: not rekeyed or reauthenticated within over_time; deleting the IKE SA",
		"over_time", sa.conn.OverTime.String())
	sa.rec.ending = endDead
	sa.startDelete("hard lifetime reached (over_time)")
}

// reauthRun is one make-before-break reauthentication.
type reauthRun struct {
	old     *ikeSA
	nsa     *ikeSA // the new IKE SA, once up
	pending int    // children still to come up (or fail)
	started time.Time
	over    bool // finished or failed
}

// reauthDue is the reauthentication timer.
func (sa *ikeSA) reauthDue() {
	sa.rec.reauthTimer = nil
	sa.reauthenticate("reauth_time reached")
}

// reauthenticate starts a make-before-break reauthentication of sa; it
// reports whether it did.
func (sa *ikeSA) reauthenticate(why string) bool {
	e := sa.e
	switch {
	case sa.state != ikeEstablished || sa.pendingOf != nil || sa.rec.reauthing != nil:
		return false
	case sa.quiet() || sa.rekeyIKEOut != nil || sa.rekeyIKEIn != nil:
		// Not into a dead link, not across an IKE rekey: a moment later.
		sa.rec.reauthTimer.Stop()
		sa.rec.reauthTimer = e.after(time.Second+randUpTo(time.Second), sa.reauthDue)
		return false
	case !sa.conn.RemoteAddr.IsValid():
		sa.logger().Warn("cannot reauthenticate: the connection has no remote address; the IKE SA ends at its hard lifetime unless the peer reauthenticates it")
		return false
	}
	var cfgs []*config.Child
	seen := map[string]bool{}
	for _, ch := range sa.children {
		if ch.state != childInstalled || seen[ch.cfg.Name] {
			continue
		}
		seen[ch.cfg.Name] = true
		if c, cur := e.cfg.Child(ch.cfg.Name); cur != nil && c.Name == sa.conn.Name {
			cfgs = append(cfgs, cur)
		}
	}
	run := &reauthRun{old: sa, pending: len(cfgs), started: e.clk.Now()}
	sa.rec.reauthing = run
	sa.logger().Info("reauthenticating the IKE SA (make before break)", "reason", why, "children", len(cfgs))
	e.publish(Event{Kind: "ike", IKEID: sa.id, Name: sa.name(), State: "reauthenticating", SPIs: sa.eventSPIs(), Reason: why})
	if len(cfgs) == 0 {
		// Nothing flows through a childless IKE SA: the old one goes
		// first, the new one follows.
		sa.rec.reauthing = nil
		sa.startDelete("reauthenticated (no children)")
		e.startIKE(sa.conn, nil)
		return true
	}
	first := e.newChild(cfgs[0])
	fr := made(&first.rec)
	fr.newIKE = true
	fr.onDone = append(fr.onDone, func(first *childSA, err error) {
		nsa := first.ike
		if nsa == nil || nsa.state != ikeEstablished {
			run.failed(err)
			return
		}
		run.nsa = nsa
		for _, cfg := range cfgs[1:] {
			if run.current().state == ikeDead && e.childBusy(nsa.conn.Name, cfg.Name) {
				// The replaced SA ended meanwhile and its recovery
				// (dpd_action = restart) brings this child up elsewhere.
				run.childDone()
				continue
			}
			nc := e.newChild(cfg)
			nr := made(&nc.rec)
			nr.onDone = append(nr.onDone, func(*childSA, error) { run.childDone() })
			nsa.createChild(nc)
		}
		run.childDone()
	})
	e.initiateChild(sa.conn, first)
	return true
}

// current is the SA the run replaces now: the old one, or what IKE
// rekeys made of it.
func (run *reauthRun) current() *ikeSA {
	sa := run.old
	for sa.state == ikeRekeyed && sa.rec.replacedBy != nil {
		sa = sa.rec.replacedBy
	}
	return sa
}

// childDone counts a child of the new IKE SA as up or refused; after the
// last, the old IKE SA goes.
func (run *reauthRun) childDone() {
	run.pending--
	if run.pending > 0 || run.over {
		return
	}
	run.over = true
	old := run.current()
	if old.rec.reauthing == run {
		old.rec.reauthing = nil
	}
	if run.nsa == nil || run.nsa.state != ikeEstablished {
		run.failed(fmt.Errorf("the new IKE SA is %s", run.nsa.stateText()))
		return
	}
	took := old.e.clk.Now().Sub(run.started)
	old.logger().Info("reauthenticated: the new IKE SA and its children are up; deleting the old one", "new", run.nsa.spis(), "took", took.String())
	if old.state == ikeEstablished {
		old.startDelete(fmt.Sprintf("reauthenticated, replaced by %s", run.nsa.spis()))
	}
}

// failed: the new IKE SA did not come up; the old one stays and is
// reauthenticated again later (until over_time ends it).
func (run *reauthRun) failed(err error) {
	old := run.current()
	if old.rec.reauthing == run {
		old.rec.reauthing = nil
	}
	run.over = true
	if old.state != ikeEstablished {
		return // its recovery waits on this run's children (recovery.go's recoverIfFails)
	}
	retry := ikeRekeyRetry + randUpTo(ikeRekeyRetry)
	old.logger().Warn("reauthentication failed; the old IKE SA stays, trying again later", "err", err, "retry-in", retry.String())
	old.rec.reauthTimer.Stop()
	old.rec.reauthTimer = old.e.after(retry, old.reauthDue)
}

// lifetimesChanged reports whether a reload changed the settings that
// schedule an IKE SA's rekey, reauthentication and hard end; its timers
// are drawn afresh then.
func lifetimesChanged(old, nc *config.Connection) bool {
	return old.RekeyTime != nc.RekeyTime || old.ReauthTime != nc.ReauthTime || old.OverTime != nc.OverTime || old.RandTime != nc.RandTime
}
