package control

import (
	"bufio"
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"io/fs"
	"log/slog"
	"net"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"

	"github.com/keyplane/keyplane/backends/nokernel"
	"github.com/keyplane/keyplane/ike"
	"github.com/keyplane/keyplane/ike/config"
	"github.com/keyplane/keyplane/kernelops"
)

// syncBuffer is a log sink safe for the server's goroutines.
type syncBuffer struct {
	mu sync.Mutex
	b  bytes.Buffer
}

func (s *syncBuffer) Write(p []byte) (int, error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.b.Write(p)
}

func (s *syncBuffer) String() string {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.b.String()
}

type rig struct {
	srv  *Server
	eng  *ike.Engine
	nk   *nokernel.Backend
	path string
	log  *syncBuffer
}

// newRig runs a server over a real engine (no connections) on a nokernel
// dataplane, with limits lim. ln, when given, replaces the unix listener.
func newRig(t *testing.T, lim Limits, ln net.Listener) *rig {
	t.Helper()
	cfg, err := config.Parse("empty.conf", nil, config.Options{})
	if err != nil {
		t.Fatal(err)
	}
	b, err := nokernel.Open(t.Context(), kernelops.Options{})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { b.Close() })
	e, err := ike.New(t.Context(), ike.Options{Backend: b, Config: cfg, Logger: slog.New(slog.DiscardHandler)})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { e.Close() })
	r := &rig{eng: e, nk: b, log: &syncBuffer{}}
	r.srv = &Server{Engine: e, Limits: lim, Log: slog.New(slog.NewTextHandler(r.log, &slog.HandlerOptions{Level: slog.LevelDebug})),
		Describe: func(ev kernelops.Event) string { return ev.Kind().String() }}
	if ln == nil {
		r.path = filepath.Join(t.TempDir(), "kp.sock")
		if err := r.srv.Listen(r.path); err != nil {
			t.Fatal(err)
		}
	} else {
		r.path = ln.Addr().String()
		r.srv.Start(ln)
	}
	t.Cleanup(func() { r.srv.Close() })
	return r
}

func (r *rig) dial(t *testing.T) net.Conn {
	t.Helper()
	c, err := net.Dial("unix", r.path)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { c.Close() })
	return c
}

func (r *rig) do(t *testing.T, req Request) (*Response, error) {
	t.Helper()
	ctx, cancel := context.WithTimeout(t.Context(), 10*time.Second)
	defer cancel()
	return (&Client{Path: r.path}).Do(ctx, req)
}

// readAll reads c until EOF, failing after d.
func readAll(t *testing.T, c net.Conn, d time.Duration) string {
	t.Helper()
	_ = c.SetReadDeadline(time.Now().Add(d))
	b, err := io.ReadAll(c)
	if err != nil && !errors.Is(err, syscall.ECONNRESET) {
		t.Fatalf("the server did not close the connection within %v: %v (read %d bytes)", d, err, len(b))
	}
	return string(b)
}

func waitFor(t *testing.T, what string, f func() bool) {
	t.Helper()
	for deadline := time.Now().Add(10 * time.Second); !f(); time.Sleep(10 * time.Millisecond) {
		if time.Now().After(deadline) {
			t.Fatalf("timed out waiting for %s", what)
		}
	}
}

func TestDecidePath(t *testing.T) {
	refused := syscall.ECONNREFUSED
	for _, c := range []struct {
		name    string
		exists  bool
		mode    fs.FileMode
		dialErr error
		act     pathAction
		err     error
	}{
		{"nothing there", false, 0, nil, bindPath, nil},
		{"stale socket", true, fs.ModeSocket | 0o600, &net.OpError{Op: "dial", Err: &os.SyscallError{Syscall: "connect", Err: refused}}, removeThen, nil},
		{"live socket", true, fs.ModeSocket | 0o600, nil, refuse, ErrInUse},
		{"socket with a full backlog", true, fs.ModeSocket, syscall.EAGAIN, refuse, syscall.EAGAIN},
		{"socket we may not connect to", true, fs.ModeSocket, syscall.EACCES, refuse, syscall.EACCES},
		{"regular file", true, 0o644, nil, refuse, ErrNotSocket},
		{"directory", true, fs.ModeDir | 0o755, nil, refuse, ErrNotSocket},
		{"symbolic link", true, fs.ModeSymlink | 0o777, nil, refuse, ErrNotSocket},
		{"named pipe", true, fs.ModeNamedPipe | 0o600, refused, refuse, ErrNotSocket},
	} {
		act, err := decidePath(c.exists, c.mode, c.dialErr)
		if act != c.act || !errors.Is(err, c.err) || (c.err == nil) != (err == nil) {
			t.Errorf("%s: %v, %v; want %v, %v", c.name, act, err, c.act, c.err)
		}
	}
}

