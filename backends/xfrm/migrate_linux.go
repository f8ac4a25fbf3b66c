package xfrm

import (
	"context"
	"errors"
	"fmt"
	"net/netip"

	"github.com/keyplane/keyplane/kernelops"
	"github.com/vishvananda/netlink/nl"
	"golang.org/x/sys/unix"
)

// MOBIKE moves a child to new outer addresses. With the kernel's
// XFRM_MSG_MIGRATE one request per policy moves the policy's templates and
// the SAs behind them (same keys, counters and replay state). SAs that no
// given policy covers, and kernels without CONFIG_XFRM_MIGRATE, get a
// software move: the SA is re-installed at the new addresses with its
// keys, replay state and lifetime counters read back from the kernel,
// and the old one deleted.

// appendMigrate builds XFRM_MSG_MIGRATE for policy id.
func appendMigrate(mb *msgBuilder, seq uint32, id kernelops.PolicyID, entries []migrateEntry, encap *kernelops.Encap) {
	mb.begin(nl.XFRM_MSG_MIGRATE, reqFlags, seq)
	fam := uint16(unix.AF_INET)
	if len(entries) > 0 {
		fam = famOf(entries[0].OldDst)
	}
	b := mb.grow(sizePolicyID)
	putSelector(b[0:], id.Selector, policyIDFamily(id, fam))
	b[60] = dirToKernel(id.Dir)
	a := mb.attr(nl.XFRMA_MIGRATE, sizeUserMigrate*len(entries))
	for i, e := range entries {
		putMigrate(a[i*sizeUserMigrate:], e)
	}
	if encap != nil {
		putEncap(mb, encap)
	}
	if id.IfID != 0 {
		mb.attrU32(nl.XFRMA_IF_ID, id.IfID)
	}
	mb.end()
}

// outer returns the old and new (src, dst) of traffic in dir.
func outer(m kernelops.Migration, dir kernelops.Direction) (oldSrc, oldDst, newSrc, newDst netip.Addr) {
	if dir == kernelops.DirOut {
		return m.Old.Local, m.Old.Remote, m.New.Local, m.New.Remote
	}
	return m.Old.Remote, m.Old.Local, m.New.Remote, m.New.Local
}

// Migrate implements kernelops.Migrator.
func (b *driver) Migrate(ctx context.Context, m kernelops.Migration) error {
	obj := kernelops.MigrationObject(m)
	if err := b.requireProto(func() string { return obj }, kernelops.ProtoESP); err != nil {
		return err
	}
	for _, pid := range m.Policies {
		if err := b.migratePolicy(ctx, m, pid); err != nil {
			return err
		}
	}
	// SAs the policies did not carry along.
	for _, id := range m.SAs {
		// The kernel finds an SA by destination, SPI and protocol: an
		// inbound SA MIGRATE moved to another source answers for the old
		// id too.
		if e, err := b.GetSA(ctx, id); errors.Is(err, kernelops.ErrNotFound) || (err == nil && e.ID.Src != id.Src) {
			continue // moved by MIGRATE
		} else if err != nil {
			return err
		}
		if err := b.moveSA(ctx, m, id); err != nil {
			return err
		}
	}
	return nil
}

