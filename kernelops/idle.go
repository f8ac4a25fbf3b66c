package kernelops

// Idle detection, for dataplanes that have no idle callback (all of them).
// One scan reads the usage of every SA in a single bulk pass (ReadUsage:
// one dump, never a read per SA) and raises an *IdleEvent for each watched
// SA idle for at least its threshold — once per idle period: the SA is
// reported again only after its traffic resumed and stopped again.
//
// When the dataplane fills Usage.LastUsed on every packet (Linux >= 6.2,
// VPP, nokernel) idleness is measured from it, to the precision of the
// dataplane's clock. Otherwise it is measured from byte and packet count
// deltas between scans: traffic seen between two scans counts as activity
// at the later scan, so the resolution is one scan interval (an SA is
// reported up to one interval late, never early). The front end runs one
// detector per Handle whose driver claims CapIdle.

import (
	"context"
	"iter"
	"sync"
	"time"

	"github.com/keyplane/keyplane/kernelops/clock"
)

// usageFunc reads the usage of every SA in one bulk pass.
type usageFunc func(ctx context.Context) iter.Seq2[Usage, error]

// idleConfig sets up an idleDetector.
type idleConfig struct {
	Clock clock.Clock // nil: the real clock
	Read  usageFunc
	// Emit receives each IdleEvent, outside the idleDetector's lock, after the
	// scan that found it has finished reading.
	Emit func(*IdleEvent)
	// OnError receives the error of a failed scan run by Start or Run;
	// nil drops it (the next scan tries again).
	OnError func(error)
}

// idleDetector watches SAs for idleness. It is safe for concurrent use.
type idleDetector struct {
	cfg idleConfig

	scanMu sync.Mutex // one scan at a time

	mu       sync.Mutex
	watch    map[SAID]*idleWatched
	gen      uint64    // scan generation, bumped at each scan's start
	lastScan time.Time // start of the last complete scan
	// Periodic scanning (Start): armed only while something is idleWatched.
	running  bool
	interval time.Duration
	timer    clock.Timer
	cancel   context.CancelFunc
	scanCtx  context.Context
	inflight sync.WaitGroup
}

type idleWatched struct {
	threshold time.Duration
	created   uint64 // gen when watching began
	seen      uint64 // gen of the last scan that saw the SA

	init           bool
	bytes, packets uint64
	active         time.Time // latest known activity (or add time if never used)
	never          bool      // no traffic seen yet
	reported       bool      // an IdleEvent went out for the current idle period
}

// New returns a idleDetector.
func newIdleDetector(cfg idleConfig) *idleDetector {
	if cfg.Clock == nil {
		cfg.Clock = clock.Real()
	}
	return &idleDetector{cfg: cfg, watch: map[SAID]*idleWatched{}}
}

// Watch sets the idle threshold of an SA; 0 stops watching it. Changing
// the threshold of a idleWatched SA keeps what is known of its traffic and
// allows a new report for the current idle period.
func (d *idleDetector) Watch(id SAID, threshold time.Duration) {
	d.mu.Lock()
	defer d.mu.Unlock()
	if threshold <= 0 {
		delete(d.watch, id)
		return
	}
	if w := d.watch[id]; w != nil {
		if w.threshold != threshold {
			w.threshold = threshold
			w.reported = false
		}
		return
	}
	d.watch[id] = &idleWatched{threshold: threshold, created: d.gen}
	d.arm()
}

// Move re-keys a idleWatched SA whose id changed (migration), keeping its
// state. It reports whether old was idleWatched.
func (d *idleDetector) Move(old, new SAID) bool {
	d.mu.Lock()
	defer d.mu.Unlock()
	w := d.watch[old]
	if w == nil {
		return false
	}
	delete(d.watch, old)
	d.watch[new] = w
	return true
}

// Threshold returns an SA's threshold, 0 if it is not idleWatched.
func (d *idleDetector) Threshold(id SAID) time.Duration {
	d.mu.Lock()
	defer d.mu.Unlock()
	if w := d.watch[id]; w != nil {
		return w.threshold
	}
	return 0
}

// Len reports how many SAs are idleWatched.
func (d *idleDetector) Len() int {
	d.mu.Lock()
	defer d.mu.Unlock()
	return len(d.watch)
}

// idleScanBatch is how many usage records a scan folds per lock hold.
const idleScanBatch = 256