// The probe "control = an existing regular file": it was deleted. Now it,
// and everything else that is not a stale socket, stays and the server
// refuses to start.
func TestListenLeavesWhatIsNotAStaleSocket(t *testing.T) {
	dir := t.TempDir()
	file := filepath.Join(dir, "precious")
	if err := os.WriteFile(file, []byte("do not delete"), 0o644); err != nil {
		t.Fatal(err)
	}
	subdir := filepath.Join(dir, "adir")
	if err := os.Mkdir(subdir, 0o755); err != nil {
		t.Fatal(err)
	}
	// A symbolic link to a stale socket is still not ours to delete.
	stale := filepath.Join(dir, "stale.sock")
	ln, err := net.Listen("unix", stale)
	if err != nil {
		t.Fatal(err)
	}
	ln.(*net.UnixListener).SetUnlinkOnClose(false)
	ln.Close()
	link := filepath.Join(dir, "link.sock")
	if err := os.Symlink(stale, link); err != nil {
		t.Fatal(err)
	}
	for _, p := range []string{file, subdir, link} {
		err := (&Server{}).Listen(p)
		if !errors.Is(err, ErrNotSocket) || !strings.Contains(err.Error(), p) {
			t.Errorf("Listen(%s) = %v, want ErrNotSocket naming the path", p, err)
		}
	}
	if b, err := os.ReadFile(file); err != nil || string(b) != "do not delete" {
		t.Errorf("the regular file was touched: %q, %v", b, err)
	}
	if fi, err := os.Lstat(link); err != nil || fi.Mode()&fs.ModeSymlink == 0 {
		t.Errorf("the symbolic link was touched: %v", err)
	}
	// The stale socket itself is replaced.
	r := &Server{Engine: newRig(t, Limits{}, nil).eng}
	if err := r.Listen(stale); err != nil {
		t.Fatalf("Listen over a stale socket: %v", err)
	}
	defer r.Close()
	if err := (&Server{}).Listen(stale); !errors.Is(err, ErrInUse) {
		t.Errorf("Listen over a live socket: %v, want ErrInUse", err)
	}
}

func TestListenModes(t *testing.T) {
	base := t.TempDir()
	if err := os.Chmod(base, 0o755); err != nil {
		t.Fatal(err)
	}
	path := filepath.Join(base, "run", "keyplane", "kp.sock")
	old := syscall.Umask(0) // the worst an operator could leave
	defer syscall.Umask(old)
	s := &Server{Engine: newRig(t, Limits{}, nil).eng}
	if err := s.Listen(path); err != nil {
		t.Fatal(err)
	}
	defer s.Close()
	for _, c := range []struct {
		path string
		mode fs.FileMode
	}{
		{filepath.Join(base, "run"), 0o700},
		{filepath.Dir(path), 0o700},
		{path, 0o600},
		{base, 0o755}, // an existing directory keeps its mode
	} {
		fi, err := os.Lstat(c.path)
		if err != nil || fi.Mode().Perm() != c.mode {
			t.Errorf("%s: mode %v, %v; want %#o", c.path, fi.Mode().Perm(), err, c.mode)
		}
	}
	if got := syscall.Umask(old); got != 0 {
		t.Errorf("Listen left the umask at %#o", got)
	}
	syscall.Umask(0)
}

