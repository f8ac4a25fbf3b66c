package control

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"path/filepath"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"

	"github.com/keyplane/keyplane/backends/nokernel"
	"github.com/keyplane/keyplane/ike"
	"github.com/keyplane/keyplane/ike/config"
	"github.com/keyplane/keyplane/kernelops"
)

// listRig is a server over an engine holding n IKE SAs in init-sent:
// connections c0..c(n-1) initiated towards a port nobody answers on.
func listRig(t *testing.T, n int) (*Server, *ike.Engine, string) {
	t.Helper()
	var src strings.Builder
	src.WriteString("daemon {\n\tretransmit_timeout = 60s\n}\nconnections {\n")
	for i := range n {
		fmt.Fprintf(&src, "\tc%d {\n\t\tlocal_addrs = 127.0.0.1\n\t\tremote_addrs = 127.0.0.1\n\t\tlocal_port = 45741\n\t\tlocal_port_nat = 45742\n"+
			"\t\tremote_port = 9\n\t\tpsk_env = PSK\n\t\tchildren {\n\t\t\tch%d {\n\t\t\t\tlocal_ts = 10.1.0.0/16\n\t\t\t\tremote_ts = 10.2.0.0/16\n\t\t\t}\n\t\t}\n\t}\n", i, i)
	}
	src.WriteString("}\n")
	cfg, err := config.Parse("l.conf", []byte(src.String()), config.Options{Getenv: func(string) (string, bool) { return "k", true }})
	require.NoError(t, err)
	b, err := nokernel.Open(t.Context(), kernelops.Options{})
	require.NoError(t, err)
	t.Cleanup(func() { b.Close() })
	e, err := ike.New(t.Context(), ike.Options{Backend: b, Config: cfg, Logger: slog.New(slog.DiscardHandler)})
	require.NoError(t, err)
	t.Cleanup(func() { e.Close() })
	// Nobody answers: an initiation stays in init-sent after its wait
	// ends. One whose wait ended before the loop took it made no SA: it
	// is tried again.
	for deadline := time.Now().Add(30 * time.Second); ; {
		sas, err := e.IKESAs(t.Context())
		require.NoError(t, err)
		if len(sas) == n {
			break
		}
		require.True(t, time.Now().Before(deadline), "%d of %d IKE SAs in init-sent", len(sas), n)
		have := map[string]bool{}
		for _, sa := range sas {
			have[sa.Name] = true
		}
		var wg sync.WaitGroup
		for i := range n {
			if have[fmt.Sprintf("c%d", i)] {
				continue
			}
			wg.Go(func() {
				ctx, cancel := context.WithTimeout(t.Context(), 3*time.Second)
				defer cancel()
				_ = e.Initiate(ctx, fmt.Sprintf("ch%d", i))
			})
		}
		wg.Wait()
	}
	s := &Server{Engine: e, Log: slog.New(slog.DiscardHandler)}
	path := filepath.Join(t.TempDir(), "kp.sock")
	require.NoError(t, s.Listen(path))
	t.Cleanup(func() { s.Close() })
	return s, e, path
}

func ids(sas []ike.IKESAInfo) []uint32 {
	out := make([]uint32, 0, len(sas))
	for _, sa := range sas {
		out = append(out, sa.ID)
	}
	return out
}

