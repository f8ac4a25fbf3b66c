package ike

import (
	"errors"
	"fmt"
	"net/netip"
	"slices"

	"github.com/keyplane/keyplane/ike/config"
	"github.com/keyplane/keyplane/ike/ikecrypto"
	"github.com/keyplane/keyplane/kernelops"
)

// polRef counts the children using one policy (two children with the
// same selectors, e.g. after both ends initiated at once, share it) and
// remembers the trap policy to put back when the last one goes.
type polRef struct {
	n    int
	trap *kernelops.Policy
	// tmpl is the installed policy's templates: a child that takes the
	// policy over with other tunnel endpoints (a rekey after a MOBIKE
	// move without Migrate) replaces it. Never changed in place
	// (movedTemplates copies), so the slice childPolicies made is kept,
	// not a copy: one child's in and fwd policies share theirs.
	tmpl []kernelops.Template
}

// allocSPI reserves the child's inbound SPI in the dataplane.
func (e *Engine) allocSPI(ch *childSA) error {
	if ch.reqid == 0 {
		ch.reqid = e.reqids.provisional()
	}
	spi, err := e.sad.AllocSPI(e.ctx, kernelops.SPIRequest{Src: ch.remoteAddr, Dst: ch.localAddr,
		Proto: kernelops.ProtoESP, ReqID: ch.reqid})
	if err != nil {
		return fmt.Errorf("allocate inbound SPI: %w", err)
	}
	ch.inSPI, ch.larval = spi, true
	return nil
}

// install adds the child's inbound and outbound SAs and its out/in/fwd
// policies. If any step fails, everything this child added is removed
// again (and the allocated SPI released) before the error is returned.
func (e *Engine) install(ch *childSA) (err error) {
	// What was added is what ch.hasIn, ch.hasOut and ch.polRefs say (each set
	// just after its step succeeds) and the interface if held: undone
	// last first, without a closure per step. A child is installed once
	// (finishChild), so both lists start empty.
	held := false
	defer func() {
		if err != nil {
			for i := len(ch.polRefs) - 1; i >= 0; i-- {
				e.dropPolicyRef(ch.polRefs[i].id())
			}
			if ch.hasOut {
				e.deleteSA(ch, ch.outID())
			}
			if ch.hasIn {
				e.deleteSA(ch, ch.inID())
			}
			if held {
				e.releaseXfrmi(ch.xfrmi)
				ch.xfrmi = ""
			}
			ch.releaseSPI()
			ch.hasIn, ch.hasOut, ch.polRefs = false, false, nil
			e.releaseChildReqID(ch)
		}
	}()
	// Selectors are settled now: the reqid is this child's (reqidindex.go).
	e.takeChildReqID(ch)
	// The interface exists before the first SA that routes through it.
	x, err := e.holdXfrmi(ch.cfg)
	if err != nil {
		return err
	}
	ch.xfrmi, held = x, true
	plan, err := e.planOffload(e.ctx, ch)
	if err != nil {
		return err
	}
	in, out := e.childKernelSAs(ch)
	in.Offload, in.IfID, in.Mark = plan.off, ch.cfg.IfIDIn, in.ID.Mark
	if err := e.sad.AddSA(e.ctx, in); err != nil {
		return fmt.Errorf("add inbound SA %s: %w", in.ID, err)
	}
	ch.larval = false
	ch.hasIn = true
	out.Offload, out.IfID, out.Mark = plan.off, ch.cfg.IfIDOut, out.ID.Mark
	if err := e.sad.AddSA(e.ctx, out); err != nil {
		return fmt.Errorf("add outbound SA %s: %w", out.ID, err)
	}
	ch.hasOut = true
	ch.offloadDone(plan, in.Offload.Active, out.Offload.Active)

	sels := selectors(ch.localTS, ch.remoteTS)
	if len(sels) == 0 {
		return fmt.Errorf("no traffic selector pair the dataplane can express (%s <-> %s)", rangesString(ch.localTS), rangesString(ch.remoteTS))
	}
	ps := childPolicies(ch.cfg, ch.mode, ch.reqid, ch.localAddr, ch.remoteAddr, sels)
	ch.polRefs = make([]*polRefEntry, 0, len(ps)) // kept while the child lives: no spare capacity
	for _, p := range ps {
		x, err := e.addPolicyRef(p)
		if err != nil {
			return fmt.Errorf("add policy %s: %w", p.ID(), err)
		}
		ch.polRefs = append(ch.polRefs, x)
	}
	return nil
}