// The probes "50 MB control request" (echoed back, RSS +270 MB) and "an
// unterminated request" (held forever).
func TestRequestLimits(t *testing.T) {
	r := newRig(t, Limits{MaxRequest: 4096, ReadTimeout: 300 * time.Millisecond}, nil)

	t.Run("50 MB request", func(t *testing.T) {
		c := r.dial(t)
		go func() {
			chunk := bytes.Repeat([]byte("A"), 64<<10)
			c.Write([]byte(`{"cmd":"`))
			for range 50 << 20 / len(chunk) {
				if _, err := c.Write(chunk); err != nil {
					return
				}
			}
		}()
		reply := readAll(t, c, 10*time.Second)
		if len(reply) > 300 || !strings.Contains(reply, "request too large") || strings.Contains(reply, "AAAA") {
			t.Errorf("reply (%d bytes): %.300q", len(reply), reply)
		}
	})
	t.Run("through the client", func(t *testing.T) {
		// Time enough to encode it (the deadline is for the whole request).
		r := newRig(t, Limits{MaxRequest: 4096, ReadTimeout: 10 * time.Second}, nil)
		_, err := r.do(t, Request{Cmd: "initiate", Name: strings.Repeat("n", 10<<20)})
		if err == nil || !strings.Contains(err.Error(), "request too large") || len(err.Error()) > 300 {
			t.Errorf("%.300v", err)
		}
	})
	t.Run("unterminated", func(t *testing.T) {
		c := r.dial(t)
		if _, err := c.Write([]byte(`{"cmd":"ike-list"`)); err != nil {
			t.Fatal(err)
		}
		start := time.Now()
		reply := readAll(t, c, 5*time.Second)
		if !strings.Contains(reply, "not received in time") {
			t.Errorf("reply %q", reply)
		}
		if d := time.Since(start); d > 3*time.Second {
			t.Errorf("held %v", d)
		}
	})
	t.Run("silent client", func(t *testing.T) {
		c := r.dial(t)
		if reply := readAll(t, c, 5*time.Second); !strings.Contains(reply, "not received in time") {
			t.Errorf("reply %q", reply)
		}
	})
	t.Run("error replies stay short", func(t *testing.T) {
		long := strings.Repeat("x", 3000)
		for _, req := range []string{
			`{"cmd":"` + long + `"}`,
			`{"cmd":"initiate","name":"` + long + `"}`,
			`{"cmd":"x","args":{"` + long + `":"v"}}`,
			`{"cmd":"x","args":{"k":"` + long + `"}}`,
			`{"cmd":["` + long + `"]}`,
			`{"cmd":"x","args":{"` + long + `":1}}`,
			`{"cmd":"x", ` + long + `}`,
		} {
			c := r.dial(t)
			c.Write([]byte(req))
			reply := readAll(t, c, 5*time.Second)
			if len(reply) > 300 || strings.Contains(reply, "xxxxxxxxxx") || !strings.Contains(reply, "bad request") {
				t.Errorf("request %.40q...: reply (%d bytes) %.300q", req, len(reply), reply)
			}
		}
	})
	// A good request still works, and nothing was left open.
	if _, err := r.do(t, Request{Cmd: "ike-list"}); err != nil {
		t.Fatal(err)
	}
	waitFor(t, "every connection to end", func() bool { n, _ := r.srv.Clients(); return n == 0 })
}

// failingListener is a test double: a real listener whose Accept first
// fails n times with err, as at the open-file limit.
type failingListener struct {
	net.Listener
	mu  sync.Mutex
	n   int
	err error
}

func (l *failingListener) Accept() (net.Conn, error) {
	l.mu.Lock()
	if l.n > 0 {
		l.n--
		l.mu.Unlock()
		return nil, l.err
	}
	l.mu.Unlock()
	return l.Listener.Accept()
}

// The probe "open-file limit reached on the control socket": the accept
// loop exited for good, silently. (cmd/keyplane runs the real daemon at
// a low RLIMIT_NOFILE; this is the loop's own contract.)
func TestAcceptKeepsGoing(t *testing.T) {
	path := filepath.Join(t.TempDir(), "kp.sock")
	real, err := net.Listen("unix", path)
	if err != nil {
		t.Fatal(err)
	}
	emfile := &net.OpError{Op: "accept", Net: "unix", Err: os.NewSyscallError("accept4", syscall.EMFILE)}
	r := newRig(t, Limits{}, &failingListener{Listener: real, n: 10, err: emfile})
	start := time.Now()
	if _, err := r.do(t, Request{Cmd: "ike-list"}); err != nil {
		t.Fatalf("after 10 failed accepts: %v", err)
	}
	t.Logf("served after 10 failed accepts in %v", time.Since(start))
	log := r.log.String()
	if n := strings.Count(log, "accept failed"); n < 1 || n > 4 {
		t.Errorf("%d 'accept failed' lines for 10 failures (want the first, then about one a second):\n%s", n, log)
	}
	if !strings.Contains(log, "too many open files") || !strings.Contains(log, "accepting again") || !strings.Contains(log, "failed-accepts=10") {
		t.Errorf("log:\n%s", log)
	}
}

