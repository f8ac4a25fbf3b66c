package ha

import (
	"context"
	"errors"
	"fmt"
	"sync"
	"time"

	clientv3 "go.etcd.io/etcd/client/v3"
	"go.etcd.io/etcd/client/v3/concurrency"
)

// Elector is this node's part in the election under prefix/election:
// an etcd lease (a concurrency.Session, kept alive by the client) and a
// campaign. Leadership is the election key this node created; its create
// revision is the fencing token. A lease lost (etcd did not hear the
// keep-alives for its TTL: this node or etcd was cut off) ends the
// leadership; the next campaign opens a new lease.
type Elector struct {
	cli    *clientv3.Client
	node   string
	prefix string
	ttl    int // seconds

	ctx    context.Context // the sessions' keep-alives run until Close
	cancel context.CancelFunc

	mu      sync.Mutex
	sess    *concurrency.Session
	el      *concurrency.Election
	leading bool
	key     string // our election key while leading
	rev     int64  // its create revision
	// fenceUntil: a Fence confirmed in etcd for election key revision
	// fenceRev holds without asking again until then (see Fence).
	fenceRev   int64
	fenceUntil time.Time
}

// NewElector opens this node's first session (a lease of ttl, whole
// seconds) on cli. Close ends it.
func NewElector(ctx context.Context, cli *clientv3.Client, prefix, node string, ttl time.Duration) (*Elector, error) {
	secs := int(ttl / time.Second)
	if secs < 1 || ttl%time.Second != 0 {
		return nil, fmt.Errorf("ha: lease ttl %v: want whole seconds", ttl)
	}
	e := &Elector{cli: cli, node: node, prefix: prefix, ttl: secs}
	e.ctx, e.cancel = context.WithCancel(context.Background())
	if _, _, err := e.session(ctx); err != nil {
		e.cancel()
		return nil, err
	}
	return e, nil
}

// session returns the current session, or opens a new one when there is
// none or it is lost.
func (e *Elector) session(ctx context.Context) (*concurrency.Session, *concurrency.Election, error) {
	e.mu.Lock()
	defer e.mu.Unlock()
	if e.sess != nil {
		select {
		case <-e.sess.Done():
			e.leading = false
			e.sess.Orphan()
			e.sess, e.el = nil, nil
		default:
			return e.sess, e.el, nil
		}
	}
	if e.ctx.Err() != nil {
		return nil, nil, ErrClosed
	}
	// The grant is bounded by ctx; the session's keep-alives by Close.
	lease, err := e.cli.Grant(ctx, int64(e.ttl))
	if err != nil {
		return nil, nil, fmt.Errorf("ha: node %s: etcd lease: %w", e.node, err)
	}
	sess, err := concurrency.NewSession(e.cli, concurrency.WithLease(lease.ID), concurrency.WithTTL(e.ttl), concurrency.WithContext(e.ctx))
	if err != nil {
		return nil, nil, fmt.Errorf("ha: node %s: etcd session: %w", e.node, err)
	}
	e.sess, e.el = sess, concurrency.NewElection(sess, e.prefix+"/election")
	return e.sess, e.el, nil
}

// Node is this node's name.
func (e *Elector) Node() string { return e.node }

// Campaign blocks until this node leads, or ctx ends. etcd unreachable
// (stopped, restarting, partitioned) fails a campaign round and a lost
// lease ends the session; the node then campaigns again with a new one,
// so it leads only once etcd itself says the leader's key is gone.
func (e *Elector) Campaign(ctx context.Context) error {
	retry := 100 * time.Millisecond
	for {
		if err := e.campaignOnce(ctx); err == nil {
			return nil
		} else if errors.Is(err, ErrClosed) {
			return err
		}
		select {
		case <-ctx.Done():
			return fmt.Errorf("ha: node %s: campaign: %w", e.node, ctx.Err())
		case <-time.After(retry):
		}
		retry = min(2*retry, 2*time.Second)
	}
}

func (e *Elector) campaignOnce(ctx context.Context) error {
	gctx, gcancel := context.WithTimeout(ctx, time.Duration(e.ttl)*time.Second)
	sess, el, err := e.session(gctx)
	gcancel()
	if err != nil {
		return err
	}
	ctx, cancel := context.WithCancel(ctx)
	defer cancel()
	stop := context.AfterFunc(sess.Ctx(), cancel) // the session's context ends with Close
	defer stop()
	go func() {
		select {
		case <-sess.Done():
			cancel()
		case <-ctx.Done():
		}
	}()
	if err := el.Campaign(ctx, e.node); err != nil {
		return err
	}
	e.mu.Lock()
	defer e.mu.Unlock()
	if e.sess != sess {
		return ErrNotLeader
	}
	e.leading, e.key, e.rev = true, el.Key(), el.Rev()
	return nil
}

// Leader names the current leader (concurrency.ErrElectionNoLeader when
// there is none).
func (e *Elector) Leader(ctx context.Context) (string, error) {
	_, el, err := e.session(ctx)
	if err != nil {
		return "", err
	}
	resp, err := el.Leader(ctx)
	if err != nil {
		return "", err
	}
	return string(resp.Kvs[0].Value), nil
}

// Observe streams the leader's name at each change until ctx ends (or
// the session it started on is lost).
func (e *Elector) Observe(ctx context.Context) <-chan string {
	out := make(chan string, 1)
	_, el, err := e.session(ctx)
	if err != nil {
		close(out)
		return out
	}
	go func() {
		defer close(out)
		for resp := range el.Observe(ctx) {
			if len(resp.Kvs) == 0 {
				continue
			}
			select {
			case out <- string(resp.Kvs[0].Value):
			case <-ctx.Done():
				return
			}
		}
	}()
	return out
}