// TestListStreams: a listing longer than a batch comes whole as one
// response (Client.Do) and in batches as a stream (Client.List), the
// same IKE SAs in the order of their IDs; after and limit page it; bad
// arguments and a closed engine fail with a code.
func TestListStreams(t *testing.T) {
	const n = 2*listBatch + 44
	_, e, path := listRig(t, n)
	c := &Client{Path: path}
	ctx := t.Context()

	one, err := c.Do(ctx, Request{Cmd: "ike-list"})
	require.NoError(t, err)
	require.Len(t, one.IKESAs, n)
	all := ids(one.IKESAs)
	assert.IsIncreasing(t, all)

	var batches []*Response
	var streamed []ike.IKESAInfo
	require.NoError(t, c.List(ctx, Request{Cmd: "ike-list"}, func(r *Response) error {
		batches = append(batches, r)
		streamed = append(streamed, r.IKESAs...)
		return nil
	}))
	assert.Equal(t, all, ids(streamed))
	require.Len(t, batches, 4, "two full batches, the rest, the end")
	for i, r := range batches {
		assert.Equal(t, i < 3, r.More, "batch %d", i)
		assert.LessOrEqual(t, len(r.IKESAs), listBatch)
	}

	var page []ike.IKESAInfo
	require.NoError(t, c.List(ctx, Request{Cmd: "ike-list", Args: map[string]string{ArgAfter: fmt.Sprint(all[99]), ArgLimit: "100"}},
		func(r *Response) error { page = append(page, r.IKESAs...); return nil }))
	assert.Equal(t, all[100:200], ids(page))
	r, err := c.Do(ctx, Request{Cmd: "ike-list", Args: map[string]string{ArgAfter: fmt.Sprint(all[n-1])}})
	require.NoError(t, err)
	assert.Empty(t, r.IKESAs)

	var children int
	require.NoError(t, c.List(ctx, Request{Cmd: "child-list"}, func(r *Response) error { children += len(r.Children); return nil }))
	direct, err := e.Children(ctx)
	require.NoError(t, err)
	assert.Equal(t, len(direct), children)

	for _, args := range []map[string]string{{ArgLimit: "x"}, {ArgAfter: "-1"}, {ArgAfter: "4294967296"}, {ArgStream: "yes"}} {
		_, err := c.Do(ctx, Request{Cmd: "ike-list", Args: args})
		var de *DaemonError
		require.True(t, errors.As(err, &de), "%v: %v", args, err)
		assert.Equal(t, CodeBadRequest, de.Code, "%v", args)
	}

	require.NoError(t, e.Close())
	_, err = c.Do(ctx, Request{Cmd: "ike-list"})
	require.ErrorContains(t, err, ike.ErrClosed.Error())
	err = c.List(ctx, Request{Cmd: "child-list"}, func(*Response) error { return nil })
	require.ErrorContains(t, err, ike.ErrClosed.Error())
}