// childKernelSAs are the child's inbound and outbound SAs as the
// dataplane gets them (install; a takeover's batches).
func (e *Engine) childKernelSAs(ch *childSA) (in, out *kernelops.SA) {
	// KEYMAT's first keys protect the traffic from the initiator of the
	// exchange that made the child (RFC 7296 §2.17) — not necessarily the
	// IKE SA's initiator: either end may create or rekey a child.
	k := ch.keys
	inEncr, inInteg, outEncr, outInteg := k.EncrI, k.IntegI, k.EncrR, k.IntegR
	if ch.initiator {
		inEncr, inInteg, outEncr, outInteg = k.EncrR, k.IntegR, k.EncrI, k.IntegI
	}
	mk := func(id kernelops.SAID, encr, integ ikecrypto.Key, dir kernelops.Direction, encap *kernelops.Encap) *kernelops.SA {
		sa := &kernelops.SA{ID: id, Mode: ch.mode, ReqID: ch.reqid,
			Encryption: kernelops.Encryption{ID: ch.suite.Encr, KeyBits: ch.suite.EncrKeyBits,
				Key: append(kernelops.Key(nil), encr...)},
			Integrity:    kernelops.Integrity{ID: ch.suite.Integ, Key: append(kernelops.Key(nil), integ...)},
			ReplayWindow: ch.cfg.ReplayWindow, ESN: ch.suite.ESN, Encap: encap, Lifetime: ch.lifetime}
		if ch.suite.Encr.AEAD() {
			sa.Integrity = kernelops.Integrity{}
		}
		if ch.suite.EncrKeyBits == 0 {
			sa.Encryption.KeyBits = 0
		}
		if dir == kernelops.DirOut {
			sa.ReplayWindow = 0
		}
		if e.caps.Has(kernelops.CapSADir) {
			sa.Dir = dir
		}
		if sa.ESN && sa.ReplayWindow == 0 && dir == kernelops.DirIn {
			sa.ReplayWindow = 32
		}
		return sa
	}
	var inEncap, outEncap *kernelops.Encap
	if ch.encap != nil {
		outEncap = &kernelops.Encap{SrcPort: ch.encap.SrcPort, DstPort: ch.encap.DstPort}
		inEncap = &kernelops.Encap{SrcPort: ch.encap.DstPort, DstPort: ch.encap.SrcPort}
	}
	return mk(ch.inID(), inEncr, inInteg, kernelops.DirIn, inEncap), mk(ch.outID(), outEncr, outInteg, kernelops.DirOut, outEncap)
}

// childPolicies are the out, in and (tunnel mode) fwd policies.
func childPolicies(cfg *config.Child, mode kernelops.Mode, reqid uint32, local, remote netip.Addr, sels []kernelops.Selector) []*kernelops.Policy {
	tmpl := func(src, dst netip.Addr) []kernelops.Template {
		t := kernelops.Template{Proto: kernelops.ProtoESP, Mode: mode, ReqID: reqid}
		if mode == kernelops.ModeTunnel {
			t.Src, t.Dst = src, dst
		}
		return []kernelops.Template{t}
	}
	outT, inT := tmpl(local, remote), tmpl(remote, local) // shared: read only (polRef.tmpl)
	out := make([]*kernelops.Policy, 0, 3*len(sels))
	for _, s := range sels {
		rev := kernelops.Selector{Src: s.Dst, Dst: s.Src, Proto: s.Proto, SrcPort: s.DstPort, DstPort: s.SrcPort}
		out = append(out,
			&kernelops.Policy{Selector: s, Dir: kernelops.DirOut, Action: kernelops.ActionIPsec, Templates: outT, IfID: cfg.IfIDOut, Mark: cfg.MarkOut},
			&kernelops.Policy{Selector: rev, Dir: kernelops.DirIn, Action: kernelops.ActionIPsec, Templates: inT, IfID: cfg.IfIDIn, Mark: cfg.MarkIn})
		if mode == kernelops.ModeTunnel {
			out = append(out, &kernelops.Policy{Selector: rev, Dir: kernelops.DirFwd, Action: kernelops.ActionIPsec, Templates: inT, IfID: cfg.IfIDIn, Mark: cfg.MarkIn})
		}
	}
	return out
}

func (e *Engine) deleteSA(ch *childSA, id kernelops.SAID) {
	if err := e.sad.DeleteSA(e.ctx, id); err != nil && !errors.Is(err, kernelops.ErrNotFound) {
		ch.logger().Warn("delete SA failed", "sa", id.String(), "err", err)
	}
}

// uninstall removes what install added: policies first, then SAs (as
// install's rollback does, and strongSwan). The other order leaves an
// instant in which an out policy of ours has no SA: a packet then makes
// an XFRM kernel create an acquire state (spi 0) for the old child that
// stays for its 30 s expiry.
func (e *Engine) uninstall(ch *childSA) {
	for _, x := range ch.polRefs {
		e.dropPolicyRef(x.id())
	}
	ids, n := ch.installedSAs()
	for _, id := range ids[:n] {
		e.deleteSA(ch, id)
	}
	e.releaseXfrmi(ch.xfrmi)
	e.releaseChildReqID(ch)
	ch.hasIn, ch.hasOut, ch.polRefs, ch.xfrmi = false, false, nil, ""
}

