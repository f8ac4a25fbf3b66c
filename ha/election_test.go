package ha

import (
	"context"
	"errors"
	"testing"
	"time"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"
	clientv3 "go.etcd.io/etcd/client/v3"

	"github.com/keyplane/keyplane/internal/etcdtest"
)

const testTTL = 2 * time.Second

// node is one cluster member of a test: its own etcd client (so killing
// it is closing that client) and its elector.
type node struct {
	cli *clientv3.Client
	el  *Elector
}

func newNode(t *testing.T, srv *etcdtest.Server, name string) *node {
	t.Helper()
	return newNodeTTL(t, srv, name, testTTL)
}

func newNodeTTL(t *testing.T, srv *etcdtest.Server, name string, ttl time.Duration) *node {
	t.Helper()
	cli := srv.Client(t)
	el, err := NewElector(etcdtest.Ctx(t), cli, "/kp-test", name, ttl)
	require.NoError(t, err)
	t.Cleanup(func() { _ = el.Close() })
	return &node{cli: cli, el: el}
}

// campaign runs n's campaign in the background; the channel gets its end.
func campaign(t *testing.T, n *node) <-chan error {
	ctx, cancel := context.WithCancel(context.Background())
	t.Cleanup(cancel)
	done := make(chan error, 1)
	go func() { done <- n.el.Campaign(ctx) }()
	return done
}

func TestElectionTakeoverOnLeaseRevoke(t *testing.T) {
	srv := etcdtest.Start(t)
	a, b := newNode(t, srv, "a"), newNode(t, srv, "b")
	require.NoError(t, a.el.Campaign(etcdtest.Ctx(t)))
	require.True(t, a.el.Leading())
	won := campaign(t, b)
	leader, err := b.el.Leader(etcdtest.Ctx(t))
	require.NoError(t, err)
	assert.Equal(t, "a", leader)
	select {
	case err := <-won:
		t.Fatalf("b won while a leads: %v", err)
	case <-time.After(500 * time.Millisecond):
	}
	start := time.Now()
	require.NoError(t, a.el.Close()) // revokes the lease
	select {
	case err := <-won:
		require.NoError(t, err)
	case <-time.After(testTTL):
		t.Fatal("b did not lead within the TTL after a's lease was revoked")
	}
	t.Logf("takeover after revoke: %v", time.Since(start))
	assert.True(t, b.el.Leading())
	assert.False(t, a.el.Leading())
	require.NoError(t, b.el.Fence(etcdtest.Ctx(t), "test"))
}

// A leader that dies without a word (its client gone, no revoke): the
// other node leads once the lease runs out, within the TTL (plus the
// etcd's own expiry check).
func TestElectionTakeoverOnLeaderDeath(t *testing.T) {
	srv := etcdtest.Start(t)
	a, b := newNode(t, srv, "a"), newNode(t, srv, "b")
	require.NoError(t, a.el.Campaign(etcdtest.Ctx(t)))
	won := campaign(t, b)
	start := time.Now()
	require.NoError(t, a.cli.Close()) // the keep-alives stop; the lease stays until its TTL
	select {
	case err := <-won:
		require.NoError(t, err)
	case <-time.After(testTTL + 5*time.Second):
		t.Fatal("b did not lead after a's lease ran out")
	}
	took := time.Since(start)
	t.Logf("takeover after leader death: %v (lease TTL %v)", took, testTTL)
	assert.GreaterOrEqual(t, took, testTTL/2, "b led before a's lease could have expired")
	assert.True(t, b.el.Leading())
}

func TestElectionResign(t *testing.T) {
	srv := etcdtest.Start(t)
	a, b := newNode(t, srv, "a"), newNode(t, srv, "b")
	require.NoError(t, a.el.Campaign(etcdtest.Ctx(t)))
	won := campaign(t, b)
	obs := b.el.Observe(etcdtest.Ctx(t))
	assert.Equal(t, "a", <-obs)
	require.NoError(t, a.el.Resign(etcdtest.Ctx(t)))
	require.NoError(t, <-won)
	assert.Equal(t, "b", <-obs)
	err := a.el.Fence(etcdtest.Ctx(t), "add SA")
	require.ErrorIs(t, err, ErrNotLeader)
}

