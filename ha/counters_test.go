package ha

import (
	"net/netip"
	"testing"
	"time"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"
	clientv3 "go.etcd.io/etcd/client/v3"
	"go.uber.org/zap"

	"github.com/keyplane/keyplane/backends/nokernel"
	"github.com/keyplane/keyplane/iana"
	"github.com/keyplane/keyplane/internal/etcdtest"
	"github.com/keyplane/keyplane/kernelops"
)

// TestCountersHold: while held (a takeover's restore), Watch sets no
// thresholds — traffic raises no sync event — and a Watch then Forget
// of another child stay in order; Release does them, and the watched
// SA's traffic is synced from then on.
func TestCountersHold(t *testing.T) {
	srv := etcdtest.Start(t)
	cli, err := clientv3.New(clientv3.Config{Endpoints: []string{srv.Endpoint()}, DialTimeout: 5 * time.Second, Logger: zap.NewNop()})
	require.NoError(t, err)
	defer cli.Close()
	el, err := NewElector(etcdtest.Ctx(t), cli, "/kp-hold", "a", testTTL)
	require.NoError(t, err)
	defer el.Close()
	require.NoError(t, el.Campaign(etcdtest.Ctx(t)))
	st := NewStore(cli, "/kp-hold/state", sealer(t, 1), el, DefaultLimits, nil)
	defer st.Close()
	nk, err := nokernel.Open(t.Context(), kernelops.Options{})
	require.NoError(t, err)
	defer nk.Close()
	a, b := netip.MustParseAddr("192.0.2.1"), netip.MustParseAddr("192.0.2.2")
	sa := func(spi uint32) *kernelops.SA {
		return &kernelops.SA{ID: kernelops.SAID{Src: b, Dst: a, SPI: spi, Proto: kernelops.ProtoESP}, Mode: kernelops.ModeTunnel,
			ReqID: kernelops.DefaultReqIDMin, ReplayWindow: 32,
			Encryption: kernelops.Encryption{ID: iana.EncrAESGCM16, KeyBits: 128, Key: make(kernelops.Key, 20)}}
	}
	in, other := sa(0x1001), sa(0x2001)
	require.NoError(t, nk.AddSA(t.Context(), in))
	require.NoError(t, nk.AddSA(t.Context(), other))
	ctr, err := NewCounters(etcdtest.Ctx(t), nk, st, kernelops.SyncThresholds{ReplayDiff: 1}, nil)
	require.NoError(t, err)
	defer ctr.Close()
	seq := uint64(0)
	send := func() {
		seq++
		r, err := nk.Inject(t.Context(), nokernel.Packet{Dir: kernelops.DirIn, SA: in.ID, Seq: seq, Len: 10})
		require.NoError(t, err)
		require.Equal(t, nokernel.Delivered, r.Verdict, r.Reason)
	}
	ctr.Hold()
	out := kernelops.SAID{Src: a, Dst: b, SPI: 0x1002, Proto: kernelops.ProtoESP}
	ctr.Watch(0x1001, in.ID, out)
	ctr.Watch(0x2001, other.ID, out)
	ctr.Forget(0x2001)
	send()
	send()
	time.Sleep(300 * time.Millisecond)
	assert.Zero(t, ctr.Synced(), "sync events while held: thresholds were set")
	ctr.Release()
	require.Eventually(t, func() bool {
		send()
		return ctr.Synced() > 0
	}, 10*time.Second, 50*time.Millisecond, "no sync event after Release")
	require.NoError(t, st.Flush(etcdtest.Ctx(t)))
	resp, err := cli.Get(etcdtest.Ctx(t), st.Path(counterKey(0x1001, kernelops.DirIn)))
	require.NoError(t, err)
	assert.Len(t, resp.Kvs, 1, "the watched child's counter record")
	assert.Zero(t, ctr.Drops())
	// The child forgotten after its Watch, while held: its traffic is not
	// written (a Forget done before its Watch would leave it watched).
	before := ctr.Synced()
	r, err := nk.Inject(t.Context(), nokernel.Packet{Dir: kernelops.DirIn, SA: other.ID, Seq: 1, Len: 10})
	require.NoError(t, err)
	require.Equal(t, nokernel.Delivered, r.Verdict, r.Reason)
	time.Sleep(300 * time.Millisecond)
	assert.Equal(t, before, ctr.Synced(), "a child forgotten while held was synced")
}