func (e *Engine) addPolicyRef(p *kernelops.Policy) (*polRefEntry, error) {
	id := p.ID()
	x := e.policies.entry(id)
	if x != nil && x.n > 0 {
		if !slices.Equal(x.tmpl, p.Templates) {
			if err := e.spd.ReplacePolicy(e.ctx, p); err != nil {
				return nil, err
			}
			x.tmpl = p.Templates
		}
		x.n++
		return x, nil
	}
	var err error
	if x != nil && x.trap != nil {
		err = e.spd.ReplacePolicy(e.ctx, p)
	} else {
		err = e.spd.AddPolicy(e.ctx, p)
	}
	if err != nil {
		return nil, err
	}
	if x == nil {
		x = e.policies.add(id)
	}
	x.n, x.tmpl = 1, p.Templates
	return x, nil
}

func (e *Engine) dropPolicyRef(id kernelops.PolicyID) {
	r := e.policies.get(id)
	if r == nil || r.n == 0 {
		return
	}
	r.n--
	if r.n > 0 {
		return
	}
	if r.trap != nil {
		if err := e.spd.ReplacePolicy(e.ctx, r.trap); err != nil {
			e.log.Warn("restoring trap policy failed", "policy", id.String(), "err", err)
		}
		return
	}
	e.policies.del(id)
	if err := e.spd.DeletePolicy(e.ctx, id); err != nil && !errors.Is(err, kernelops.ErrNotFound) {
		e.log.Warn("delete policy failed", "policy", id.String(), "err", err)
	}
}

// configRanges resolves a child's configured selectors.
func configRanges(ts []config.TS, addr netip.Addr) []tsRange {
	out := make([]tsRange, 0, len(ts))
	for _, t := range ts {
		if t.Dynamic && !addr.IsValid() {
			continue
		}
		out = append(out, fromConfigTS(t, addr))
	}
	return out
}

// installTrap installs the out policies of a start_action = trap child
// with action trap: traffic matching them raises an acquire.
func (e *Engine) installTrap(c *config.Connection, ch *config.Child) error {
	if err := e.caps.Require(e.b.Name(), "install trap", kernelops.CapTrap); err != nil {
		return err
	}
	sels := selectors(configRanges(ch.LocalTS, c.LocalAddr), configRanges(ch.RemoteTS, c.RemoteAddr))
	// Traffic routed into the interface raises the acquire: it must exist.
	x, err := e.holdXfrmi(ch)
	if err != nil {
		return err
	}
	reqid := e.takeTrapReqID(ch, sels)
	var ids []kernelops.PolicyID
	for _, p := range childPolicies(ch, ch.Mode, reqid, c.LocalAddr, c.RemoteAddr, sels) {
		if p.Dir != kernelops.DirOut {
			continue
		}
		p.Action = kernelops.ActionTrap
		id := p.ID()
		r := e.policies.get(id)
		if r == nil || r.n == 0 {
			if err := e.spd.AddPolicy(e.ctx, p); err != nil && !errors.Is(err, kernelops.ErrExists) {
				for _, done := range ids {
					e.policies.get(done).trap = nil
					e.dropTrapOnly(done)
				}
				e.releaseXfrmi(x)
				e.releaseTrapReqID(ch.Name)
				return fmt.Errorf("add trap policy %s: %w", id, err)
			}
		}
		if r == nil {
			r = &e.policies.add(id).polRef
		}
		r.trap = p
		ids = append(ids, id)
	}
	e.traps[ch.Name] = ids
	if x != "" {
		e.trapXfrmis[ch.Name] = x
	}
	e.log.Info("trap policies installed", "child", ch.Name, "reqid", fmt.Sprintf("%#x", reqid), "policies", len(ids))
	return nil
}

func (e *Engine) dropTrapOnly(id kernelops.PolicyID) {
	r := e.policies.get(id)
	if r != nil && r.n == 0 {
		e.policies.del(id)
		if err := e.spd.DeletePolicy(e.ctx, id); err != nil && !errors.Is(err, kernelops.ErrNotFound) {
			e.log.Warn("delete trap policy failed", "policy", id.String(), "err", err)
		}
	}
}

// removeTrap takes a child's trap policies away (installed children keep
// their ipsec policies).
func (e *Engine) removeTrap(name string) {
	ids, ok := e.traps[name]
	if !ok {
		return
	}
	delete(e.traps, name)
	for _, id := range ids {
		if r := e.policies.get(id); r != nil {
			r.trap = nil
			e.dropTrapOnly(id)
		}
	}
	e.releaseXfrmi(e.trapXfrmis[name])
	delete(e.trapXfrmis, name)
	e.releaseTrapReqID(name)
	e.log.Info("trap policies removed", "child", name)
}