func TestAcceptDelay(t *testing.T) {
	for n, want := range map[int]time.Duration{1: 5 * time.Millisecond, 2: 10 * time.Millisecond, 3: 20 * time.Millisecond,
		8: 640 * time.Millisecond, 9: time.Second, 100: time.Second} {
		if got := acceptDelay(n); got != want {
			t.Errorf("acceptDelay(%d) = %v, want %v", n, got, want)
		}
	}
}

func TestClientCap(t *testing.T) {
	r := newRig(t, Limits{MaxClients: 2}, nil)
	a, b := r.dial(t), r.dial(t)
	waitFor(t, "two clients", func() bool { n, _ := r.srv.Clients(); return n == 2 })
	_, err := r.do(t, Request{Cmd: "ike-list"})
	if err == nil || !strings.Contains(err.Error(), "too many control clients (2)") {
		t.Fatalf("a third client: %v", err)
	}
	start := time.Now()
	for range 20 {
		r.do(t, Request{Cmd: "ike-list"})
	}
	// One line a second at most.
	if n, max := strings.Count(r.log.String(), "too many clients"), 1+int(time.Since(start)/time.Second); n < 1 || n > max {
		t.Errorf("%d log lines for 21 refused clients in %v, want 1 to %d:\n%s", n, time.Since(start), max, r.log)
	}
	a.Close()
	waitFor(t, "one client", func() bool { n, _ := r.srv.Clients(); return n == 1 })
	if _, err := r.do(t, Request{Cmd: "ike-list"}); err != nil {
		t.Errorf("after one left: %v", err)
	}
	b.Close()
}

func TestSubscriberCap(t *testing.T) {
	r := newRig(t, Limits{MaxSubscribers: 1}, nil)
	ctx, cancel := context.WithCancel(t.Context())
	done := make(chan error, 1)
	go func() { done <- (&Client{Path: r.path}).Events(ctx, func(json.RawMessage) error { return nil }) }()
	waitFor(t, "one subscriber", func() bool { _, s := r.srv.Clients(); return s == 1 })
	err := (&Client{Path: r.path}).Events(t.Context(), func(json.RawMessage) error { return nil })
	if err == nil || !strings.Contains(err.Error(), "too many event subscribers (1)") {
		t.Errorf("a second subscriber: %v", err)
	}
	if _, err := r.do(t, Request{Cmd: "ike-list"}); err != nil {
		t.Errorf("requests while the subscribers are full: %v", err)
	}
	cancel()
	if err := <-done; err != nil {
		t.Errorf("first subscriber: %v", err)
	}
	waitFor(t, "no subscriber", func() bool { _, s := r.srv.Clients(); return s == 0 })
}

// flood raises n link events in the nokernel dataplane.
func flood(t *testing.T, nk *nokernel.Backend, n int) {
	t.Helper()
	if _, err := nk.Net().AddInterface("flood0"); err != nil {
		t.Fatal(err)
	}
	for i := range n {
		if err := nk.Net().SetLinkUp("flood0", i%2 == 1); err != nil {
			t.Fatal(err)
		}
	}
}

