package ha

import (
	"context"
	"errors"
	"log/slog"
	"sync"
	"sync/atomic"
	"time"

	clientv3 "go.etcd.io/etcd/client/v3"
)

// Limits bound what a store writes and a mirror holds.
type Limits struct {
	RecordSize int // largest sealed record, bytes
	Records    int // most records held (mirror) or waiting (store)
}

// DefaultLimits: an IKE SA record with its keys, identities and
// addresses is under 4 KiB, plus its children's inbound SPIs (up to 11
// bytes each in JSON): 64 KiB holds an IKE SA with 5,000 children (16
// KiB held fewer than 1,500). A child record is smaller still.
var DefaultLimits = Limits{RecordSize: 64 << 10, Records: 1 << 18}

// Store writes this node's records to etcd under prefix, sealed, as the
// leader: each write is a transaction guarded by the election key, so a
// node that lost the leadership cannot overwrite the new leader's state.
// Put and Delete never block on etcd: the latest value per key waits in
// a bounded map and one goroutine writes it (a record changed twice
// before it was written is written once).
type Store struct {
	cli    *clientv3.Client
	prefix string
	seal   *Sealer
	el     *Elector
	lim    Limits
	log    *slog.Logger

	mu      sync.Mutex
	pending map[string][]byte // nil value: delete
	err     error             // the last write failure
	wake    chan struct{}
	idle    *sync.Cond // broadcast when pending empties
	closed  bool

	writes atomic.Uint64 // etcd transactions that succeeded
	cancel context.CancelFunc
	done   chan struct{}
}

// NewStore starts a store; Close stops it.
func NewStore(cli *clientv3.Client, prefix string, seal *Sealer, el *Elector, lim Limits, log *slog.Logger) *Store {
	if log == nil {
		log = slog.Default()
	}
	ctx, cancel := context.WithCancel(context.Background())
	s := &Store{cli: cli, prefix: prefix, seal: seal, el: el, lim: lim, log: log,
		pending: map[string][]byte{}, wake: make(chan struct{}, 1), cancel: cancel, done: make(chan struct{})}
	s.idle = sync.NewCond(&s.mu)
	go s.run(ctx)
	return s
}

// Path is the etcd key of record key.
func (s *Store) Path(key string) string { return s.prefix + "/" + key }

// Put queues record key with value plain (sealed here).
func (s *Store) Put(key string, plain []byte) error {
	sealed := s.seal.Seal(s.Path(key), plain)
	if len(sealed) > s.lim.RecordSize {
		return &SizeError{Key: key, Size: len(sealed), Limit: s.lim.RecordSize, Err: ErrTooLarge}
	}
	return s.queue(key, sealed)
}

// Delete queues the removal of record key.
func (s *Store) Delete(key string) error { return s.queue(key, nil) }

func (s *Store) queue(key string, v []byte) error {
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.closed {
		return ErrClosed
	}
	if _, ok := s.pending[key]; !ok && len(s.pending) >= s.lim.Records {
		return &SizeError{Key: key, Size: len(s.pending) + 1, Limit: s.lim.Records, Err: ErrTooMany}
	}
	s.pending[key] = v
	select {
	case s.wake <- struct{}{}:
	default:
	}
	return nil
}

// Writes counts the etcd writes done (one transaction per record).
func (s *Store) Writes() uint64 { return s.writes.Load() }

// Err is the last write failure (nil after a later success).
func (s *Store) Err() error {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.err
}

// Flush waits until every queued record is written or refused, or ctx
// ends.
func (s *Store) Flush(ctx context.Context) error {
	stop := context.AfterFunc(ctx, func() {
		s.mu.Lock()
		s.idle.Broadcast()
		s.mu.Unlock()
	})
	defer stop()
	s.mu.Lock()
	defer s.mu.Unlock()
	for len(s.pending) > 0 && ctx.Err() == nil && !s.closed {
		s.idle.Wait()
	}
	if ctx.Err() != nil {
		return ctx.Err()
	}
	return s.err
}

// Close stops the writer; what was not written yet is dropped.
func (s *Store) Close() error {
	s.mu.Lock()
	s.closed = true
	s.idle.Broadcast()
	s.mu.Unlock()
	s.cancel()
	<-s.done
	return nil
}

func (s *Store) run(ctx context.Context) {
	defer close(s.done)
	const retryMin, retryMax = 50 * time.Millisecond, 2 * time.Second
	retry := retryMin
	for {
		s.mu.Lock()
		var key string
		var val []byte
		found := false
		for k, v := range s.pending {
			key, val, found = k, v, true
			break
		}
		s.mu.Unlock()
		if !found {
			select {
			case <-ctx.Done():
				return
			case <-s.wake:
				continue
			}
		}
		err := s.write(ctx, key, val)
		if ctx.Err() != nil {
			return // closed mid-write: what is pending is dropped
		}
		s.mu.Lock()
		switch {
		case err == nil || errors.Is(err, ErrNotLeader):
			// Written, or refused for good: a deposed leader's state
			// is not to be written.
			if cur, ok := s.pending[key]; ok && sameBytes(cur, val) {
				delete(s.pending, key)
			}
			s.err = err
			retry = retryMin
		default:
			s.err = err
		}
		if len(s.pending) == 0 {
			s.idle.Broadcast()
		}
		s.mu.Unlock()
		if err != nil && !errors.Is(err, ErrNotLeader) {
			s.log.Warn("ha: etcd write failed; retrying", "record", key, "err", err, "retry-in", retry.String())
			select {
			case <-ctx.Done():
				return
			case <-time.After(retry):
			}
			retry = min(retry*2, retryMax)
		}
	}
}

// sameBytes compares by identity as well as content: a record queued
// again with the same content still counts as written.
func sameBytes(a, b []byte) bool { return string(a) == string(b) && (a == nil) == (b == nil) }

func (s *Store) write(ctx context.Context, key string, sealed []byte) error {
	cmp, err := s.el.Guard()
	if err != nil {
		return &FenceError{Node: s.el.Node(), Op: "write record " + key, Reason: "not elected"}
	}
	op := clientv3.OpDelete(s.Path(key))
	if sealed != nil {
		op = clientv3.OpPut(s.Path(key), string(sealed))
	}
	wctx, cancel := context.WithTimeout(ctx, 5*time.Second)
	defer cancel()
	resp, err := s.cli.Txn(wctx).If(cmp).Then(op).Commit()
	if err != nil {
		return err
	}
	if !resp.Succeeded {
		return &FenceError{Node: s.el.Node(), Op: "write record " + key, Reason: "election key gone or replaced"}
	}
	s.writes.Add(1)
	return nil
}

// Pending counts the records queued and not yet written.
func (s *Store) Pending() int {
	s.mu.Lock()
	defer s.mu.Unlock()
	return len(s.pending)
}
