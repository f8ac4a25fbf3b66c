package ike

import (
	"errors"
	"fmt"
	"net/netip"
	"slices"

	"github.com/keyplane/keyplane/kernelops"
)

// Following the peer (RFC 7296 §2.23): a NAT may drop a mapping and make
// a new one (a reboot, an idle timeout, conntrack flushed), so that the
// peer behind it shows up from another port, or address. The end that
// is not behind a NAT follows: when an authenticated new request, or an
// authenticated ESP packet (the dataplane's MappingEvent: XFRM_MSG_MAPPING
// on Linux), comes from a new address or port, the IKE SA sends there
// from then on, and its children's SAs move too — the UDP encapsulation
// ports (and addresses) of their inbound and outbound SAs. The end
// behind a NAT does not follow (a single forged-looking packet must not
// redirect it; §2.23 SHOULD NOT): it keeps sending where it did, and its
// keepalives keep its own mapping.
//
// A child moves, in order of preference: a port change by re-writing
// its SAs with UpdateSA (their keys read back, CapKeysReadable); an
// address change, or a dataplane that cannot, by Migrate (CapMigrate);
// failing both, by a rekey, whose new SAs take the IKE SA's endpoints.

// followsPeer reports whether an IKE SA follows its peer to a new
// endpoint: while half-open (the initiator's float to the NAT-T port is
// how it arrives), or when we are not behind a NAT.
func followsPeer(halfOpen, natLocal bool) bool { return halfOpen || !natLocal }

// peerSeenAt: an authenticated new request of the peer came from remote
// to our local on s.
func (sa *ikeSA) peerSeenAt(s *sock, local, remote netip.AddrPort) {
	if s == sa.sock && local == sa.local && remote == sa.remote {
		return
	}
	halfOpen := sa.state == ikeHalfOpen
	if !followsPeer(halfOpen, sa.natLocal) {
		sa.logger().Info("peer's request came from a new endpoint; we are behind a NAT: not following it", "ours", sa.remote, "seen", remote)
		return
	}
	if !halfOpen {
		sa.logger().Info("peer endpoint changed", "from", sa.remote, "to", remote)
	}
	sa.moveTo(s, local, remote)
}

// moveTo makes the SA use s, local and remote from now on, and moves its
// installed children there.
func (sa *ikeSA) moveTo(s *sock, local, remote netip.AddrPort) {
	old := sa.remote
	movedLocal := local.Addr() != sa.local.Addr()
	sa.sock, sa.local, sa.remote = s, local, remote
	sa.e.changed(sa) // changes.go
	if movedLocal {
		sa.e.placeSA(sa)
	}
	if sa.state != ikeEstablished {
		return
	}
	n := 0
	for _, ch := range append([]*childSA(nil), sa.children...) {
		if ch.state == childInstalled && sa.e.moveChild(ch, local, remote) {
			n++
		}
	}
	if old != remote {
		sa.e.publish(Event{Kind: "ike", IKEID: sa.id, Name: sa.name(), State: "moved", SPIs: sa.eventSPIs(),
			Detail: fmt.Sprintf("peer %s -> %s, %d children moved", old, remote, n)})
	}
}

// mappingEvent: ESP of a child arrived from a new outer address or port.
func (e *Engine) mappingEvent(x *kernelops.MappingEvent) {
	ch := e.findChild(x.SA)
	if ch == nil || ch.ike == nil || ch.state != childInstalled {
		e.log.Debug("NAT mapping change for an SA we do not know", "sa", x.SA.String(), "new", x.New)
		return
	}
	sa := ch.ike
	if sa.state != ikeEstablished || !x.New.IsValid() || x.New == sa.remote {
		return
	}
	if !followsPeer(false, sa.natLocal) {
		sa.logger().Info("ESP came from a new endpoint; we are behind a NAT: not following it", "ours", sa.remote, "seen", x.New)
		return
	}
	sa.logger().Info("peer's NAT mapping changed (ESP from a new endpoint): moving the IKE SA and its children", "from", sa.remote, "to", x.New, "child", ch.cfg.Name)
	sa.moveTo(sa.sock, sa.local, x.New)
}

// encapFor is the UDP encapsulation of a child between local and remote
// (outbound orientation), if the child has any.
func encapFor(ch *childSA, local, remote netip.AddrPort) *kernelops.Encap {
	if ch.encap == nil {
		return nil
	}
	return &kernelops.Encap{SrcPort: local.Port(), DstPort: remote.Port()}
}