// etcd down: the active cannot confirm its lease (its writes are fenced)
// but is not replaced; the standby does not take over while it cannot
// see that the active's lease expired. When etcd is back, the standby
// leads only after the active's lease ran out there.
func TestElectionEtcdDown(t *testing.T) {
	srv := etcdtest.Start(t)
	a, b := newNode(t, srv, "a"), newNode(t, srv, "b")
	require.NoError(t, a.el.Campaign(etcdtest.Ctx(t)))
	won := campaign(t, b)
	srv.Stop()
	select {
	case err := <-won:
		t.Fatalf("standby took over while etcd was down: %v", err)
	case <-time.After(testTTL + time.Second):
	}
	assert.False(t, b.el.Leading())
	// The active's lease is past its TTL without a keep-alive: it no
	// longer counts itself leader, and a dataplane write is refused.
	select {
	case <-a.el.Lost():
	case <-time.After(2 * time.Second):
		t.Fatal("the active did not notice its lease ran out")
	}
	ctx, cancel := context.WithTimeout(context.Background(), time.Second)
	defer cancel()
	var fe *FenceError
	require.True(t, errors.As(a.el.Fence(ctx, "add SA"), &fe))

	srv.Restart()
	select {
	case err := <-won:
		require.NoError(t, err)
	case <-time.After(5*testTTL + 5*time.Second):
		t.Fatal("standby did not lead after etcd came back and the active's lease expired")
	}
	require.NoError(t, b.el.Fence(etcdtest.Ctx(t), "add SA"))
	require.ErrorIs(t, a.el.Fence(etcdtest.Ctx(t), "add SA"), ErrNotLeader)
}

// A fence confirmed in etcd is reused while the lease cannot have
// expired: with etcd stopped right after it, the next Fence passes
// without asking; once the confirmation's time is over, Fence asks again
// and is refused (etcd cannot confirm the lease).
func TestFenceHeldWithinLease(t *testing.T) {
	srv := etcdtest.Start(t)
	a := newNodeTTL(t, srv, "a", 5*time.Second)
	require.NoError(t, a.el.Campaign(etcdtest.Ctx(t)))
	before := time.Now()
	require.NoError(t, a.el.Fence(etcdtest.Ctx(t), "add SA"))
	after := time.Now()
	until := a.el.FencedUntil()
	require.False(t, until.IsZero(), "no confirmation held")
	assert.True(t, until.After(before), "held until %v", until)
	assert.LessOrEqual(t, until.Sub(after), 5*time.Second/2, "held beyond half the TTL")
	srv.Stop()
	if time.Now().Before(until) {
		require.NoError(t, a.el.Fence(etcdtest.Ctx(t), "add SA"), "a fence within the confirmed lease asked etcd")
	}
	time.Sleep(time.Until(until) + 10*time.Millisecond)
	var fe *FenceError
	require.True(t, errors.As(a.el.Fence(etcdtest.Ctx(t), "add SA"), &fe), "a fence past the confirmation passed with etcd down")
	srv.Restart()
}

// The reuse is safe: a leader that dies right after a confirmed fence is
// replaced only after the confirmation ran out, so no write it let
// through can land after the next node was elected.
func TestFenceHeldEndsBeforeTakeover(t *testing.T) {
	srv := etcdtest.Start(t)
	a, b := newNodeTTL(t, srv, "a", 5*time.Second), newNodeTTL(t, srv, "b", 5*time.Second)
	require.NoError(t, a.el.Campaign(etcdtest.Ctx(t)))
	won := campaign(t, b)
	require.NoError(t, a.el.Fence(etcdtest.Ctx(t), "add SA"))
	until := a.el.FencedUntil()
	require.False(t, until.IsZero())
	require.NoError(t, a.cli.Close()) // the keep-alives stop
	select {
	case err := <-won:
		require.NoError(t, err)
	case <-time.After(15 * time.Second):
		t.Fatal("b did not lead after a's lease ran out")
	}
	at := time.Now()
	t.Logf("a's fence held until %v before b led", at.Sub(until).Round(time.Millisecond))
	assert.True(t, at.After(until), "b led %v before a's confirmed fence ran out", until.Sub(at))
}
