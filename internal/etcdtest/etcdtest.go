// Package etcdtest starts a real etcd server (Debian's etcd-server, which
// `make deps` installs) for tests: one member on loopback, a temporary
// data directory, free ports. No fake store: the HA tests run against it.
package etcdtest

import (
	"bytes"
	"context"
	"crypto/tls"
	"crypto/x509"
	"fmt"
	"net"
	"net/http"
	"os"
	"os/exec"
	"strconv"
	"sync"
	"testing"
	"time"

	"github.com/keyplane/keyplane/internal/childproc"
	clientv3 "go.etcd.io/etcd/client/v3"
	"go.uber.org/zap"
)

// Binary is the etcd server the tests run.
const Binary = "etcd"

// Server is one etcd member started by a test.
type Server struct {
	t          testing.TB
	bin        string
	dir        string
	clientPort int
	peerPort   int

	tls *TLSFiles // nil: plain http

	mu   sync.Mutex
	cmd  *exec.Cmd
	done chan struct{}
	log  *lockedBuffer
}

// TLSFiles are PEM files for a server that speaks TLS to its clients
// and requires their certificates (signed by CA).
type TLSFiles struct {
	CA, Cert, Key string
}

// Endpoint is the client URL.
func (s *Server) Endpoint() string {
	scheme := "http"
	if s.tls != nil {
		scheme = "https"
	}
	return scheme + "://127.0.0.1:" + strconv.Itoa(s.clientPort)
}

// Start runs etcd until the test ends. A test skips, saying why, when the
// binary is missing (`make deps` installs it, so `make test` never skips).
func Start(t testing.TB) *Server {
	t.Helper()
	return start(t, nil)
}

// StartTLS runs etcd with TLS on its client port and client
// certificate authentication (--client-cert-auth) until the test ends.
func StartTLS(t testing.TB, f TLSFiles) *Server {
	t.Helper()
	return start(t, &f)
}

func start(t testing.TB, f *TLSFiles) *Server {
	t.Helper()
	bin, err := exec.LookPath(Binary)
	if err != nil {
		t.Skipf("etcdtest: no %s binary (Debian package etcd-server; `make deps` installs it): %v", Binary, err)
	}
	s := &Server{t: t, bin: bin, dir: t.TempDir(), tls: f}
	var lastErr error
	for range 3 { // a free port can be taken between finding and binding it
		s.clientPort, s.peerPort = freePort(t), freePort(t)
		if lastErr = s.start(); lastErr == nil {
			break
		}
	}
	if lastErr != nil {
		t.Fatalf("etcdtest: %v", lastErr)
	}
	t.Cleanup(s.Stop)
	return s
}

func (s *Server) start() error {
	s.mu.Lock()
	defer s.mu.Unlock()
	peer := "http://127.0.0.1:" + strconv.Itoa(s.peerPort)
	args := []string{"--name", "keyplane-test",
		"--data-dir", s.dir,
		"--listen-client-urls", s.Endpoint(),
		"--advertise-client-urls", s.Endpoint(),
		"--listen-peer-urls", peer,
		"--initial-advertise-peer-urls", peer,
		"--initial-cluster", "keyplane-test=" + peer,
		"--log-level", "warn",
	}
	if s.tls != nil {
		args = append(args, "--cert-file", s.tls.Cert, "--key-file", s.tls.Key,
			"--trusted-ca-file", s.tls.CA, "--client-cert-auth")
	}
	cmd := exec.Command(s.bin, args...)
	s.log = &lockedBuffer{}
	cmd.Stdout, cmd.Stderr = s.log, s.log
	if err := childproc.Start(cmd); err != nil {
		return fmt.Errorf("start %s: %w", s.bin, err)
	}
	done := make(chan struct{})
	go func() { _ = cmd.Wait(); close(done) }()
	s.cmd, s.done = cmd, done
	if err := waitHealthy(s.Endpoint(), s.tls, done, 20*time.Second); err != nil {
		_ = cmd.Process.Kill()
		<-done
		s.cmd = nil
		return fmt.Errorf("%w; etcd's output:\n%s", err, s.log.String())
	}
	return nil
}

