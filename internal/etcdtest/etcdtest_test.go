package etcdtest_test

import (
	"context"
	"testing"
	"time"

	"github.com/stretchr/testify/require"
	clientv3 "go.etcd.io/etcd/client/v3"
	"go.etcd.io/etcd/client/v3/concurrency"

	"github.com/keyplane/keyplane/internal/etcdtest"
)

// TestClientAgainstServer: the pinned client (v3.7) works against the
// packaged server (3.4) for everything ha/ uses: KV, leases, watches and
// the concurrency package's election.
func TestClientAgainstServer(t *testing.T) {
	srv := etcdtest.Start(t)
	c := srv.Client(t)
	ctx := etcdtest.Ctx(t)

	// KV with a transaction on a key's revision.
	put, err := c.Put(ctx, "/k", "v1")
	require.NoError(t, err)
	txn, err := c.Txn(ctx).If(clientv3.Compare(clientv3.ModRevision("/k"), "=", put.Header.Revision)).
		Then(clientv3.OpPut("/k", "v2")).Commit()
	require.NoError(t, err)
	require.True(t, txn.Succeeded)
	get, err := c.Get(ctx, "/k")
	require.NoError(t, err)
	require.Equal(t, "v2", string(get.Kvs[0].Value))

	// Watch sees the next change.
	wctx, wcancel := context.WithCancel(ctx)
	defer wcancel()
	wch := c.Watch(wctx, "/k")
	_, err = c.Put(ctx, "/k", "v3")
	require.NoError(t, err)
	select {
	case wr := <-wch:
		require.NoError(t, wr.Err())
		require.Equal(t, "v3", string(wr.Events[0].Kv.Value))
	case <-time.After(5 * time.Second):
		t.Fatal("no watch event")
	}

	// Lease: a key attached to a revoked lease is gone.
	lease, err := c.Grant(ctx, 5)
	require.NoError(t, err)
	_, err = c.Put(ctx, "/leased", "x", clientv3.WithLease(lease.ID))
	require.NoError(t, err)
	_, err = c.Revoke(ctx, lease.ID)
	require.NoError(t, err)
	get, err = c.Get(ctx, "/leased")
	require.NoError(t, err)
	require.Empty(t, get.Kvs)

	// Election: the first campaigner leads, the second follows once it resigns.
	s1, err := concurrency.NewSession(c, concurrency.WithTTL(5))
	require.NoError(t, err)
	defer s1.Close()
	s2, err := concurrency.NewSession(c, concurrency.WithTTL(5))
	require.NoError(t, err)
	defer s2.Close()
	e1 := concurrency.NewElection(s1, "/elect")
	e2 := concurrency.NewElection(s2, "/elect")
	require.NoError(t, e1.Campaign(ctx, "a"))
	won := make(chan error, 1)
	go func() { won <- e2.Campaign(ctx, "b") }()
	leader, err := e1.Leader(ctx)
	require.NoError(t, err)
	require.Equal(t, "a", string(leader.Kvs[0].Value))
	require.NoError(t, e1.Resign(ctx))
	require.NoError(t, <-won)
	leader, err = e2.Leader(ctx)
	require.NoError(t, err)
	require.Equal(t, "b", string(leader.Kvs[0].Value))
}

// TestRestart: a stopped server refuses, a restarted one keeps its data.
func TestRestart(t *testing.T) {
	srv := etcdtest.Start(t)
	c := srv.Client(t)
	_, err := c.Put(etcdtest.Ctx(t), "/k", "v")
	require.NoError(t, err)
	srv.Stop()
	ctx, cancel := context.WithTimeout(context.Background(), 500*time.Millisecond)
	defer cancel()
	_, err = c.Get(ctx, "/k")
	require.Error(t, err)
	srv.Restart()
	get, err := c.Get(etcdtest.Ctx(t), "/k")
	require.NoError(t, err)
	require.Equal(t, "v", string(get.Kvs[0].Value))
}
