package swan

import (
	"context"
	"fmt"
	"net"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"sync"
	"sync/atomic"
	"syscall"
	"testing"
	"time"

	"github.com/keyplane/keyplane/internal/childproc"
	"github.com/keyplane/keyplane/internal/lab"
	"github.com/strongswan/govici/vici"
)

// Charon is one running charon daemon.
type Charon struct {
	name    string // for messages: the namespace or "host"
	dir     string // config and log
	sockDir string // short directory for the vici socket (unix paths are limited to 108 bytes)
	socket  string // vici socket path
	cfg     *config
	cmd     *exec.Cmd
	log     *logBuf
	logFile *os.File
	done    chan struct{} // closed when charon has exited
	waitErr error         // set before done is closed

	started time.Time
	ready   time.Duration

	stopOnce   sync.Once
	stopCalled atomic.Bool // Stop ran: an exit is expected
}

// startScript runs as sh -c inside a private mount namespace: a fresh tmpfs
// on /run gives the instance its own /var/run/charon.pid.
const startScript = `mount -t tmpfs -o mode=0755,size=16m tmpfs /run && exec "$0"`

// Start runs charon inside o.NS (in its own mount namespace with a tmpfs
// /run), waits until its vici socket answers, loads o.Conns and their
// secrets, and registers t.Cleanup to stop it (printing the log tail if the
// test failed). Without strongSwan it skips t on the host and fails it in
// the VM lab. Errors fail t.
func Start(t testing.TB, o Options) *Charon {
	t.Helper()
	if err := Available(); err != nil {
		lab.SkipOrFail(t, "%v", err)
	}
	lab.RequireRoot(t)
	c, err := start(t, o)
	if c != nil {
		t.Cleanup(func() {
			select {
			case <-c.done:
				if !c.stopCalled.Load() {
					// Gone by itself: say how, it explains a peer that
					// stopped answering.
					t.Errorf("swan: charon in %s exited during the test: %v", c.name, c.waitErr)
				}
			default:
			}
			t0 := time.Now()
			c.Stop()
			t.Logf("swan: charon in %s stopped in %v", c.name, time.Since(t0).Round(time.Millisecond))
			if t.Failed() {
				t.Logf("swan: charon %s (%s) log, last 80 lines without vici client chatter:\n%s", c.name, c.cfg.mode, tail(withoutChatter(c.Log()), 80))
			}
			if c.logFile != nil {
				_ = c.logFile.Close()
			}
		})
	}
	if err != nil {
		t.Fatalf("swan: %v", err)
	}
	return c
}

func start(t testing.TB, o Options) (*Charon, error) {
	charon, err := charonPath()
	if err != nil {
		return nil, err
	}
	dir := t.TempDir()
	sockDir, err := os.MkdirTemp("", "kpswan")
	if err != nil {
		return nil, err
	}
	socket := filepath.Join(sockDir, "charon.vici")
	cfg, err := buildConfig(o, "unix://"+socket)
	if err != nil {
		_ = os.RemoveAll(sockDir)
		return nil, err
	}
	conf := filepath.Join(dir, "strongswan.conf")
	if err := os.WriteFile(conf, []byte(cfg.conf), 0o600); err != nil {
		_ = os.RemoveAll(sockDir)
		return nil, err
	}
	c := &Charon{name: "host", dir: dir, sockDir: sockDir, socket: socket, cfg: cfg,
		log: &logBuf{}, done: make(chan struct{})}
	if f, err := os.Create(filepath.Join(dir, "charon.log")); err == nil {
		c.logFile = f
		c.log.file = f
	}
	args := []string{"unshare", "--mount", "--propagation", "private", "sh", "-c", startScript, charon}
	if o.NS != nil {
		c.name = o.NS.Name
		c.cmd = o.NS.Command(args...)
	} else {
		c.cmd = exec.Command(args[0], args[1:]...)
	}
	c.cmd.Env = append(os.Environ(), "STRONGSWAN_CONF="+conf)
	c.cmd.Stdout = c.log
	c.cmd.Stderr = c.log
	c.cmd.Dir = dir
	c.started = time.Now()
	if err := childproc.Start(c.cmd); err != nil {
		_ = os.RemoveAll(sockDir)
		return nil, fmt.Errorf("start charon: %w", err)
	}
	go func() {
		c.waitErr = c.cmd.Wait()
		close(c.done)
	}()

	timeout := o.StartTimeout
	if timeout == 0 {
		timeout = 30 * time.Second
		if lab.InVM() {
			timeout = 120 * time.Second
		}
	}
	ctx, cancel := context.WithTimeout(context.Background(), timeout)
	defer cancel()
	if err := c.waitVici(ctx); err != nil {
		return c, err
	}
	if err := c.waitSockets(ctx, o.NS, cfg.port, cfg.portNATT); err != nil {
		return c, err
	}
	c.ready = time.Since(c.started)
	t.Logf("swan: charon in %s (%s) answers on vici, IKE ports %d/%d bound, after %v", c.name, cfg.mode,
		cfg.port, cfg.portNATT, c.ready.Round(time.Millisecond))
	// Secrets first: a connection with start_action = start initiates as
	// soon as it is loaded, and found no PSK when the secrets came second.
	for _, s := range cfg.secrets {
		if _, err := c.call(ctx, "load-shared", s); err != nil {
			return c, fmt.Errorf("load-shared %v: %w", s.Get("id"), err)
		}
	}
	for _, conn := range o.Conns {
		if err := c.loadCreds(ctx, conn.Pubkey); err != nil {
			return c, fmt.Errorf("credentials of %s: %w", conn.Name, err)
		}
	}
	for _, name := range cfg.order {
		if _, err := c.call(ctx, "load-conn", cfg.conns[name]); err != nil {
			return c, fmt.Errorf("load-conn %s: %w\n%s", name, err, cfg.conns[name])
		}
	}
	return c, nil
}

