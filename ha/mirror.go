package ha

import (
	"context"
	"iter"
	"log/slog"
	"maps"
	"slices"
	"strings"
	"sync"
	"sync/atomic"

	"go.etcd.io/etcd/api/v3/mvccpb"
	clientv3 "go.etcd.io/etcd/client/v3"
)

// Mirror is a standby's copy of the records under a prefix: it reads
// them once, then follows a watch, and keeps the latest of each opened,
// in memory. A record above the size limit, beyond the count limit, or
// that does not open is refused (counted, the last refusal kept) and
// never held.
type Mirror struct {
	cli    *clientv3.Client
	prefix string
	seal   *Sealer
	lim    Limits
	log    *slog.Logger

	mu      sync.Mutex
	recs    map[string][]byte // by key under the prefix
	rev     int64             // the etcd revision the copy is at
	refused error
	changed *sync.Cond

	refusals atomic.Uint64
	cancel   context.CancelFunc
	done     chan struct{}
}

// NewMirror reads the records under prefix and follows them until Close.
func NewMirror(ctx context.Context, cli *clientv3.Client, prefix string, seal *Sealer, lim Limits, log *slog.Logger) (*Mirror, error) {
	if log == nil {
		log = slog.Default()
	}
	m := &Mirror{cli: cli, prefix: prefix + "/", seal: seal, lim: lim, log: log, recs: map[string][]byte{}, done: make(chan struct{})}
	m.changed = sync.NewCond(&m.mu)
	if err := m.load(ctx); err != nil {
		return nil, err
	}
	wctx, cancel := context.WithCancel(context.Background())
	m.cancel = cancel
	go m.follow(wctx)
	return m, nil
}

// load replaces the copy with what etcd holds now.
func (m *Mirror) load(ctx context.Context) error {
	resp, err := m.cli.Get(ctx, m.prefix, clientv3.WithPrefix())
	if err != nil {
		return err
	}
	m.mu.Lock()
	defer m.mu.Unlock()
	clear(m.recs)
	for _, kv := range resp.Kvs {
		m.applyLocked(kv, false)
	}
	m.rev = resp.Header.Revision
	m.changed.Broadcast()
	return nil
}

func (m *Mirror) follow(ctx context.Context) {
	defer close(m.done)
	for ctx.Err() == nil {
		m.mu.Lock()
		from := m.rev + 1
		m.mu.Unlock()
		wch := m.cli.Watch(clientv3.WithRequireLeader(ctx), m.prefix, clientv3.WithPrefix(), clientv3.WithRev(from))
		for wr := range wch {
			if err := wr.Err(); err != nil {
				// Compacted past us, or the member lost its leader: read
				// everything again, then watch from there.
				m.log.Warn("ha: mirror watch ended; reading the records again", "err", err)
				break
			}
			m.mu.Lock()
			for _, ev := range wr.Events {
				m.applyLocked(ev.Kv, ev.Type == mvccpb.DELETE)
			}
			m.rev = wr.Header.Revision
			m.changed.Broadcast()
			m.mu.Unlock()
		}
		if ctx.Err() != nil {
			return
		}
		if err := m.load(ctx); err != nil && ctx.Err() == nil {
			m.log.Warn("ha: mirror reload failed", "err", err)
		}
	}
}

func (m *Mirror) applyLocked(kv *mvccpb.KeyValue, del bool) {
	path := string(kv.Key)
	key := strings.TrimPrefix(path, m.prefix)
	if del {
		delete(m.recs, key)
		return
	}
	if len(kv.Value) > m.lim.RecordSize {
		m.refuseLocked(&SizeError{Key: key, Size: len(kv.Value), Limit: m.lim.RecordSize, Err: ErrTooLarge})
		return
	}
	if _, ok := m.recs[key]; !ok && len(m.recs) >= m.lim.Records {
		m.refuseLocked(&SizeError{Key: key, Size: len(m.recs) + 1, Limit: m.lim.Records, Err: ErrTooMany})
		return
	}
	plain, err := m.seal.Open(path, kv.Value)
	if err != nil {
		m.refuseLocked(err)
		return
	}
	m.recs[key] = plain
}

func (m *Mirror) refuseLocked(err error) {
	m.refused = err
	m.refusals.Add(1)
	m.log.Warn("ha: mirror refused a record", "err", err)
}

// Refused is the last refusal and how many there were.
func (m *Mirror) Refused() (error, uint64) {
	m.mu.Lock()
	defer m.mu.Unlock()
	return m.refused, m.refusals.Load()
}

// Rev is the etcd revision the copy is at.
func (m *Mirror) Rev() int64 {
	m.mu.Lock()
	defer m.mu.Unlock()
	return m.rev
}

// WaitRev blocks until the copy is at revision rev or later, or ctx ends.
func (m *Mirror) WaitRev(ctx context.Context, rev int64) error {
	stop := context.AfterFunc(ctx, func() {
		m.mu.Lock()
		m.changed.Broadcast()
		m.mu.Unlock()
	})
	defer stop()
	m.mu.Lock()
	defer m.mu.Unlock()
	for m.rev < rev && ctx.Err() == nil {
		m.changed.Wait()
	}
	return ctx.Err()
}

// Len is the number of records held.
func (m *Mirror) Len() int {
	m.mu.Lock()
	defer m.mu.Unlock()
	return len(m.recs)
}

// Get returns a copy of record key.
func (m *Mirror) Get(key string) ([]byte, bool) {
	m.mu.Lock()
	defer m.mu.Unlock()
	v, ok := m.recs[key]
	return slices.Clone(v), ok
}

// Records yields the records whose key starts with prefix, in key
// order, from a snapshot taken at the call.
func (m *Mirror) Records(prefix string) iter.Seq2[string, []byte] {
	m.mu.Lock()
	snap := map[string][]byte{}
	for k, v := range m.recs {
		if strings.HasPrefix(k, prefix) {
			snap[k] = slices.Clone(v)
		}
	}
	m.mu.Unlock()
	return func(yield func(string, []byte) bool) {
		for _, k := range slices.Sorted(maps.Keys(snap)) {
			if !yield(k, snap[k]) {
				return
			}
		}
	}
}

// Close stops following.
func (m *Mirror) Close() error {
	m.cancel()
	<-m.done
	return nil
}