// migratePolicy moves the templates of one policy that carry m.ReqID and
// the old addresses, and, through the kernel, their SAs.
func (b *driver) migratePolicy(ctx context.Context, m kernelops.Migration, pid kernelops.PolicyID) error {
	pe, err := b.GetPolicy(ctx, pid)
	if err != nil {
		return err
	}
	oldSrc, oldDst, newSrc, newDst := outer(m, pid.Dir)
	var entries []migrateEntry
	for _, t := range pe.Templates {
		if t.ReqID != m.ReqID || (t.Mode == kernelops.ModeTunnel && (t.Src != oldSrc || t.Dst != oldDst)) {
			continue
		}
		entries = append(entries, migrateEntry{OldSrc: oldSrc, OldDst: oldDst, NewSrc: newSrc, NewDst: newDst,
			Proto: uint8(t.Proto), Mode: modeToKernel(t.Mode), ReqID: t.ReqID})
	}
	if len(entries) == 0 {
		return kernelops.Invalid("", "", pid.String(), "Policies", "no template with reqid %d from %s to %s", m.ReqID, oldSrc, oldDst)
	}
	if b.k.Migrate {
		// One encapsulation per message, for the SAs of the policy's
		// direction: an in or fwd policy's are inbound ones.
		encap := orientEncap(m.Encap, pid.Dir != kernelops.DirOut)
		return b.do(ctx, pid.String(), func(mb *msgBuilder, seq uint32) error {
			appendMigrate(mb, seq, pe.ID(), entries, encap)
			return nil
		}, nil)
	}
	// No MIGRATE in this kernel: move the SAs, then point the templates.
	if err := b.moveMatching(ctx, m, oldSrc, oldDst); err != nil {
		return err
	}
	np := pe.Policy.Clone()
	for i, t := range np.Templates {
		if t.ReqID == m.ReqID && t.Mode == kernelops.ModeTunnel && t.Src == oldSrc && t.Dst == oldDst {
			np.Templates[i].Src, np.Templates[i].Dst = newSrc, newDst
		}
	}
	return b.ReplacePolicy(ctx, np)
}

// moveMatching software-moves every SA with m.ReqID from src to dst.
func (b *driver) moveMatching(ctx context.Context, m kernelops.Migration, src, dst netip.Addr) error {
	var ids []kernelops.SAID
	for e, err := range b.SAs(ctx) {
		if err != nil {
			return err
		}
		if e.ReqID == m.ReqID && e.ID.Src == src && e.ID.Dst == dst && e.State != kernelops.SALarval {
			ids = append(ids, e.ID)
		}
	}
	for _, id := range ids {
		if err := b.moveSA(ctx, m, id); err != nil {
			return err
		}
	}
	return nil
}

// moveSA re-installs one SA at the new addresses with its state, then
// deletes the old one. A failed install leaves the old SA in place.
func (b *driver) moveSA(ctx context.Context, m kernelops.Migration, id kernelops.SAID) error {
	e, err := b.GetSA(ctx, id)
	if err != nil {
		return err
	}
	ae, err := b.getAE(ctx, id)
	if err != nil {
		return err
	}
	sa := e.SA.Clone()
	sa.ID = kernelops.MovedID(m, id)
	sa.Encap = orientEncap(m.Encap, id.Src == m.Old.Remote)
	sa.Offload = kernelops.Offload{}
	replay := ae.State.Replay
	cur := lftCur{Bytes: ae.State.Bytes, Packets: ae.State.Packets,
		AddTime: unixSecs(ae.State.AddTime), UseTime: unixSecs(ae.State.UseTime)}
	add := func(sa *kernelops.SA) error {
		return b.do(ctx, sa.ID.String(), func(mb *msgBuilder, seq uint32) error {
			return appendSA(mb, nl.XFRM_MSG_NEWSA, reqFlags, seq, sa, saOpts{SADir: b.k.saDir(), Replay: &replay, Cur: &cur})
		}, nil)
	}
	if sa.ID.Dst == id.Dst {
		// Same destination, SPI and protocol: the kernel's key, so the
		// new SA cannot sit beside the old one. Delete first, and put the
		// old one back if the new one is refused.
		if err := b.DeleteSA(ctx, id); err != nil && !errors.Is(err, kernelops.ErrNotFound) {
			return err
		}
		if err := add(sa); err != nil {
			if rerr := add(&e.SA); rerr != nil {
				return errors.Join(err, fmt.Errorf("restoring %s: %w", id, rerr))
			}
			return err
		}
		return nil
	}
	if err := add(sa); err != nil {
		return err
	}
	if err := b.DeleteSA(ctx, id); err != nil && !errors.Is(err, kernelops.ErrNotFound) {
		return err
	}
	return nil
}

// orientEncap is a migration's encapsulation (kernelops.Migration.Encap:
// as on the outbound SA) for an SA: a copy, its ports swapped for an
// inbound one.
func orientEncap(e *kernelops.Encap, inbound bool) *kernelops.Encap {
	if e == nil {
		return nil
	}
	x := *e
	if inbound {
		x.SrcPort, x.DstPort = x.DstPort, x.SrcPort
	}
	return &x
}
