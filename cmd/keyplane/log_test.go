package main

import (
	"context"
	"encoding/json"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"

	"github.com/keyplane/keyplane/ike/control"
)

// follow runs `keyplane log` against sock until the returned stop, and
// reloads the daemon until the follower shows the reload's line (so the
// subscription is known to be in place).
func follow(t *testing.T, sock string, args ...string) (out *syncBuffer, stop func() int) {
	t.Helper()
	ctx, cancel := context.WithCancel(context.Background())
	out = &syncBuffer{}
	done := make(chan int, 1)
	go func() {
		done <- run(ctx, &env{stdout: out, stderr: &syncBuffer{}}, append([]string{"log", "-s", sock}, args...))
	}()
	deadline := time.Now().Add(10 * time.Second)
	for !strings.Contains(out.String(), "reload applied") {
		code, _, errs := runCLI(t, "reload", "-s", sock)
		require.Equal(t, 0, code, errs)
		require.False(t, time.Now().After(deadline), "the follower shows nothing: %q", out.String())
		time.Sleep(50 * time.Millisecond)
	}
	return out, func() int { cancel(); return <-done }
}

// TestLogCommand: `keyplane log` follows the daemon's log, in text and
// one JSON object per line, and ends cleanly when interrupted.
func TestLogCommand(t *testing.T) {
	p, _ := startPair(t, nil)
	west := p.sock("west")
	text, stopText := follow(t, west)
	js, stopJSON := follow(t, west, "-json")
	code, _, errs := runCLI(t, "initiate", "west-net", "-s", west, "-q")
	require.Equal(t, 0, code, errs)
	waitFor(t, "the handshake in the followed log", func() bool {
		return strings.Contains(text.String(), "CHILD SA installed") && strings.Contains(js.String(), "CHILD SA installed")
	})
	assert.Equal(t, 0, stopText())
	assert.Equal(t, 0, stopJSON())
	assert.Regexp(t, `(?m)^time=\S+ level=INFO msg="CHILD SA installed" .*child=west-net child-id=1 `, text.String())
	for _, l := range strings.Split(strings.TrimSpace(js.String()), "\n") {
		var ll control.LogLine
		require.NoError(t, json.Unmarshal([]byte(l), &ll), "not one object per line: %q", l)
		assert.Contains(t, ll.Line, "level=")
		assert.Zero(t, ll.Dropped)
	}
}

// fakeLog is a control.LogSource test double: given lines, the first
// after some were dropped.
type fakeLog struct {
	lines   chan string
	dropped []uint64
}

func (f *fakeLog) SubscribeLog() control.LogFollower { return f }
func (f *fakeLog) Lines() <-chan string              { return f.lines }
func (f *fakeLog) Close()                            {}
func (f *fakeLog) Dropped() uint64 {
	if len(f.dropped) == 0 {
		return 0
	}
	d := f.dropped[0]
	f.dropped = f.dropped[1:]
	return d
}

// A follower that fell behind is told how many lines it lost, in text
// and JSON; a daemon without a log stream says so.
func TestLogDropped(t *testing.T) {
	for _, asJSON := range []bool{false, true} {
		sock := filepath.Join(t.TempDir(), "c.sock")
		f := &fakeLog{lines: make(chan string, 2), dropped: []uint64{3, 0}}
		f.lines <- "first"
		f.lines <- "second"
		srv := &control.Server{Logs: f}
		require.NoError(t, srv.Listen(sock))
		ctx, cancel := context.WithTimeout(context.Background(), 500*time.Millisecond)
		args := []string{"log", "-s", sock}
		if asJSON {
			args = append(args, "-json")
		}
		code, out, errs := runCLIContext(ctx, args...)
		cancel()
		srv.Close()
		require.Equal(t, 0, code, errs)
		if asJSON {
			assert.Equal(t, "{\"line\":\"first\",\"dropped\":3}\n{\"line\":\"second\"}\n", out)
		} else {
			assert.Equal(t, "-- 3 log lines dropped: this command fell behind\nfirst\nsecond\n", out)
		}
	}
	sock := filepath.Join(t.TempDir(), "c.sock")
	srv := &control.Server{}
	require.NoError(t, srv.Listen(sock))
	defer srv.Close()
	code, _, errs := runCLI(t, "log", "-s", sock)
	assert.Equal(t, 1, code)
	assert.Contains(t, errs, "this daemon has no log stream")
}
