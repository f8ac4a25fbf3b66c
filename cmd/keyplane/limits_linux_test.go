package main

import (
	"bufio"
	"bytes"
	"context"
	"encoding/json"
	"fmt"
	"net"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"syscall"
	"testing"
	"time"

	"golang.org/x/sys/unix"

	"github.com/keyplane/keyplane/ike/control"
)

// envDaemonBinary runs these tests against another keyplane binary (e.g.
// one built from an older commit, to compare).
const envDaemonBinary = "KEYPLANE_TEST_DAEMON_BINARY"

// procDaemon is `keyplane daemon` in a process of its own, so that its
// open-file limit and memory are its own.
type procDaemon struct {
	cmd    *exec.Cmd
	sock   string
	stderr *syncBuffer
	done   chan struct{} // closed when the process has exited
	err    error         // its exit status, once done is closed
}

func startProcDaemon(t *testing.T) *procDaemon {
	t.Helper()
	dir := t.TempDir()
	sock := filepath.Join(dir, "kp.sock")
	conf := filepath.Join(dir, "kp.conf")
	if err := os.WriteFile(conf, []byte(fmt.Sprintf("daemon {\n\tcontrol = %s\n}\n", sock)), 0o644); err != nil {
		t.Fatal(err)
	}
	return startProcDaemonConf(t, conf, sock)
}

// startProcDaemonConf runs the daemon on the configuration file conf,
// whose control socket is sock.
func startProcDaemonConf(t *testing.T, conf, sock string) *procDaemon {
	t.Helper()
	d := &procDaemon{sock: sock, stderr: &syncBuffer{}, done: make(chan struct{})}
	bin, args := os.Args[0], []string{"daemon", "-c", conf}
	if b := os.Getenv(envDaemonBinary); b != "" {
		bin = b
	}
	d.cmd = exec.Command(bin, args...)
	d.cmd.Env = append(os.Environ(), envAsKeyplane+"=1")
	d.cmd.Stderr = d.stderr
	if err := d.cmd.Start(); err != nil {
		t.Fatal(err)
	}
	go func() {
		d.err = d.cmd.Wait()
		close(d.done)
	}()
	t.Cleanup(func() {
		select {
		case <-d.done:
		default:
			d.cmd.Process.Kill()
			<-d.done
		}
	})
	// ike-list is answered by the engine's loop, after whatever it has
	// queued: a daemon starting 100 tunnels under -race in the emulated
	// VM on a loaded host takes many seconds to get to it.
	for deadline := time.Now().Add(60 * time.Second); ; time.Sleep(20 * time.Millisecond) {
		if _, err := d.do(5*time.Second, "ike-list"); err == nil {
			return d
		}
		if time.Now().After(deadline) {
			t.Fatalf("the daemon's control socket did not come up:\n%s", d.stderr)
		}
	}
}

func (d *procDaemon) do(timeout time.Duration, cmd string) (*control.Response, error) {
	ctx, cancel := context.WithTimeout(context.Background(), timeout)
	defer cancel()
	return (&control.Client{Path: d.sock}).Do(ctx, control.Request{Cmd: cmd})
}

// stop sends SIGTERM and returns the exit error.
func (d *procDaemon) stop(t *testing.T) error {
	t.Helper()
	d.cmd.Process.Signal(syscall.SIGTERM)
	select {
	case <-d.done:
		return d.err
	case <-time.After(20 * time.Second):
		t.Fatalf("the daemon did not stop on SIGTERM:\n%s", d.stderr)
		return nil
	}
}

func (d *procDaemon) fds(t *testing.T) int {
	t.Helper()
	ents, err := os.ReadDir(fmt.Sprintf("/proc/%d/fd", d.cmd.Process.Pid))
	if err != nil {
		t.Fatal(err)
	}
	return len(ents)
}

// rssKB reads the daemon's resident set size.
func (d *procDaemon) rssKB(t *testing.T) int {
	t.Helper()
	b, err := os.ReadFile(fmt.Sprintf("/proc/%d/status", d.cmd.Process.Pid))
	if err != nil {
		t.Fatal(err)
	}
	for _, l := range strings.Split(string(b), "\n") {
		if v, ok := strings.CutPrefix(l, "VmRSS:"); ok {
			n, err := strconv.Atoi(strings.TrimSuffix(strings.TrimSpace(v), " kB"))
			if err != nil {
				t.Fatal(err)
			}
			return n
		}
	}
	t.Fatal("no VmRSS")
	return 0
}