func sameEncap(a, b *kernelops.Encap) bool {
	if a == nil || b == nil {
		return a == b
	}
	return *a == *b
}

// moveChild moves ch's SAs to local and remote; it reports whether it
// moved (or started a rekey that will).
func (e *Engine) moveChild(ch *childSA, local, remote netip.AddrPort) bool {
	enc := encapFor(ch, local, remote)
	l, r := local.Addr(), remote.Addr()
	if l == ch.localAddr && r == ch.remoteAddr && sameEncap(enc, ch.encap) {
		return false
	}
	log := ch.logger()
	var errs []error
	if l == ch.localAddr && r == ch.remoteAddr {
		err := e.reencap(ch, enc)
		if err == nil {
			log.Info("child moved: new UDP encapsulation ports", "local-port", local.Port(), "remote-port", remote.Port())
			ch.encap = enc
			e.childChanged(ch) // changes.go
			return true
		}
		errs = append(errs, fmt.Errorf("update SAs: %w", err))
	}
	if err := e.migrateChild(ch, l, r, enc); err == nil {
		log.Info("child moved (migrated)", "local", local, "remote", remote)
		return true
	} else {
		errs = append(errs, fmt.Errorf("migrate: %w", err))
	}
	log.Warn("cannot move the child's SAs; rekeying it so that new SAs take the new endpoint", "err", errors.Join(errs...))
	if ch.ours == nil && ch.theirs == nil {
		ch.ike.rekeyChild(ch)
	}
	return true
}

// reencap rewrites ch's SAs with UDP encapsulation enc (outbound
// orientation; the inbound SA's ports are the other way round), keys
// read back from the dataplane.
func (e *Engine) reencap(ch *childSA, enc *kernelops.Encap) error {
	if enc == nil {
		return errors.New("no encapsulation to change")
	}
	if err := e.caps.Require(e.b.Name(), "re-encapsulate SA", kernelops.CapKeysReadable); err != nil {
		return err
	}
	ids, n := ch.installedSAs()
	for _, id := range ids[:n] {
		cur, err := e.sad.GetSA(e.ctx, id)
		if err != nil {
			return err
		}
		sa := cur.SA.Clone()
		x := *enc
		if id == ch.inID() {
			x.SrcPort, x.DstPort = x.DstPort, x.SrcPort
		}
		sa.Encap = &x
		if err := e.sad.UpdateSA(e.ctx, sa); err != nil {
			return err
		}
	}
	return nil
}

// migrateChild moves ch's SAs and its policies' templates to l and r
// with encapsulation enc (Migrate), and follows the new SA ids.
func (e *Engine) migrateChild(ch *childSA, l, r netip.Addr, enc *kernelops.Encap) error {
	mig, err := kernelops.As[kernelops.Migrator](e.b)
	if err != nil {
		return err
	}
	m := kernelops.Migration{ReqID: ch.reqid,
		Old: kernelops.Endpoints{Local: ch.localAddr, Remote: ch.remoteAddr},
		New: kernelops.Endpoints{Local: l, Remote: r}, Encap: enc,
		Policies: ch.policyIDs()}
	ids, n := ch.installedSAs()
	m.SAs = append([]kernelops.SAID(nil), ids[:n]...)
	if err := mig.Migrate(e.ctx, m); err != nil {
		return err
	}
	e.bySA.remove(ch) // its keys are made from the addresses (saindex.go)
	// Migrate moved the policies' templates too.
	for _, x := range ch.polRefs {
		x.tmpl = movedTemplates(x.tmpl, ch.localAddr, ch.remoteAddr, l, r)
	}
	watched := ch.watched
	if watched {
		delete(e.byIn, idleKey(ch.inID()))
	}
	ch.localAddr, ch.remoteAddr, ch.encap = l, r, enc
	e.bySA.add(ch)
	e.childChanged(ch) // changes.go
	if watched {
		e.byIn[idleKey(ch.inID())] = ch
	}
	return nil
}

// movedTemplates is ts with the tunnel endpoints oldL and oldR replaced
// by l and r.
func movedTemplates(ts []kernelops.Template, oldL, oldR, l, r netip.Addr) []kernelops.Template {
	out := slices.Clone(ts)
	swap := func(a netip.Addr) netip.Addr {
		switch a {
		case oldL:
			return l
		case oldR:
			return r
		}
		return a
	}
	for i := range out {
		if out[i].Src.IsValid() {
			out[i].Src, out[i].Dst = swap(out[i].Src), swap(out[i].Dst)
		}
	}
	return out
}
