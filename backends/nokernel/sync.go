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

func (e *saEntry) syncState() kernelops.SyncState {
	r := e.c.Replay
	r.Bitmap = append([]uint32(nil), r.Bitmap...)
	return kernelops.SyncState{Replay: r, Bytes: e.c.Bytes, Packets: e.c.Packets,
		AddTime: e.c.AddTime, UseTime: e.c.FirstUse}
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
	x.sync.baseO, x.sync.baseI = e.c.Replay.OSeq, e.c.Replay.Seq
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
	return e.syncState(), nil
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
	if !e.sa.ESN && (st.Replay.OSeq > 0xffffffff || st.Replay.Seq > 0xffffffff) {
		b.mu.Unlock()
		return kernelops.Invalid("", "", "", "Replay.OSeq", "sequence numbers beyond 32 bits on an SA without ESN")
	}
	r := &e.c.Replay
	r.OSeq, r.Seq = st.Replay.OSeq, st.Replay.Seq
	clear(r.Bitmap)
	copy(r.Bitmap, st.Replay.Bitmap)
	if w := uint64(r.Window); w%32 != 0 && len(r.Bitmap) > 0 {
		r.Bitmap[len(r.Bitmap)-1] &= 1<<(w%32) - 1
	}
	e.c.Bytes, e.c.Packets = st.Bytes, st.Packets
	if !st.AddTime.IsZero() {
		e.c.AddTime = st.AddTime
	}
	if !st.UseTime.IsZero() {
		e.c.FirstUse = st.UseTime
	}
	obs := observed{id: e.sa.ID, bytes: e.c.Bytes, packets: e.c.Packets, firstUse: e.c.FirstUse}
	added := e.c.AddTime
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
	diff := max(e.c.Replay.OSeq-s.baseO, e.c.Replay.Seq-s.baseI)
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
			if e.c.Replay.OSeq != s.baseO || e.c.Replay.Seq != s.baseI {
				b.sendSync(e, kernelops.SyncTimer)
			}
		})
	}
}

func (b *model) sendSync(e *saEntry, why kernelops.SyncReason) {
	s := &e.extra().sync
	s.stop()
	s.baseO, s.baseI = e.c.Replay.OSeq, e.c.Replay.Seq
	b.env.Publish(&kernelops.SyncEvent{SA: e.sa.ID, ReqID: e.sa.ReqID, State: e.syncState(), Reason: why})
}
