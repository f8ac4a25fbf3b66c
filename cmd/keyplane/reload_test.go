package main

import (
	"bytes"
	"context"
	"fmt"
	"net"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"testing"
	"time"
)

// syncBuffer is a daemon's stderr, written by its goroutines while the
// test reads it.
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

// testDaemon is `keyplane daemon` run in this process.
type testDaemon struct {
	dir, conf, sock string
	stderr          *syncBuffer
	stop            func() int
}

// reloadConf: one connection on free loopback ports; extra is appended
// inside connections { }.
const reloadConf = `daemon {
	control = %s
	log_level = %s
}
connections {
	c1 {
		local_addrs = 127.0.0.1
		remote_addrs = 127.0.0.1
		local_port = %d
		local_port_nat = %d
		remote_port = 9
		psk_file = k.psk
		children {
			n1 {
				local_ts = 10.1.0.0/16
				remote_ts = 10.2.0.0/16
			}
		}
	}
%s
}
`

func (d *testDaemon) write(t *testing.T, level string, ports []int, extra string) {
	t.Helper()
	text := fmt.Sprintf(reloadConf, d.sock, level, ports[0], ports[1], extra)
	if err := os.WriteFile(d.conf, []byte(text), 0o644); err != nil {
		t.Fatal(err)
	}
}

// startDaemon writes the key and starts the daemon on d.conf (already
// written) with args; it waits for the control socket.
func startDaemon(t *testing.T, d *testDaemon, args ...string) {
	t.Helper()
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan int, 1)
	go func() {
		done <- run(ctx, &env{stdout: &bytes.Buffer{}, stderr: d.stderr}, append([]string{"daemon", "-c", d.conf}, args...))
	}()
	d.stop = func() int {
		cancel()
		return <-done
	}
	t.Cleanup(func() {
		if d.stop != nil {
			d.stop()
		}
	})
	for deadline := time.Now().Add(10 * time.Second); ; time.Sleep(20 * time.Millisecond) {
		if code, _, _ := runCLI(t, "ike", "list", "-s", d.sock); code == 0 {
			return
		}
		select {
		case code := <-done:
			t.Fatalf("daemon exited %d:\n%s", code, d.stderr)
		default:
		}
		if time.Now().After(deadline) {
			t.Fatalf("the daemon's control socket did not come up:\n%s", d.stderr)
		}
	}
}

func newTestDaemon(t *testing.T) *testDaemon {
	t.Helper()
	dir := t.TempDir()
	if err := os.WriteFile(filepath.Join(dir, "k.psk"), []byte("a reload test secret, long enough\n"), 0o600); err != nil {
		t.Fatal(err)
	}
	return &testDaemon{dir: dir, conf: filepath.Join(dir, "kp.conf"), sock: filepath.Join(dir, "kp.sock"), stderr: &syncBuffer{}}
}

