package ha

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"log/slog"
	"sync"
	"sync/atomic"

	"github.com/keyplane/keyplane/kernelops"
)

// counterKey is the record of one SA's replay counters: by the child's
// inbound SPI, so the child's removal finds both of its SAs' records.
func counterKey(child uint32, dir kernelops.Direction) string {
	return fmt.Sprintf("seq/%08x/%s", child, dir)
}

// CounterRecord is an SA's replay state as the dataplane last synced it.
type CounterRecord struct {
	SA     kernelops.SAID        `json:"sa"`
	Replay kernelops.ReplayState `json:"replay"`
}

type counterOp struct {
	child   uint32
	in, out kernelops.SAID
	forget  bool
}

// Counters writes the dataplane's replay counters to the store: it sets
// the sync thresholds (Syncer) on each child's SAs as they are installed
// and turns every SyncEvent into a counter record, so a standby knows
// how far the sequence numbers went (to within the thresholds). One
// goroutine does the dataplane calls; Watch and Forget only queue, and a
// full queue drops the request (counted) rather than block the engine.
type Counters struct {
	syn kernelops.Syncer
	st  *Store
	th  kernelops.SyncThresholds
	log *slog.Logger
	sub kernelops.Subscription

	ops  chan counterOp
	byID map[kernelops.SAID]counterOp // the goroutine's own; bounded by the store's record limit

	// While held (a takeover's restore), requests wait in backlog, in
	// order, and are done on Release; until the backlog is taken, later
	// ones join it, so none overtakes another.
	mu      sync.Mutex
	held    bool
	backlog []counterOp // bounded by max
	kick    chan struct{}

	max    int
	synced atomic.Uint64 // sync events written
	drops  atomic.Uint64 // requests or events not handled (queue full, limit)

	cancel context.CancelFunc
	done   chan struct{}
}

// NewCounters subscribes to b's sync events. b needs the Syncer and
// EventSource facets.
func NewCounters(ctx context.Context, b kernelops.Backend, st *Store, th kernelops.SyncThresholds, log *slog.Logger) (*Counters, error) {
	if log == nil {
		log = slog.Default()
	}
	syn, err := kernelops.As[kernelops.Syncer](b)
	if err != nil {
		return nil, fmt.Errorf("ha: the dataplane cannot sync counters: %w", err)
	}
	es, err := kernelops.As[kernelops.EventSource](b)
	if err != nil {
		return nil, fmt.Errorf("ha: the dataplane cannot sync counters: %w", err)
	}
	cctx, cancel := context.WithCancel(context.Background())
	sub, err := es.Subscribe(cctx, kernelops.SubscribeOptions{Kinds: kernelops.KindSync})
	if err != nil {
		cancel()
		return nil, fmt.Errorf("ha: sync events: %w", err)
	}
	c := &Counters{syn: syn, st: st, th: th, log: log, sub: sub, ops: make(chan counterOp, 1024),
		byID: map[kernelops.SAID]counterOp{}, max: st.lim.Records, kick: make(chan struct{}, 1), cancel: cancel, done: make(chan struct{})}
	go c.run(cctx)
	return c, nil
}

// Watch starts syncing the counters of the child with SAs in and out.
func (c *Counters) Watch(child uint32, in, out kernelops.SAID) {
	c.queue(counterOp{child: child, in: in, out: out})
}

// Forget stops syncing the child's counters and removes their records.
func (c *Counters) Forget(child uint32) { c.queue(counterOp{child: child, forget: true}) }

// Hold makes Watch and Forget wait until Release: a takeover's restore
// holds them so that setting thresholds (a dataplane call per SA) and
// the sync events it starts do not compete with it.
func (c *Counters) Hold() {
	c.mu.Lock()
	c.held = true
	c.mu.Unlock()
}

// Release does what was asked while held, in order.
func (c *Counters) Release() {
	c.mu.Lock()
	c.held = false
	waiting := len(c.backlog) > 0
	c.mu.Unlock()
	if waiting {
		select {
		case c.kick <- struct{}{}:
		default:
		}
	}
}

