package xfrm

import (
	"context"
	"time"

	"github.com/keyplane/keyplane/kernelops"
	"github.com/vishvananda/netlink/nl"
	"golang.org/x/sys/unix"
)

// xfrm_sync (Documentation/networking/xfrm_sync.rst): NEWAE sets an SA's
// replay and timer thresholds and writes its replay and lifetime state;
// GETAE reads them; the kernel multicasts NEWAE to XFRMNLGRP_AEVENTS when
// a threshold is crossed, and only while someone listens there (Subscribe).
//
// keyplane installs SAs with both thresholds 0, so an SA sends no sync
// events until SetSyncThresholds asks for them (the kernel's defaults
// would send one every two packets once anyone listens).

// SetSyncThresholds implements kernelops.Syncer.
func (b *driver) SetSyncThresholds(ctx context.Context, id kernelops.SAID, th kernelops.SyncThresholds) error {
	if err := b.syncCheck(id); err != nil {
		return err
	}
	// XFRMA_ETIMER_THRESH is read as jiffies on input (and reported in
	// 100 ms units); HZ comes from the probe's calibration.
	jiffies := uint64(0)
	if th.Timer > 0 {
		jiffies = max(1, (uint64(th.Timer)*uint64(b.k.HZ)+uint64(time.Second)-1)/uint64(time.Second))
	}
	if jiffies > 1<<32-1 {
		return kernelops.Invalid("", "", id.String(), "Timer", "%v is too long", th.Timer)
	}
	return b.do(ctx, id.String(), func(mb *msgBuilder, seq uint32) error {
		appendAevent(mb, nl.XFRM_MSG_NEWAE, reqFlags|unix.NLM_F_REPLACE, seq, id, 0, xfrmAERthr|xfrmAEEthr)
		mb.attrU32(nl.XFRMA_REPLAY_THRESH, th.ReplayDiff)
		mb.attrU32(nl.XFRMA_ETIMER_THRESH, uint32(jiffies))
		mb.end()
		return nil
	}, nil)
}

func (b *driver) syncCheck(id kernelops.SAID) error {
	return b.requireProto(id.String, id.Proto)
}

// getAE reads an SA's aevent state.
func (b *driver) getAE(ctx context.Context, id kernelops.SAID) (aevent, error) {
	var ae aevent
	got := false
	err := b.do(ctx, id.String(), func(mb *msgBuilder, seq uint32) error {
		appendAevent(mb, nl.XFRM_MSG_GETAE, reqFlags, seq, id, 0, xfrmAERthr|xfrmAEEthr)
		mb.end()
		return nil
	}, func(m nlMsg) error {
		if m.Type != nl.XFRM_MSG_NEWAE {
			return nil
		}
		got = true
		return decodeAevent(m.Data, &ae)
	})
	if err == nil && !got {
		err = &kernelops.Error{Object: id.String(), Err: kernelops.ErrNotFound}
	}
	return ae, err
}

// GetSyncState implements kernelops.Syncer with XFRM_MSG_GETAE.
func (b *driver) GetSyncState(ctx context.Context, id kernelops.SAID) (kernelops.SyncState, error) {
	if err := b.syncCheck(id); err != nil {
		return kernelops.SyncState{}, err
	}
	ae, err := b.getAE(ctx, id)
	if err != nil {
		return kernelops.SyncState{}, err
	}
	return ae.State, nil
}

// SetSyncState implements kernelops.Syncer with XFRM_MSG_NEWAE: replay
// state (in the SA's own form, legacy or ESN bitmap of its length) and
// lifetime counters.
func (b *driver) SetSyncState(ctx context.Context, id kernelops.SAID, st kernelops.SyncState) error {
	if err := b.syncCheck(id); err != nil {
		return err
	}
	cur, err := b.getAE(ctx, id)
	if err != nil {
		return err
	}
	if !cur.ESN && (st.Replay.OSeq > 1<<32-1 || st.Replay.Seq > 1<<32-1) {
		return kernelops.Invalid("", "", id.String(), "Replay", "64-bit sequence numbers on an SA without ESN")
	}
	if cur.ESN && len(st.Replay.Bitmap) > cur.BmpLen {
		return kernelops.Invalid("", "", id.String(), "Replay.Bitmap", "%d words: the SA's bitmap has %d", len(st.Replay.Bitmap), cur.BmpLen)
	}
	return b.do(ctx, id.String(), func(mb *msgBuilder, seq uint32) error {
		appendAevent(mb, nl.XFRM_MSG_NEWAE, reqFlags|unix.NLM_F_REPLACE, seq, id, 0, xfrmAERval|xfrmAELval)
		if cur.ESN {
			r := st.Replay
			if r.Window == 0 {
				r.Window = cur.State.Replay.Window
			}
			putReplayESN(mb, r, cur.BmpLen)
		} else {
			putReplay(mb, st.Replay)
		}
		putLftCur(mb.attr(nl.XFRMA_LTIME_VAL, sizeLftCur), lftCur{
			Bytes: st.Bytes, Packets: st.Packets, AddTime: unixSecs(st.AddTime), UseTime: unixSecs(st.UseTime)})
		mb.end()
		return nil
	}, nil)
}