// The probe "open-file limit reached on the control socket": the accept
// loop exited for good, nothing was logged, and the daemon could no
// longer be reloaded or stopped through the control socket. Here the real
// daemon runs at a limit a few descriptors above what it uses; clients
// holding event streams use up the rest.
func TestDaemonAtOpenFileLimit(t *testing.T) {
	d := startProcDaemon(t)
	// The descriptors it uses at rest (the start's probe connection may
	// still be closing).
	base := d.fds(t)
	for range 50 {
		time.Sleep(20 * time.Millisecond)
		if n := d.fds(t); n == base {
			break
		} else {
			base = n
		}
	}
	const spare = 3
	lim := unix.Rlimit{Cur: uint64(base + spare), Max: uint64(base + spare)}
	if err := unix.Prlimit(d.cmd.Process.Pid, unix.RLIMIT_NOFILE, &lim, nil); err != nil {
		t.Fatalf("prlimit: %v", err)
	}
	t.Logf("daemon uses %d descriptors; RLIMIT_NOFILE set to %d", base, base+spare)
	// Event streams hold their connection open. Subscribe until one is
	// not answered: the daemon is at its limit.
	var held []net.Conn
	defer func() {
		for _, c := range held {
			c.Close()
		}
	}()
	atLimit := false
	for range spare + 10 {
		c, err := net.Dial("unix", d.sock) // queued by the kernel even when the daemon cannot accept
		if err != nil {
			t.Fatal(err)
		}
		held = append(held, c)
		c.Write([]byte(`{"cmd":"events"}` + "\n"))
		c.SetReadDeadline(time.Now().Add(2 * time.Second))
		if _, err := bufio.NewReader(c).ReadString('\n'); err != nil {
			atLimit = true
			break
		}
	}
	if !atLimit {
		t.Fatalf("%d event streams were all answered at a limit of %d descriptors", len(held), base+spare)
	}
	if _, err := d.do(time.Second, "ike-list"); err == nil {
		t.Fatal("a request was answered at the open-file limit: the test did not reach it")
	}
	if log := d.stderr.String(); !strings.Contains(log, "accept failed") || !strings.Contains(log, "too many open files") {
		t.Errorf("the accept failure is not logged:\n%s", log)
	}
	// Clients leave: descriptors free up, and the daemon serves again.
	for _, c := range held {
		c.Close()
	}
	held = nil
	start := time.Now()
	r, err := d.do(10*time.Second, "ike-list")
	if err != nil {
		t.Fatalf("after the clients left, the daemon does not answer: %v\n%s", err, d.stderr)
	}
	t.Logf("answered again %v after the clients left (%d IKE SAs)", time.Since(start), len(r.IKESAs))
	if _, err := d.do(10*time.Second, "reload"); err != nil {
		t.Errorf("reload after the limit: %v", err)
	}
	if !strings.Contains(d.stderr.String(), "accepting again") {
		t.Errorf("the recovery is not logged:\n%s", d.stderr)
	}
	if err := d.stop(t); err != nil {
		t.Errorf("daemon exit: %v\n%s", err, d.stderr)
	}
}

// The probe "50 MB control request": RSS grew from 8.8 to 280 MB and the
// 50 MB came back in the error. Now the daemon reads 64 KiB of it.
func TestDaemonBigRequestMemory(t *testing.T) {
	d := startProcDaemon(t)
	before := d.rssKB(t)
	c, err := net.Dial("unix", d.sock)
	if err != nil {
		t.Fatal(err)
	}
	defer c.Close()
	go func() {
		chunk := bytes.Repeat([]byte("A"), 1<<20)
		c.Write([]byte(`{"cmd":"initiate","name":"`))
		for range 50 {
			if _, err := c.Write(chunk); err != nil {
				return
			}
		}
		c.Write([]byte(`"}` + "\n"))
	}()
	c.SetReadDeadline(time.Now().Add(30 * time.Second))
	var reply bytes.Buffer
	if _, err := reply.ReadFrom(c); err != nil && !strings.Contains(err.Error(), "reset") {
		t.Fatalf("reading the reply: %v (%d bytes)", err, reply.Len())
	}
	time.Sleep(200 * time.Millisecond)
	after := d.rssKB(t)
	t.Logf("daemon RSS %.1f MB before, %.1f MB after a 50 MB request; reply %d bytes: %.120s",
		float64(before)/1024, float64(after)/1024, reply.Len(), reply.String())
	var resp control.Response
	if err := json.Unmarshal(reply.Bytes(), &resp); err != nil || resp.OK || !strings.Contains(resp.Error, "request too large") {
		t.Errorf("reply (%d bytes) %.200q: %v", reply.Len(), reply.String(), err)
	}
	if reply.Len() > 300 {
		t.Errorf("a %d-byte reply to a refused request", reply.Len())
	}
	if growth := after - before; growth > 16<<10 {
		t.Errorf("RSS grew by %d kB for one refused request", growth)
	}
	if _, err := d.do(5*time.Second, "ike-list"); err != nil {
		t.Errorf("after the big request: %v", err)
	}
}