// The probe "a refused reload whose file sets log_level": the level
// changed anyway, and the -log-level override was lost.
func TestReloadAllOrNothing(t *testing.T) {
	ports, err := freeUDPPorts(2)
	if err != nil {
		t.Fatal(err)
	}
	// A port the new file wants and cannot have: the engine refuses it.
	held, err := net.ListenPacket("udp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	defer held.Close()
	heldPort := held.LocalAddr().(*net.UDPAddr).Port
	c2 := fmt.Sprintf("\tc2 {\n\t\tlocal_addrs = 127.0.0.1\n\t\tremote_addrs = 127.0.0.2\n\t\tlocal_port = %d\n\t\tlocal_port_nat = %d\n\t\tpsk_file = k.psk\n\t\tchildren {\n\t\t\tn2 {\n\t\t\t}\n\t\t}\n\t}", heldPort, ports[1]+1)

	t.Run("refused reload changes nothing", func(t *testing.T) {
		d := newTestDaemon(t)
		d.write(t, "info", ports, "")
		startDaemon(t, d)
		d.write(t, "debug", ports, c2)
		code, _, errs := runCLI(t, "reload", "-s", d.sock)
		if code == 0 || !strings.Contains(errs, "reload refused") || !strings.Contains(errs, fmt.Sprint(heldPort)) {
			t.Fatalf("reload of a file the engine refuses: exit %d, %s", code, errs)
		}
		runCLI(t, "ike", "list", "-s", d.sock) // logged at debug, if debug were on
		if strings.Contains(d.stderr.String(), "level=DEBUG") {
			t.Errorf("a refused reload changed the log level:\n%s", d.stderr)
		}
		// The probe "psk_file = /dev/urandom at reload" (an unbounded
		// read that would kill the running daemon): refused at once.
		d.write(t, "info", ports, "")
		text, _ := os.ReadFile(d.conf)
		if err := os.WriteFile(d.conf, bytes.Replace(text, []byte("k.psk"), []byte("/dev/urandom"), 1), 0o644); err != nil {
			t.Fatal(err)
		}
		code, _, errs = runCLI(t, "reload", "-s", d.sock)
		if code == 0 || !strings.Contains(errs, "/dev/urandom: not a regular file") {
			t.Errorf("reload with psk_file = /dev/urandom: exit %d, %s", code, errs)
		}
		// A 1-byte key is accepted with a warning in the log.
		if err := os.WriteFile(filepath.Join(d.dir, "short.psk"), []byte("x"), 0o600); err != nil {
			t.Fatal(err)
		}
		if err := os.WriteFile(d.conf, bytes.Replace(text, []byte("k.psk"), []byte("short.psk"), 1), 0o644); err != nil {
			t.Fatal(err)
		}
		if code, _, errs := runCLI(t, "reload", "-s", d.sock); code != 0 ||
			!strings.Contains(d.stderr.String(), "psk_file: the pre-shared key is 1 bytes, shorter than 16") {
			t.Errorf("reload with a 1-byte key: exit %d, %s; log:\n%s", code, errs, d.stderr)
		}
		// The same file without c2 is accepted, and then its level applies.
		d.write(t, "debug", ports, "")
		code, out, errs := runCLI(t, "reload", "-s", d.sock)
		if code != 0 || !strings.Contains(out, "log level DEBUG (from daemon.log_level)") {
			t.Fatalf("reload: exit %d, %q, %s", code, out, errs)
		}
		runCLI(t, "ike", "list", "-s", d.sock)
		if !strings.Contains(d.stderr.String(), "level=DEBUG msg=\"control request\" cmd=ike-list") {
			t.Errorf("an accepted reload did not apply log_level = debug:\n%s", d.stderr)
		}
		if code := d.stop(); code != 0 {
			t.Errorf("daemon exited %d", code)
		}
		d.stop = nil
	})

	t.Run("-log-level survives reloads", func(t *testing.T) {
		d := newTestDaemon(t)
		d.write(t, "debug", ports, "")
		startDaemon(t, d, "-log-level", "warn")
		for _, level := range []string{"debug", "info"} {
			d.write(t, level, ports, "")
			code, out, errs := runCLI(t, "reload", "-s", d.sock)
			if code != 0 || !strings.Contains(out, "log level WARN (from -log-level)") {
				t.Fatalf("reload (log_level = %s): exit %d, %q, %s", level, code, out, errs)
			}
		}
		d.write(t, "debug", ports, c2)
		if code, _, _ := runCLI(t, "reload", "-s", d.sock); code == 0 {
			t.Error("the reload with c2 was accepted")
		}
		runCLI(t, "ike", "list", "-s", d.sock)
		for _, l := range []string{"level=DEBUG", "level=INFO"} {
			if strings.Contains(d.stderr.String(), l) {
				t.Errorf("-log-level warn, yet %s lines:\n%s", l, d.stderr)
			}
		}
		if !strings.Contains(d.stderr.String(), "level=ERROR msg=\"reload refused; the running configuration is kept\"") {
			t.Errorf("the refused reload is not logged:\n%s", d.stderr)
		}
	})
}
