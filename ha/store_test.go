package ha

import (
	"bytes"
	"context"
	"errors"
	"net/netip"
	"testing"
	"time"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"

	"github.com/keyplane/keyplane/backends/nokernel"
	"github.com/keyplane/keyplane/iana"
	"github.com/keyplane/keyplane/ike"
	"github.com/keyplane/keyplane/internal/etcdtest"
	"github.com/keyplane/keyplane/kernelops"
)

func sealer(t *testing.T, b byte) *Sealer {
	s, err := NewSealer(testKey(b))
	require.NoError(t, err)
	return s
}

// The leader's records reach the standby's mirror sealed in etcd, and
// open there; deletes follow; etcd never holds them in clear.
func TestStoreMirror(t *testing.T) {
	srv := etcdtest.Start(t)
	a, b := newNode(t, srv, "a"), newNode(t, srv, "b")
	require.NoError(t, a.el.Campaign(etcdtest.Ctx(t)))
	st := NewStore(a.cli, "/kp-test/state", sealer(t, 1), a.el, DefaultLimits, nil)
	defer st.Close()
	m, err := NewMirror(etcdtest.Ctx(t), b.cli, "/kp-test/state", sealer(t, 1), DefaultLimits, nil)
	require.NoError(t, err)
	defer m.Close()

	require.NoError(t, st.Put("ike/01", []byte("secret one")))
	require.NoError(t, st.Put("ike/02", []byte("two")))
	require.NoError(t, st.Put("ike/01", []byte("secret one, changed")))
	require.NoError(t, st.Flush(etcdtest.Ctx(t)))
	raw, err := a.cli.Get(etcdtest.Ctx(t), "/kp-test/state/ike/01")
	require.NoError(t, err)
	require.Len(t, raw.Kvs, 1)
	assert.False(t, bytes.Contains(raw.Kvs[0].Value, []byte("secret")), "record in clear in etcd")

	require.NoError(t, m.WaitRev(etcdtest.Ctx(t), raw.Header.Revision))
	v, ok := m.Get("ike/01")
	require.True(t, ok)
	assert.Equal(t, "secret one, changed", string(v))
	var keys []string
	for k := range m.Records("ike/") {
		keys = append(keys, k)
	}
	assert.Equal(t, []string{"ike/01", "ike/02"}, keys)

	require.NoError(t, st.Delete("ike/02"))
	require.NoError(t, st.Flush(etcdtest.Ctx(t)))
	rev, err := a.cli.Get(etcdtest.Ctx(t), "/kp-test/state/ike/02")
	require.NoError(t, err)
	require.NoError(t, m.WaitRev(etcdtest.Ctx(t), rev.Header.Revision))
	_, ok = m.Get("ike/02")
	assert.False(t, ok)
	assert.LessOrEqual(t, st.Writes(), uint64(4), "coalesced writes")

	// A record swapped to another key in etcd (by someone with etcd
	// access but not the cluster key) is refused, not mirrored.
	_, err = a.cli.Put(etcdtest.Ctx(t), "/kp-test/state/ike/03", string(raw.Kvs[0].Value))
	require.NoError(t, err)
	put, err := a.cli.Put(etcdtest.Ctx(t), "/kp-test/state/ike/04", string(make([]byte, DefaultLimits.RecordSize+1)))
	require.NoError(t, err)
	require.NoError(t, m.WaitRev(etcdtest.Ctx(t), put.Header.Revision))
	_, ok = m.Get("ike/03")
	assert.False(t, ok)
	_, ok = m.Get("ike/04")
	assert.False(t, ok)
	last, n := m.Refused()
	assert.Equal(t, uint64(2), n)
	assert.ErrorIs(t, last, ErrTooLarge)
	var se *SizeError
	require.True(t, errors.As(last, &se))
	assert.Equal(t, "ike/04", se.Key)
}

func TestStoreLimits(t *testing.T) {
	srv := etcdtest.Start(t)
	a := newNode(t, srv, "a")
	require.NoError(t, a.el.Campaign(etcdtest.Ctx(t)))
	st := NewStore(a.cli, "/kp-test/state", sealer(t, 1), a.el, Limits{RecordSize: 128, Records: 2}, nil)
	defer st.Close()
	err := st.Put("big", make([]byte, 200))
	require.ErrorIs(t, err, ErrTooLarge)
	// The mirror's count limit: a third record is refused.
	m, err := NewMirror(etcdtest.Ctx(t), a.cli, "/kp-test/state", sealer(t, 1), Limits{RecordSize: 128, Records: 2}, nil)
	require.NoError(t, err)
	defer m.Close()
	for _, k := range []string{"r1", "r2", "r3"} {
		require.NoError(t, st.Put(k, []byte(k)))
		require.NoError(t, st.Flush(etcdtest.Ctx(t)))
	}
	get, err := a.cli.Get(etcdtest.Ctx(t), "/kp-test/state/r3")
	require.NoError(t, err)
	require.NoError(t, m.WaitRev(etcdtest.Ctx(t), get.Header.Revision))
	assert.Equal(t, 2, m.Len())
	last, _ := m.Refused()
	assert.ErrorIs(t, last, ErrTooMany)
}

