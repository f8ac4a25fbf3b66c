//go:build vpp

package vpp

import (
	"context"
	"errors"
	"fmt"

	"github.com/keyplane/keyplane/kernelops"
	"go.fd.io/govpp/api"
	"go.fd.io/govpp/binapi/interface_types"
	"go.fd.io/govpp/binapi/ipsec"
	"go.fd.io/govpp/binapi/ipsec_types"
)

// prepare makes sure keyplane's SPD exists and is bound to the configured
// interfaces. It runs at Open and after every reconnect.
func (b *driver) prepare(ctx context.Context, s *session) error {
	err := s.invoke(ctx, &ipsec.IpsecSpdAddDel{IsAdd: true, SpdID: b.p.spdID}, &ipsec.IpsecSpdAddDelReply{})
	if err != nil && !errors.Is(err, api.ENTRY_ALREADY_EXISTS) {
		return fmt.Errorf("create SPD %d: %w", b.p.spdID, err)
	}
	if len(b.p.interfaces) == 0 {
		return nil
	}
	ifs, err := b.dumpInterfaces(ctx, s)
	if err != nil {
		return err
	}
	for _, name := range b.p.interfaces {
		idx, ok := ifs.byName(name)
		if !ok {
			return &kernelops.Error{Backend: Name, Op: "bind SPD", Object: name, Err: kernelops.ErrNotFound,
				Detail: "VPP has no interface of that name"}
		}
		err := s.invoke(ctx, &ipsec.IpsecInterfaceAddDelSpd{IsAdd: true, SwIfIndex: interface_types.InterfaceIndex(idx), SpdID: b.p.spdID},
			&ipsec.IpsecInterfaceAddDelSpdReply{})
		switch {
		case err == nil:
		case errors.Is(err, api.SYSCALL_ERROR_2):
			// "SPD already assigned": ours from before, when VPP did not
			// restart. VPP's dumps name SPDs by pool index, not id, so
			// this cannot be told apart from someone else's SPD.
			b.log.Debug("interface already has an SPD; assuming keyplane's", "interface", name, "spd", b.p.spdID)
		default:
			return fmt.Errorf("bind SPD %d to %s: %w", b.p.spdID, name, err)
		}
	}
	return nil
}

// reconcileLocked puts back, on a new session, every SA and policy keyplane
// owns: after a VPP restart all are gone; after a mere reconnect most are
// still there and only what a lost reply left half-done differs. It
// returns how many SAs and SPD entries it installed. b.mu is held.
func (b *driver) reconcileLocked(ctx context.Context, s *session) (int, error) {
	present, err := dump[*ipsec.IpsecSaV5Details](ctx, s, &ipsec.IpsecSaV5Dump{SaID: ^uint32(0)})
	if err != nil {
		return 0, fmt.Errorf("dump SAs: %w", err)
	}
	inVPP := make(map[uint32]*ipsec.IpsecSaV5Details, len(present))
	for _, d := range present {
		inVPP[d.Entry.SadID] = d
	}
	restored := 0
	for _, r := range b.bySadID {
		if d, ok := inVPP[r.sadID]; ok {
			if d.StatIndex != r.statIndex {
				r.base, r.last = r.total(), Counter{}
				r.statIndex = d.StatIndex
			}
			continue
		}
		// VPP restarted: its counters start again from zero.
		r.base, r.last = r.total(), Counter{}
		stat, err := b.addToVPP(ctx, s, r)
		if err != nil {
			return restored, fmt.Errorf("re-install SA %s: %w", r.sa.ID, err)
		}
		r.statIndex = stat
		restored++
	}
	// Policies: put back every entry keyplane wants that VPP lacks.
	have, err := dump[*ipsec.IpsecSpdDetails](ctx, s, &ipsec.IpsecSpdDump{SpdID: b.p.spdID, SaID: ^uint32(0)})
	if err != nil {
		return restored, fmt.Errorf("dump SPD %d: %w", b.p.spdID, err)
	}
	var got []ipsec_types.IpsecSpdEntryV2
	for _, d := range have {
		got = append(got, entryFromDetails(d.Entry))
	}
	var want []ipsec_types.IpsecSpdEntryV2
	want = append(want, b.holes...)
	for _, pr := range b.pols {
		pr.entries = b.wantEntries(pr.p)
		want = append(want, pr.entries...)
	}
	missing, _ := multisetDiff(want, got)
	for _, e := range missing {
		if err := b.spdEntry(ctx, s, true, e); err != nil {
			return restored, fmt.Errorf("re-install SPD entry: %w", err)
		}
		restored++
	}
	// SAs this process added whose reply was lost before it recorded them.
	for id, d := range inVPP {
		if b.issued[id] && b.bySadID[id] == nil {
			if err := s.invoke(ctx, &ipsec.IpsecSadEntryDel{ID: d.Entry.SadID}, &ipsec.IpsecSadEntryDelReply{}); err != nil &&
				!errors.Is(err, api.NO_SUCH_ENTRY) {
				return restored, fmt.Errorf("remove stale SA %d: %w", id, err)
			}
			delete(b.issued, id)
		}
	}
	return restored, nil
}

// allocSadID picks the next unused VPP sad_id in keyplane's range. b.mu
// is held.
func (b *driver) allocSadID() (uint32, error) {
	span := uint64(b.p.saIDMax) - uint64(b.p.saIDMin) + 1
	for range span {
		id := b.nextSadID
		if b.nextSadID == b.p.saIDMax {
			b.nextSadID = b.p.saIDMin
		} else {
			b.nextSadID++
		}
		if b.bySadID[id] == nil && !b.issued[id] {
			return id, nil
		}
	}
	return 0, &kernelops.Error{Backend: Name, Op: "add SA", Err: kernelops.ErrNoSpace,
		Detail: fmt.Sprintf("sa-id range %#x..%#x is full", b.p.saIDMin, b.p.saIDMax)}
}