// Stop kills the server (SIGKILL: what a crash looks like to clients) and
// waits for it. Stopping a stopped server does nothing.
func (s *Server) Stop() {
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.cmd == nil {
		return
	}
	_ = s.cmd.Process.Kill()
	<-s.done
	s.cmd = nil
}

// Restart starts the server again on the same ports and data directory.
func (s *Server) Restart() {
	s.t.Helper()
	s.Stop()
	if err := s.start(); err != nil {
		s.t.Fatalf("etcdtest: restart: %v", err)
	}
}

// ClientTLS is a client configuration that trusts f.CA and presents
// f.Cert (the tests use one certificate for the server and its clients).
func ClientTLS(f TLSFiles) (*tls.Config, error) {
	ca, err := os.ReadFile(f.CA)
	if err != nil {
		return nil, err
	}
	pool := x509.NewCertPool()
	if !pool.AppendCertsFromPEM(ca) {
		return nil, fmt.Errorf("etcdtest: no certificate in %s", f.CA)
	}
	cert, err := tls.LoadX509KeyPair(f.Cert, f.Key)
	if err != nil {
		return nil, err
	}
	return &tls.Config{RootCAs: pool, Certificates: []tls.Certificate{cert}, MinVersion: tls.VersionTLS12}, nil
}

// Client returns a client of the server, closed when the test ends.
func (s *Server) Client(t testing.TB) *clientv3.Client {
	t.Helper()
	cfg := clientv3.Config{
		Endpoints:   []string{s.Endpoint()},
		DialTimeout: 5 * time.Second,
		Logger:      zap.NewNop(), // the tests say what failed; the client's retries are noise
	}
	if s.tls != nil {
		tc, err := ClientTLS(*s.tls)
		if err != nil {
			t.Fatalf("etcdtest: %v", err)
		}
		cfg.TLS = tc
	}
	c, err := clientv3.New(cfg)
	if err != nil {
		t.Fatalf("etcdtest: client: %v", err)
	}
	t.Cleanup(func() { _ = c.Close() })
	return c
}

func waitHealthy(endpoint string, f *TLSFiles, exited <-chan struct{}, limit time.Duration) error {
	deadline := time.Now().Add(limit)
	hc := &http.Client{Timeout: time.Second}
	if f != nil {
		tc, err := ClientTLS(*f)
		if err != nil {
			return err
		}
		hc.Transport = &http.Transport{TLSClientConfig: tc}
	}
	for {
		select {
		case <-exited:
			return fmt.Errorf("etcd exited before it was healthy")
		default:
		}
		resp, err := hc.Get(endpoint + "/health")
		if err == nil {
			var b bytes.Buffer
			_, _ = b.ReadFrom(http.MaxBytesReader(nil, resp.Body, 4096))
			resp.Body.Close()
			if resp.StatusCode == http.StatusOK && bytes.Contains(b.Bytes(), []byte(`"true"`)) {
				return nil
			}
		}
		if time.Now().After(deadline) {
			return fmt.Errorf("etcd at %s not healthy after %v (last: %v)", endpoint, limit, err)
		}
		time.Sleep(50 * time.Millisecond)
	}
}

func freePort(t testing.TB) int {
	t.Helper()
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatalf("etcdtest: free port: %v", err)
	}
	defer l.Close()
	return l.Addr().(*net.TCPAddr).Port
}

// Ctx is a context for one etcd call in a test.
func Ctx(t testing.TB) context.Context {
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	t.Cleanup(cancel)
	return ctx
}

type lockedBuffer struct {
	mu sync.Mutex
	b  bytes.Buffer
}

func (l *lockedBuffer) Write(p []byte) (int, error) {
	l.mu.Lock()
	defer l.mu.Unlock()
	if l.b.Len() > 1<<20 { // bounded: keep the start, drop the rest
		return len(p), nil
	}
	return l.b.Write(p)
}

func (l *lockedBuffer) String() string {
	l.mu.Lock()
	defer l.mu.Unlock()
	return l.b.String()
}