// A subscriber that stops reading is dropped after the write timeout; the
// engine answers meanwhile.
func TestStalledSubscriberDropped(t *testing.T) {
	r := newRig(t, Limits{WriteTimeout: 300 * time.Millisecond}, nil)
	c := r.dial(t)
	if _, err := c.Write([]byte(`{"cmd":"events"}` + "\n")); err != nil {
		t.Fatal(err)
	}
	br := bufio.NewReader(c)
	if line, err := br.ReadString('\n'); err != nil || !strings.Contains(line, "streaming events") {
		t.Fatalf("first line %q, %v", line, err)
	}
	flood(t, r.nk, 20000) // far beyond the socket's buffer; nobody reads
	start := time.Now()
	if _, err := r.eng.IKESAs(t.Context()); err != nil {
		t.Fatal(err)
	}
	if d := time.Since(start); d > time.Second {
		t.Errorf("the engine took %v to answer during the stall", d)
	}
	waitFor(t, "the subscriber to be dropped", func() bool { _, s := r.srv.Clients(); return s == 0 })
	_ = c.SetReadDeadline(time.Now().Add(5 * time.Second))
	if _, err := io.Copy(io.Discard, br); err != nil {
		t.Errorf("the stream did not end: %v", err)
	}
	if !strings.Contains(r.log.String(), "subscriber dropped") {
		t.Errorf("log:\n%s", r.log)
	}
}

// A subscriber that reads, but slower than events come, loses events:
// it gets the overrun event, an error, and is disconnected, and the CLI
// client reports the error.
func TestLaggingSubscriberGetsOverrun(t *testing.T) {
	r := newRig(t, Limits{}, nil)
	started := make(chan struct{})
	var events []string
	done := make(chan error, 1)
	go func() {
		first := true
		done <- (&Client{Path: r.path}).Events(t.Context(), func(raw json.RawMessage) error {
			if first {
				first = false
				close(started)
			}
			events = append(events, string(raw))
			time.Sleep(time.Millisecond)
			return nil
		})
	}()
	waitFor(t, "one subscriber", func() bool { _, s := r.srv.Clients(); return s == 1 })
	flood(t, r.nk, 40000)
	var err error
	select {
	case err = <-done:
	case <-time.After(60 * time.Second):
		t.Fatal("the lagging subscriber was never told")
	}
	if err == nil || !strings.Contains(err.Error(), "events lost") {
		t.Fatalf("Events = %v", err)
	}
	if last := events[len(events)-1]; !strings.Contains(last, "overrun") {
		t.Errorf("last event before the error: %s", last)
	}
	t.Logf("%d events before the overrun", len(events))
	waitFor(t, "no subscriber", func() bool { _, s := r.srv.Clients(); return s == 0 })
}

func TestDecodeRequest(t *testing.T) {
	long := strings.Repeat("z", 300)
	for _, c := range []struct {
		in   string
		want error
	}{
		{`{"cmd":"ike-list"}`, nil},
		{`{"cmd":"traffic","name":"net-1","args":{"dir":"out","packets":"10"}}` + "\n", nil},
		{`{"cmd":"ike-list"} trailing ignored`, nil},
		{``, ErrBadRequest},
		{`{"cmd":`, ErrBadRequest},
		{`[]`, ErrBadRequest},
		{`{}`, ErrBadRequest},
		{`{"cmd":"IKE-LIST"}`, ErrBadRequest},
		{`{"cmd":"a b"}`, ErrBadRequest},
		{`{"cmd":"x","name":"a\nb"}`, ErrBadRequest},
		{`{"cmd":"x","name":"` + long + `"}`, ErrBadRequest},
		{`{"cmd":"x","args":{"":"v"}}`, ErrBadRequest},
		{`{"cmd":"x","args":{"k":1}}`, ErrBadRequest},
		{`{"cmd":"` + strings.Repeat("a", 2000) + `"}`, ErrRequestTooLarge},
		{`{"cmd":"x","args":{` + strings.Repeat(`"k":"v",`, 40) + `"k2":"v"}}`, nil}, // one key, repeated
	} {
		req, err := DecodeRequest(strings.NewReader(c.in), 1024)
		if !errors.Is(err, c.want) || (c.want == nil) != (err == nil) {
			t.Errorf("%.60q: %+v, %v; want %v", c.in, req, err, c.want)
		}
		if err != nil && len(err.Error()) > 300 {
			t.Errorf("%.60q: a %d-byte error", c.in, len(err.Error()))
		}
	}
	var args strings.Builder
	for i := range 33 {
		fmt.Fprintf(&args, `"k%d":"v",`, i)
	}
	if _, err := DecodeRequest(strings.NewReader(`{"cmd":"x","args":{`+args.String()+`"z":"v"}}`), 4096); !errors.Is(err, ErrBadRequest) {
		t.Errorf("34 args: %v", err)
	}
}