// Resign gives up the leadership; the lease stays for a next campaign.
func (e *Elector) Resign(ctx context.Context) error {
	e.mu.Lock()
	el, leading := e.el, e.leading
	e.leading = false
	e.mu.Unlock()
	if !leading || el == nil {
		return nil
	}
	return el.Resign(ctx)
}

// Lost is closed when the lease this node leads with is gone: expired
// (etcd did not hear the keep-alives for its TTL), revoked, or closed.
// Not leading: a closed channel.
func (e *Elector) Lost() <-chan struct{} {
	e.mu.Lock()
	defer e.mu.Unlock()
	if !e.leading || e.sess == nil {
		c := make(chan struct{})
		close(c)
		return c
	}
	return e.sess.Done()
}

// Leading reports what this node knows without asking etcd: it won and
// its lease is not known to be lost.
func (e *Elector) Leading() bool {
	e.mu.Lock()
	defer e.mu.Unlock()
	if !e.leading || e.sess == nil {
		return false
	}
	select {
	case <-e.sess.Done():
		e.leading = false
		return false
	default:
		return true
	}
}

// Guard is the etcd comparison that holds while this node leads: its
// election key exists with the create revision it won with. A write in
// a transaction under it cannot land after another node took over.
func (e *Elector) Guard() (clientv3.Cmp, error) {
	if !e.Leading() {
		return clientv3.Cmp{}, &FenceError{Node: e.node, Op: "guard", Reason: "not elected"}
	}
	e.mu.Lock()
	defer e.mu.Unlock()
	return clientv3.Compare(clientv3.CreateRevision(e.key), "=", e.rev), nil
}

// FenceTimeout bounds the etcd round trip of a Fence check.
const FenceTimeout = time.Second

// fenceMargin is taken off the lease's remaining time that etcd reports
// before a confirmed fence is relied on: clock rates and the time
// between etcd's answer and the dataplane write.
const fenceMargin = time.Second

// Fence returns nil when this node still leads: locally (won, lease not
// lost) and in etcd (its election key is there with the revision it won
// with, so no one else has been elected since). Otherwise a
// *FenceError naming op. etcd unreachable is a refusal too: the node
// cannot know that its lease still holds.
//
// A confirmation is reused until the lease could first expire: etcd
// reports the lease's remaining time (whole seconds, rounded down,
// measured after the question was sent), and no other node can be
// elected before this node's key goes with its lease. So Fence asks
// etcd at most once per that time less fenceMargin (capped at half the
// TTL) — under a burst of installs (a takeover restoring 1,000
// children, a peer bringing up many) two round trips per window
// instead of one per write. The local check (Guard: won, session not
// lost, not resigned or closed) runs on every call.
func (e *Elector) Fence(ctx context.Context, op string) error {
	cmp, err := e.Guard()
	if err != nil {
		return &FenceError{Node: e.node, Op: op, Reason: "lease lost or not elected"}
	}
	now := time.Now()
	e.mu.Lock()
	held := e.fenceRev == e.rev && now.Before(e.fenceUntil)
	lease := clientv3.LeaseID(0)
	if e.sess != nil {
		lease = e.sess.Lease()
	}
	rev := e.rev
	e.mu.Unlock()
	if held {
		return nil
	}
	// Bounded: the engine calls this on its loop before a dataplane
	// write, and the client retries an unreachable etcd until its
	// context ends.
	ctx, cancel := context.WithTimeout(ctx, FenceTimeout)
	defer cancel()
	resp, err := e.cli.Txn(ctx).If(cmp).Commit()
	if err != nil {
		return &FenceError{Node: e.node, Op: op, Reason: "etcd cannot confirm the lease", Err: err}
	}
	if !resp.Succeeded {
		e.mu.Lock()
		e.leading = false
		e.mu.Unlock()
		return &FenceError{Node: e.node, Op: op, Reason: "election key gone or replaced: another node may lead"}
	}
	// How long the lease lives at least: from before the question.
	sent := time.Now()
	ttl, err := e.cli.TimeToLive(ctx, lease)
	if err == nil && ttl.TTL > 0 {
		hold := min(time.Duration(ttl.TTL)*time.Second-fenceMargin, time.Duration(e.ttl)*time.Second/2)
		if hold > 0 {
			e.mu.Lock()
			if e.rev == rev {
				e.fenceRev, e.fenceUntil = rev, sent.Add(hold)
			}
			e.mu.Unlock()
		}
	}
	return nil
}

// FencedUntil is when the last fence confirmed in etcd stops being
// relied on (zero: none held).
func (e *Elector) FencedUntil() time.Time {
	e.mu.Lock()
	defer e.mu.Unlock()
	if e.fenceRev != e.rev {
		return time.Time{}
	}
	return e.fenceUntil
}

// Close ends the session: etcd revokes the lease (within the TTL, if it
// answers), so a standby takes over at once rather than after the TTL.
func (e *Elector) Close() error {
	e.mu.Lock()
	sess := e.sess
	e.leading, e.sess, e.el = false, nil, nil
	e.mu.Unlock()
	var err error
	if sess != nil {
		err = sess.Close()
	}
	e.cancel()
	if errors.Is(err, context.Canceled) || errors.Is(err, context.DeadlineExceeded) {
		return nil
	}
	return err
}

// LeaseID is the lease of the current session (0: none open).
func (e *Elector) LeaseID() clientv3.LeaseID {
	e.mu.Lock()
	defer e.mu.Unlock()
	if e.sess == nil {
		return 0
	}
	return e.sess.Lease()
}

// TTL is the lease's configured time to live.
func (e *Elector) TTL() time.Duration { return time.Duration(e.ttl) * time.Second }
