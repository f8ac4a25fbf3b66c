package ha

import (
	"runtime"
	"testing"
	"time"

	"github.com/stretchr/testify/require"
	clientv3 "go.etcd.io/etcd/client/v3"
	"go.uber.org/zap"

	"github.com/keyplane/keyplane/backends/nokernel"
	"github.com/keyplane/keyplane/internal/etcdtest"
	"github.com/keyplane/keyplane/kernelops"
)

// TestNoGoroutineLeak: an elector, store, mirror and counter sync, used
// and closed with their client, leave no goroutine behind.
func TestNoGoroutineLeak(t *testing.T) {
	srv := etcdtest.Start(t)
	nk, err := nokernel.Open(t.Context(), kernelops.Options{})
	require.NoError(t, err)
	defer nk.Close()
	settle := func() int {
		var n int
		for range 50 {
			runtime.GC()
			n = runtime.NumGoroutine()
			time.Sleep(20 * time.Millisecond)
			if n == runtime.NumGoroutine() {
				break
			}
		}
		return n
	}
	before := settle()
	for range 3 {
		cli, err := clientv3.New(clientv3.Config{Endpoints: []string{srv.Endpoint()}, DialTimeout: 5 * time.Second, Logger: zap.NewNop()})
		require.NoError(t, err)
		el, err := NewElector(etcdtest.Ctx(t), cli, "/kp-leak", "a", testTTL)
		require.NoError(t, err)
		require.NoError(t, el.Campaign(etcdtest.Ctx(t)))
		obs := el.Observe(etcdtest.Ctx(t))
		<-obs
		st := NewStore(cli, "/kp-leak/state", sealer(t, 1), el, DefaultLimits, nil)
		m, err := NewMirror(etcdtest.Ctx(t), cli, "/kp-leak/state", sealer(t, 1), DefaultLimits, nil)
		require.NoError(t, err)
		ctr, err := NewCounters(etcdtest.Ctx(t), nk, st, kernelops.SyncThresholds{ReplayDiff: 1}, nil)
		require.NoError(t, err)
		require.NoError(t, st.Put("r", []byte("v")))
		require.NoError(t, st.Flush(etcdtest.Ctx(t)))
		require.NoError(t, ctr.Close())
		require.NoError(t, m.Close())
		require.NoError(t, st.Close())
		require.NoError(t, el.Close())
		require.NoError(t, cli.Close())
	}
	ok := false
	for range 50 {
		if settle() <= before {
			ok = true
			break
		}
		time.Sleep(100 * time.Millisecond)
	}
	if !ok {
		buf := make([]byte, 1<<20)
		t.Fatalf("goroutines: %d before, %d after:\n%s", before, runtime.NumGoroutine(), buf[:runtime.Stack(buf, true)])
	}
}