// waitVici polls the vici socket until charon answers "version", charon
// exits or ctx ends.
func (c *Charon) waitVici(ctx context.Context) error {
	var last error
	for {
		select {
		case <-c.done:
			return fmt.Errorf("charon exited before its vici socket answered (%v); log:\n%s", c.waitErr, tail(withoutChatter(c.Log()), 30))
		default:
		}
		cctx, cancel := context.WithTimeout(ctx, 2*time.Second)
		_, err := c.call(cctx, "version", nil)
		cancel()
		if err == nil {
			return nil
		}
		last = err
		select {
		case <-ctx.Done():
			return fmt.Errorf("charon's vici socket %s did not answer: %v; log:\n%s", c.socket, last, tail(withoutChatter(c.Log()), 30))
		case <-c.done:
		case <-time.After(20 * time.Millisecond):
		}
	}
}

// session opens a vici session bound to ctx for dialing.
func (c *Charon) session(ctx context.Context) (*vici.Session, error) {
	return vici.NewSession(vici.WithSocketPath(c.socket), vici.WithDialContext(
		func(_ context.Context, network, addr string) (net.Conn, error) {
			var d net.Dialer
			return d.DialContext(ctx, network, addr)
		}))
}

// call runs one vici command on a session of its own: a command abandoned
// when ctx ends cannot confuse the next one.
func (c *Charon) call(ctx context.Context, cmd string, in *vici.Message) (*vici.Message, error) {
	s, err := c.session(ctx)
	if err != nil {
		return nil, c.annotate(err)
	}
	defer s.Close()
	m, err := s.Call(ctx, cmd, in)
	return m, c.annotate(err)
}

// annotate adds to a vici error that charon has exited, which explains
// most of them.
func (c *Charon) annotate(err error) error {
	if err == nil {
		return nil
	}
	select {
	case <-c.done:
		return fmt.Errorf("%w (charon has exited: %v)", err, c.waitErr)
	default:
		return err
	}
}

// Log returns charon's log so far (it is read live from charon's stderr).
func (c *Charon) Log() string { return c.log.String() }

// WaitLog polls the log until it contains substr. charon's log reaches the
// rig through a pipe, so a line may arrive a moment after the vici answer
// to the command that caused it: wait for it rather than read Log at once.
func (c *Charon) WaitLog(ctx context.Context, substr string) error {
	return poll(ctx, fmt.Sprintf("%q in charon's log", substr), func() (bool, string, error) {
		lg := c.Log()
		return strings.Contains(lg, substr), "log tail:\n" + tail(withoutChatter(lg), 10), nil
	})
}

// LogPath is the file the log is also copied to, inside the test's TempDir.
func (c *Charon) LogPath() string { return filepath.Join(c.dir, "charon.log") }

// ConfPath is the generated strongswan.conf.
func (c *Charon) ConfPath() string { return filepath.Join(c.dir, "strongswan.conf") }

// Socket is the vici socket's path.
func (c *Charon) Socket() string { return c.socket }

// Mode is the dataplane the instance runs with.
func (c *Charon) Mode() Mode { return c.cfg.mode }

// Pid is charon's process id.
func (c *Charon) Pid() int { return c.cmd.Process.Pid }

// StartupTime is how long charon took from exec to answering on vici.
func (c *Charon) StartupTime() time.Duration { return c.ready }

// Exited is closed when charon has exited.
func (c *Charon) Exited() <-chan struct{} { return c.done }

// Stop terminates charon (SIGTERM, SIGKILL after a grace period) and waits
// for it to exit. It is idempotent and safe for concurrent use.
func (c *Charon) Stop() {
	c.stopCalled.Store(true)
	c.stopOnce.Do(func() {
		grace := 10 * time.Second
		if lab.InVM() {
			grace = 30 * time.Second
		}
		_ = c.cmd.Process.Signal(syscall.SIGTERM)
		select {
		case <-c.done:
		case <-time.After(grace):
			_ = c.cmd.Process.Kill()
			<-c.done
		}
		_ = os.RemoveAll(c.sockDir)
	})
}

// Swanctl runs swanctl against this instance's vici socket, for debugging
// and for what the typed methods do not cover. The output is returned even
// on error.
func (c *Charon) Swanctl(ctx context.Context, args ...string) (string, error) {
	cmd := exec.CommandContext(ctx, "swanctl", append(args, "--uri", "unix://"+c.socket)...)
	// swanctl reads its own config dir only for --load-*; keep it away from /etc.
	cmd.Env = append(os.Environ(), "STRONGSWAN_CONF="+c.ConfPath())
	out, err := cmd.CombinedOutput()
	if err != nil {
		return string(out), fmt.Errorf("swanctl %s: %w: %s", strings.Join(args, " "), err, strings.TrimSpace(string(out)))
	}
	return string(out), nil
}