// TestListChanges: since=0 lists everything with a cursor; since that
// cursor nothing, then, after IKE SAs are deleted, the deleted ones
// (more than a batch, so in batches too), the same whole (Client.Do) as
// streamed (Client.List), each with the next cursor; an expired cursor
// is cursor_expired, bad arguments bad_request.
func TestListChanges(t *testing.T) {
	const n = 2*listBatch + 44
	_, e, path := listRig(t, n)
	c := &Client{Path: path}
	ctx := t.Context()
	since := func(cur string) map[string]string { return map[string]string{ArgSince: cur} }

	all, err := c.Do(ctx, Request{Cmd: "ike-list", Args: since("0")})
	require.NoError(t, err)
	require.Len(t, all.IKESAs, n)
	assert.IsIncreasing(t, ids(all.IKESAs))
	require.False(t, all.Cursor.IsZero())
	assert.Empty(t, all.Deleted)

	var streamed []ike.IKESAInfo
	var last *Response
	require.NoError(t, c.List(ctx, Request{Cmd: "ike-list", Args: since("0")}, func(r *Response) error {
		streamed = append(streamed, r.IKESAs...)
		last = r
		return nil
	}))
	assert.Equal(t, ids(all.IKESAs), ids(streamed))
	assert.Equal(t, all.Cursor, last.Cursor)

	quiet, err := c.Do(ctx, Request{Cmd: "child-list", Args: since(all.Cursor.String())})
	require.NoError(t, err)
	assert.Empty(t, quiet.Children)
	assert.Empty(t, quiet.Deleted)
	assert.Equal(t, all.Cursor, quiet.Cursor)

	// Delete more than a batch of them.
	gone := ids(all.IKESAs)[:listBatch+10]
	for _, id := range gone {
		require.NoError(t, e.TerminateIKESA(ctx, id))
	}
	// And one made again (no answer comes: it stays in init-sent).
	// Initiate waits for an outcome, so it runs aside until the test
	// ends; the listing is read until the new SA is in it (a deadline
	// on Initiate itself could pass, on a loaded machine, before the
	// loop took the request, which then never ran).
	ictx, cancel := context.WithCancel(ctx)
	defer cancel()
	go func() { _ = e.Initiate(ictx, "ch0") }()
	var one *Response
	require.Eventually(t, func() bool {
		r, err := c.Do(ctx, Request{Cmd: "ike-list", Args: since(all.Cursor.String())})
		if err != nil || len(r.IKESAs) == 0 {
			return false
		}
		one = r
		return true
	}, 10*time.Second, 20*time.Millisecond, "the new one listed")
	require.Len(t, one.IKESAs, 1, "the new one")
	assert.Equal(t, "c0", one.IKESAs[0].Name)
	assert.NotContains(t, gone, one.IKESAs[0].ID)
	var goneIDs []uint32
	for _, d := range one.Deleted {
		assert.Zero(t, d.ChildID)
		goneIDs = append(goneIDs, d.IKEID)
	}
	assert.ElementsMatch(t, gone, goneIDs)
	var batches, deleted int
	var next ike.Cursor
	var listed int
	require.NoError(t, c.List(ctx, Request{Cmd: "ike-list", Args: since(all.Cursor.String())}, func(r *Response) error {
		batches++
		listed += len(r.IKESAs)
		deleted += len(r.Deleted)
		assert.LessOrEqual(t, len(r.Deleted), listBatch)
		next = r.Cursor
		return nil
	}))
	assert.Equal(t, len(gone), deleted)
	assert.Equal(t, 1, listed)
	assert.Equal(t, 4, batches, "the new one, a full batch of deleted ones, the rest, the end")
	assert.Equal(t, one.Cursor, next)
	// The children: an IKE SA in init-sent lists none, so none is gone.
	require.Empty(t, all.IKESAs[0].Children)
	kids, err := c.Do(ctx, Request{Cmd: "child-list", Args: since(all.Cursor.String())})
	require.NoError(t, err)
	assert.Empty(t, kids.Deleted)
	assert.Equal(t, one.Cursor, kids.Cursor)

	// Bad arguments, and a cursor ahead of the engine.
	for _, args := range []map[string]string{
		since(""), since("x"), since("1"), since("0.1"),
		{ArgSince: "0", ArgAfter: "5"}, {ArgSince: "0", ArgLimit: "5"},
		{ArgCounters: "1"}, {ArgSince: "0", ArgCounters: "yes"},
	} {
		_, err := c.Do(ctx, Request{Cmd: "ike-list", Args: args})
		var de *DaemonError
		require.True(t, errors.As(err, &de), "%v: %v", args, err)
		assert.Equal(t, CodeBadRequest, de.Code, "%v", args)
	}
	ahead := all.Cursor.String() + "0"
	_, err = c.Do(ctx, Request{Cmd: "ike-list", Args: since(ahead)})
	require.ErrorIs(t, err, ike.ErrCursorExpired)
	var de *DaemonError
	require.True(t, errors.As(err, &de))
	assert.Equal(t, CodeCursorExpired, de.Code)
	err = c.List(ctx, Request{Cmd: "child-list", Args: since(ahead)}, func(*Response) error { return nil })
	require.ErrorIs(t, err, ike.ErrCursorExpired)
	_, err = c.Do(ctx, Request{Cmd: "child-list", Args: map[string]string{ArgSince: "0", ArgCounters: "1"}})
	require.NoError(t, err)
}