// An IKE SA with 5,000 children (the largest SPIs) fits the default
// record size.
func TestStoreIKERecordWithManyChildren(t *testing.T) {
	srv := etcdtest.Start(t)
	a := newNode(t, srv, "a")
	require.NoError(t, a.el.Campaign(etcdtest.Ctx(t)))
	st := NewStore(a.cli, "/kp-test/state", sealer(t, 1), a.el, DefaultLimits, nil)
	defer st.Close()
	sink := NewSink(st, nil)
	rec := &ike.HAIKE{Conn: "gw", SPIi: 1, SPIr: 2, Keys: ike.HAIKEKeys{SKd: make([]byte, 64), SKai: make([]byte, 64),
		SKar: make([]byte, 64), SKei: make([]byte, 36), SKer: make([]byte, 36), SKpi: make([]byte, 64), SKpr: make([]byte, 64)},
		PeerID: make([]byte, 255)}
	for i := range 5000 {
		rec.Children = append(rec.Children, 0xffffffff-uint32(i))
	}
	sink.IKEChanged(rec)
	assert.Zero(t, sink.Refused(), "the IKE record with 5,000 children was refused")
	require.NoError(t, st.Flush(etcdtest.Ctx(t)))
}

// A deposed leader's store cannot write: the transaction's guard (its
// election key at its revision) fails once another node leads.
func TestStoreFencedAfterTakeover(t *testing.T) {
	srv := etcdtest.Start(t)
	a, b := newNode(t, srv, "a"), newNode(t, srv, "b")
	require.NoError(t, a.el.Campaign(etcdtest.Ctx(t)))
	st := NewStore(a.cli, "/kp-test/state", sealer(t, 1), a.el, DefaultLimits, nil)
	defer st.Close()
	require.NoError(t, st.Put("ike/01", []byte("a's")))
	require.NoError(t, st.Flush(etcdtest.Ctx(t)))
	won := campaign(t, b)
	require.NoError(t, a.el.Resign(etcdtest.Ctx(t)))
	require.NoError(t, <-won)
	require.NoError(t, st.Put("ike/01", []byte("a's, stale")))
	err := st.Flush(etcdtest.Ctx(t))
	require.ErrorIs(t, err, ErrNotLeader)
	m, err := NewMirror(etcdtest.Ctx(t), b.cli, "/kp-test/state", sealer(t, 1), DefaultLimits, nil)
	require.NoError(t, err)
	defer m.Close()
	v, _ := m.Get("ike/01")
	assert.Equal(t, "a's", string(v))
}

// The fenced dataplane: the leader installs; once it lost the lease
// (another node leads), its next SA and policy writes are refused with
// a *FenceError and the dataplane is untouched; removals still pass.
func TestFencedDataplane(t *testing.T) {
	srv := etcdtest.Start(t)
	a, b := newNode(t, srv, "a"), newNode(t, srv, "b")
	nk, err := nokernel.Open(t.Context(), kernelops.Options{})
	require.NoError(t, err)
	defer nk.Close()
	fb := NewFenced(nk.Handle, a.el)
	sad, err := kernelops.As[kernelops.SAD](fb)
	require.NoError(t, err)
	_, isFenced := sad.(*Fenced)
	require.True(t, isFenced, "As finds the fenced SAD, not the handle's")
	mk := func(spi uint32) *kernelops.SA {
		return &kernelops.SA{ID: kernelops.SAID{Src: netip.MustParseAddr("127.0.0.1"), Dst: netip.MustParseAddr("127.0.0.2"), SPI: spi, Proto: kernelops.ProtoESP},
			Mode: kernelops.ModeTunnel, ReqID: kernelops.DefaultReqIDMin + 1,
			Encryption: kernelops.Encryption{ID: iana.EncrAESGCM16, KeyBits: 128, Key: make(kernelops.Key, 20)}}
	}
	// Not elected yet: refused.
	require.ErrorIs(t, sad.AddSA(etcdtest.Ctx(t), mk(0x1000)), ErrNotLeader)
	require.NoError(t, a.el.Campaign(etcdtest.Ctx(t)))
	require.NoError(t, sad.AddSA(etcdtest.Ctx(t), mk(0x1001)))

	won := campaign(t, b)
	require.NoError(t, a.cli.Close()) // a cut off from etcd: its lease runs out
	select {
	case err := <-won:
		require.NoError(t, err)
	case <-time.After(testTTL + 6*time.Second):
		t.Fatal("b did not take over")
	}
	ctx, cancel := context.WithTimeout(context.Background(), time.Second)
	defer cancel()
	err = sad.AddSA(ctx, mk(0x1002))
	var fe *FenceError
	require.True(t, errors.As(err, &fe), "%v", err)
	assert.Equal(t, "a", fe.Node)
	_, err = nk.GetSA(ctx, mk(0x1002).ID)
	require.ErrorIs(t, err, kernelops.ErrNotFound, "refused SA reached the dataplane")
	spd, err := kernelops.As[kernelops.SPD](fb)
	require.NoError(t, err)
	require.ErrorIs(t, spd.AddPolicy(ctx, &kernelops.Policy{Dir: kernelops.DirOut, Action: kernelops.ActionBlock,
		Selector: kernelops.Selector{Src: netip.MustParsePrefix("10.0.0.0/24"), Dst: netip.MustParsePrefix("10.0.1.0/24")}}), ErrNotLeader)
	require.NoError(t, sad.DeleteSA(ctx, mk(0x1001).ID), "removal passes the fence")
}