func (c *Counters) queue(op counterOp) {
	c.mu.Lock()
	if c.held || len(c.backlog) > 0 {
		defer c.mu.Unlock()
		if len(c.backlog) >= c.max {
			c.drops.Add(1)
			c.log.Error("ha: counter sync backlog full; request dropped", "child", fmt.Sprintf("%08x", op.child), "forget", op.forget)
			return
		}
		c.backlog = append(c.backlog, op)
		return
	}
	c.mu.Unlock()
	select {
	case c.ops <- op:
	default:
		c.drops.Add(1)
		c.log.Error("ha: counter sync queue full; request dropped", "child", fmt.Sprintf("%08x", op.child), "forget", op.forget)
	}
}

// Synced counts the sync events written; Drops what was not handled.
func (c *Counters) Synced() uint64 { return c.synced.Load() }
func (c *Counters) Drops() uint64  { return c.drops.Load() }

// Close stops syncing.
func (c *Counters) Close() error {
	c.cancel()
	<-c.done
	return c.sub.Close()
}

func (c *Counters) run(ctx context.Context) {
	defer close(c.done)
	for {
		select {
		case <-ctx.Done():
			return
		case op := <-c.ops:
			c.apply(ctx, op)
		case <-c.kick:
			c.mu.Lock()
			b := c.backlog
			c.mu.Unlock()
			for _, op := range b {
				if ctx.Err() != nil {
					return
				}
				c.apply(ctx, op)
			}
			c.mu.Lock()
			// Taken whole: what joined it meanwhile stays for the next kick.
			c.backlog = c.backlog[len(b):]
			more := len(c.backlog) > 0 && !c.held
			if len(c.backlog) == 0 {
				c.backlog = nil
			}
			c.mu.Unlock()
			if more {
				select {
				case c.kick <- struct{}{}:
				default:
				}
			}
		case ev, ok := <-c.sub.Events():
			if !ok {
				return
			}
			c.event(ev)
		}
	}
}

func (c *Counters) apply(ctx context.Context, op counterOp) {
	if op.forget {
		for id, w := range c.byID {
			if w.child == op.child {
				delete(c.byID, id)
			}
		}
		_ = c.st.Delete(counterKey(op.child, kernelops.DirIn))
		_ = c.st.Delete(counterKey(op.child, kernelops.DirOut))
		return
	}
	if len(c.byID)+2 > c.max {
		c.drops.Add(1)
		c.log.Error("ha: too many SAs to sync counters for", "limit", c.max)
		return
	}
	for _, id := range []kernelops.SAID{op.in, op.out} {
		c.byID[id] = op
		if err := c.syn.SetSyncThresholds(ctx, id, c.th); err != nil && !errors.Is(err, kernelops.ErrNotFound) {
			c.log.Warn("ha: cannot set sync thresholds", "sa", id.String(), "err", err)
		}
	}
}

func (c *Counters) event(ev kernelops.Event) {
	se, ok := ev.(*kernelops.SyncEvent)
	if !ok {
		if _, over := ev.(*kernelops.OverrunEvent); over {
			c.drops.Add(1)
			c.log.Warn("ha: sync events lost (overrun); the next ones catch up")
		}
		return
	}
	w, ok := c.byID[se.SA]
	if !ok {
		return
	}
	dir := kernelops.DirIn
	if se.SA == w.out {
		dir = kernelops.DirOut
	}
	b, err := json.Marshal(CounterRecord{SA: se.SA, Replay: se.State.Replay})
	if err == nil {
		err = c.st.Put(counterKey(w.child, dir), b)
	}
	if err != nil {
		c.drops.Add(1)
		c.log.Error("ha: counter record refused", "sa", se.SA.String(), "err", err)
		return
	}
	c.synced.Add(1)
}

// ReplayFrom reads the counter records a mirror holds now, for
// ike.RestoreOptions.Replay (one pass over the records, then lookups).
func ReplayFrom(m *Mirror) func(kernelops.SAID) (kernelops.ReplayState, bool) {
	byID := map[kernelops.SAID]kernelops.ReplayState{}
	for _, b := range m.Records("seq/") {
		var r CounterRecord
		if json.Unmarshal(b, &r) == nil {
			byID[r.SA] = r.Replay
		}
	}
	return func(id kernelops.SAID) (kernelops.ReplayState, bool) {
		r, ok := byID[id]
		return r, ok
	}
}