// Scan reads every SA's usage once and emits IdleEvents for the idleWatched
// ones idle for their threshold. A idleWatched SA missing from a complete read
// is gone from the dataplane and is no longer idleWatched. With nothing
// idleWatched it reads nothing.
func (d *idleDetector) Scan(ctx context.Context) error {
	d.scanMu.Lock()
	defer d.scanMu.Unlock()

	d.mu.Lock()
	if len(d.watch) == 0 {
		d.mu.Unlock()
		return nil
	}
	d.gen++
	gen, prev := d.gen, d.lastScan
	d.mu.Unlock()

	now := d.cfg.Clock.Now()
	var events []*IdleEvent
	// Fold usage in batches: one lock hold per batch, not per SA.
	batch := make([]Usage, 0, idleScanBatch)
	flush := func() {
		d.mu.Lock()
		for _, u := range batch {
			if w := d.watch[u.ID]; w != nil {
				w.seen = gen
				if ev := w.update(u, now, prev); ev != nil {
					events = append(events, ev)
				}
			}
		}
		d.mu.Unlock()
		batch = batch[:0]
	}
	for u, err := range d.cfg.Read(ctx) {
		if err != nil {
			return err
		}
		if batch = append(batch, u); len(batch) == idleScanBatch {
			flush()
		}
	}
	flush()
	if err := ctx.Err(); err != nil {
		return err
	}

	d.mu.Lock()
	for id, w := range d.watch {
		if w.created < gen && w.seen != gen {
			delete(d.watch, id)
		}
	}
	d.lastScan = now
	d.mu.Unlock()

	if d.cfg.Emit != nil {
		for _, ev := range events {
			d.cfg.Emit(ev)
		}
	}
	return nil
}

// update folds one usage record into the SA's state and returns the event
// to emit, if any. prev is the start of the previous scan.
func (w *idleWatched) update(u Usage, now, prev time.Time) *IdleEvent {
	if !w.init {
		w.init = true
		w.bytes, w.packets = u.Bytes, u.Packets
		switch {
		case !u.LastUsed.IsZero():
			w.active = u.LastUsed
		case u.Bytes == 0 && u.Packets == 0:
			w.never = true
			w.active = u.AddTime
			if w.active.IsZero() {
				w.active = now
			}
		default:
			w.active = now // used at some unknown time: count from here
		}
	} else {
		var act time.Time
		if u.Bytes != w.bytes || u.Packets != w.packets {
			w.bytes, w.packets = u.Bytes, u.Packets
			w.never = false
			// A LastUsed that moved since the last scan is precise; one that
			// did not move while the counters did is a first-use time (XFRM
			// before 6.2), so fall back to the scan time.
			if !u.LastUsed.IsZero() && u.LastUsed.After(prev) {
				act = u.LastUsed
			} else {
				act = now
			}
		} else if !u.LastUsed.IsZero() && u.LastUsed.After(w.active) {
			act = u.LastUsed
			w.never = false
		}
		if act.After(w.active) {
			w.active = act
			w.reported = false
		}
	}
	idleFor := now.Sub(w.active)
	if w.reported || idleFor < w.threshold {
		return nil
	}
	w.reported = true
	ev := &IdleEvent{SA: u.ID, ReqID: u.ReqID, IdleFor: idleFor, Threshold: w.threshold}
	if !w.never {
		ev.LastUsed = w.active
	}
	return ev
}

// Start scans every interval on the idleDetector's clock until the returned
// stop is called. Scans run from clock timers (synchronously inside a fake
// clock's Advance), and the timer is armed only while some SA is idleWatched,
// so an idle daemon wakes for nothing. stop waits for a scan in progress;
// do not call it from Emit.
func (d *idleDetector) Start(interval time.Duration) (stop func()) {
	if interval <= 0 {
		interval = 10 * time.Second
	}
	ctx, cancel := context.WithCancel(context.Background())
	d.mu.Lock()
	if d.running {
		d.mu.Unlock()
		cancel()
		return func() {}
	}
	d.running, d.interval, d.scanCtx, d.cancel = true, interval, ctx, cancel
	d.arm()
	d.mu.Unlock()
	var once sync.Once
	return func() {
		once.Do(func() {
			d.mu.Lock()
			d.running = false
			if d.timer != nil {
				d.timer.Stop()
				d.timer = nil
			}
			d.mu.Unlock()
			cancel()
			d.inflight.Wait()
		})
	}
}

// Run scans every interval until ctx is done, then returns ctx.Err().
func (d *idleDetector) Run(ctx context.Context, interval time.Duration) error {
	stop := d.Start(interval)
	defer stop()
	<-ctx.Done()
	return ctx.Err()
}

// arm schedules the next periodic scan if one is due. Called with d.mu held.
func (d *idleDetector) arm() {
	if !d.running || d.timer != nil || len(d.watch) == 0 {
		return
	}
	d.timer = d.cfg.Clock.AfterFunc(d.interval, d.tick)
}

func (d *idleDetector) tick() {
	d.mu.Lock()
	d.timer = nil
	if !d.running {
		d.mu.Unlock()
		return
	}
	ctx := d.scanCtx
	d.inflight.Add(1)
	d.mu.Unlock()

	err := d.Scan(ctx)
	if err != nil && ctx.Err() == nil && d.cfg.OnError != nil {
		d.cfg.OnError(err)
	}

	d.mu.Lock()
	d.arm()
	d.mu.Unlock()
	d.inflight.Done()
}
