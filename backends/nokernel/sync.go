package nokernel

import (
	"context"
	"syscall"

	"github.com/keyplane/keyplane/kernelops"
	"github.com/keyplane/keyplane/kernelops/clock"
)

// syncState is an SA's xfrm_sync bookkeeping: the thresholds and the
// replay counters at the last SyncEvent.
type syncState struct {
	th           kernelops.SyncThresholds
	baseO, baseI uint64 // OSeq and Seq when the last event went out
	timer        clock.Timer
	timerSeq     uint64
}

func (s *syncState) stop() {
	if s.timer != nil {
		s.timer.Stop()
		s.timer = nil
	}
}

func (b *model) syncState(e *saEntry) kernelops.SyncState {
	r := kernelops.ReplayState{OSeq: e.oseq, Seq: e.seq, Window: e.window, Bitmap: append([]uint32(nil), e.bitmap()...)}
	return kernelops.SyncState{Replay: r, Bytes: e.bytes, Packets: e.packets,
		AddTime: b.saTime(e, tAdd), UseTime: b.saTime(e, tFirstUse)}
}

// SetSyncThresholds makes traffic on the SA raise SyncEvents: after
// ReplayDiff packets of sequence-number advance (either direction), or
// Timer after the first change since the last event, as XFRM's
// replay_maxdiff and replay_maxage do. Zero thresholds stop them.
func (b *model) SetSyncThresholds(ctx context.Context, id kernelops.SAID, th kernelops.SyncThresholds) error {
	b.mu.Lock()
	defer b.mu.Unlock()
	if err := b.checkLocked(); err != nil {
		return err
	}
	e := b.sad.find(id)
	if e == nil || e.state == kernelops.SALarval {
		return errno(syscall.ESRCH, "no such SA")
	}
	if e.x == nil && th == (kernelops.SyncThresholds{}) {
		return nil
	}
	x := e.extra()
	x.sync.stop()
	x.sync.th = th
	x.sync.baseO, x.sync.baseI = e.oseq, e.seq
	return nil
}

// GetSyncState returns the SA's replay state and lifetime usage.
func (b *model) GetSyncState(ctx context.Context, id kernelops.SAID) (kernelops.SyncState, error) {
	b.mu.Lock()
	defer b.mu.Unlock()
	if err := b.checkLocked(); err != nil {
		return kernelops.SyncState{}, err
	}
	e := b.sad.find(id)
	if e == nil || e.state == kernelops.SALarval {
		return kernelops.SyncState{}, errno(syscall.ESRCH, "no such SA")
	}
	return b.syncState(e), nil
}

// SetSyncState writes replay state and lifetime usage into an SA, as an
// HA standby does before taking it over (XFRM_MSG_NEWAE). Lifetimes then
// count from the written add/use times and counters. The window size
// stays the SA's own; a bitmap longer than it is cut.
func (b *model) SetSyncState(ctx context.Context, id kernelops.SAID, st kernelops.SyncState) error {
	b.mu.Lock()
	if err := b.checkLocked(); err != nil {
		b.mu.Unlock()
		return err
	}
	e := b.sad.find(id)
	if e == nil || e.state == kernelops.SALarval {
		b.mu.Unlock()
		return errno(syscall.ESRCH, "no such SA")
	}
	if !e.esn && (st.Replay.OSeq > 0xffffffff || st.Replay.Seq > 0xffffffff) {
		b.mu.Unlock()
		return kernelops.Invalid("", "", "", "Replay.OSeq", "sequence numbers beyond 32 bits on an SA without ESN")
	}
	e.oseq, e.seq = st.Replay.OSeq, st.Replay.Seq
	bm := e.bitmap()
	clear(bm)
	copy(bm, st.Replay.Bitmap)
	if w := uint64(e.window); w%32 != 0 && len(bm) > 0 {
		bm[len(bm)-1] &= 1<<(w%32) - 1
	}
	e.bytes, e.packets = st.Bytes, st.Packets
	if !st.AddTime.IsZero() {
		b.setSATime(e, tAdd, st.AddTime)
	}
	if !st.UseTime.IsZero() {
		b.setSATime(e, tFirstUse, st.UseTime)
	}
	obs := observed{id: e.said(), bytes: e.bytes, packets: e.packets, firstUse: b.saTime(e, tFirstUse)}
	added := b.saTime(e, tAdd)
	b.mu.Unlock()
	b.env.SetTimes(obs.id, added, obs.firstUse)
	b.env.Observe(obs.id, obs.bytes, obs.packets, obs.firstUse)
	return nil
}

// syncTouched raises the SyncEvents an SA's replay advance calls for.
// Called with b.mu held after the counters moved.
func (b *model) syncTouched(e *saEntry) {
	if e.x == nil {
		return
	}
	s := &e.x.sync
	if s.th == (kernelops.SyncThresholds{}) {
		return
	}
	diff := max(e.oseq-s.baseO, e.seq-s.baseI)
	if s.th.ReplayDiff > 0 && diff >= uint64(s.th.ReplayDiff) {
		b.sendSync(e, kernelops.SyncReplay)
		return
	}
	if s.th.Timer > 0 && s.timer == nil && diff > 0 {
		s.timerSeq++
		seq := s.timerSeq
		s.timer = b.clk.AfterFunc(s.th.Timer, func() {
			b.mu.Lock()
			defer b.mu.Unlock()
			if e.dead || b.closed || s.timerSeq != seq {
				return
			}
			s.timer = nil
			if e.oseq != s.baseO || e.seq != s.baseI {
				b.sendSync(e, kernelops.SyncTimer)
			}
		})
	}
}

func (b *model) sendSync(e *saEntry, why kernelops.SyncReason) {
	s := &e.extra().sync
	s.stop()
	s.baseO, s.baseI = e.oseq, e.seq
	b.env.Publish(&kernelops.SyncEvent{SA: e.said(), ReqID: e.reqID, State: b.syncState(e), Reason: why})
}
