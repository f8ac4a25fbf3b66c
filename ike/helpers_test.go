package ike

import (
	"context"
	"fmt"
	"io"
	"log/slog"
	"net"
	"os"
	"runtime"
	"strings"
	"testing"
	"time"

	"github.com/keyplane/keyplane/backends/nokernel"
	"github.com/keyplane/keyplane/ike/config"
	"github.com/keyplane/keyplane/kernelops"
	"github.com/keyplane/keyplane/kernelops/clock"
)

// freePorts returns n UDP ports on 127.0.0.1 that were free a moment ago.
func freePorts(t testing.TB, n int) []uint16 {
	t.Helper()
	var out []uint16
	var conns []net.PacketConn
	for range n {
		c, err := net.ListenPacket("udp4", "127.0.0.1:0")
		if err != nil {
			t.Fatal(err)
		}
		conns = append(conns, c)
		out = append(out, uint16(c.LocalAddr().(*net.UDPAddr).Port))
	}
	for _, c := range conns {
		c.Close()
	}
	return out
}

// side describes one end for pairConfigs.
type side struct {
	port, natPort  uint16
	id             string
	psk            string
	proposals, esp string
	localTS        string
	remoteTS       string
	start          string
	extraConn      string
	extraChild     string
	mode           string
	daemonExtra    string
	remotePort     uint16
	remoteNATPort  uint16
	remoteID       string
	// addr and remoteAddr: the connection's addresses (default 127.0.0.1).
	addr, remoteAddr string
}

func (s side) config(t testing.TB, name string) *config.Config {
	t.Helper()
	if s.proposals == "" {
		s.proposals = "aes128gcm16-prfsha256-x25519"
	}
	if s.esp == "" {
		s.esp = "aes128gcm16"
	}
	if s.start == "" {
		s.start = "none"
	}
	if s.mode == "" {
		s.mode = "tunnel"
	}
	if s.addr == "" {
		s.addr = "127.0.0.1"
	}
	if s.remoteAddr == "" {
		s.remoteAddr = "127.0.0.1"
	}
	src := fmt.Sprintf(`
daemon {
	retransmit_timeout = 200ms
	retransmit_tries = 3
	retransmit_base = 1.5
	%s
}
connections {
	%s {
		local_addrs = %s
		remote_addrs = %s
		local_port = %d
		local_port_nat = %d
		remote_port = %d
		remote_port_nat = %d
		proposals = %s
		psk_env = PSK_%s
		%s
		local {
			id = %s
		}
		remote {
			id = %s
		}
		children {
			%s-net {
				local_ts = %s
				remote_ts = %s
				esp_proposals = %s
				start_action = %s
				mode = %s
				%s
			}
		}
	}
}
`, s.daemonExtra, name, s.addr, s.remoteAddr, s.port, s.natPort, s.remotePort, s.remoteNATPort, s.proposals, name, s.extraConn, s.id, s.remoteID,
		name, s.localTS, s.remoteTS, s.esp, s.start, s.mode, s.extraChild)
	cfg, err := config.Parse(name+".conf", []byte(src), config.Options{Getenv: func(k string) (string, bool) {
		if k == "PSK_"+name {
			return s.psk, true
		}
		return "", false
	}})
	if err != nil {
		t.Fatalf("config %s: %v\n%s", name, err, src)
	}
	return cfg
}

// pairSides returns matching default configurations for peers a and b.
func pairSides(t testing.TB) (side, side) {
	p := freePorts(t, 4)
	a := side{port: p[0], natPort: p[1], id: "a.example.org", psk: "shared secret", localTS: "10.1.0.0/16", remoteTS: "10.2.0.0/16",
		remotePort: p[2], remoteNATPort: p[3], remoteID: "b.example.org"}
	b := side{port: p[2], natPort: p[3], id: "b.example.org", psk: "shared secret", localTS: "10.2.0.0/16", remoteTS: "10.1.0.0/16",
		remotePort: p[0], remoteNATPort: p[1], remoteID: "a.example.org"}
	return a, b
}

// peer is one engine on its own nokernel dataplane.
type peer struct {
	name string
	b    *nokernel.Backend
	kb   kernelops.Backend // what the engine drives (b, or a wrapper)
	e    *Engine
	ev   *Subscription
	logs *syncWriter
}

type peerOpt func(*peerSetup)

type peerSetup struct {
	wrap     func(*nokernel.Backend) kernelops.Backend
	opts     kernelops.Options
	clock    clock.Clock
	logLevel slog.Level
	options  func(*Options) // more of the engine's Options (embed_test.go)
}

// withLogLevel keeps only log lines from level up (tests that run long
// keep their logs small).
func withLogLevel(l slog.Level) peerOpt {
	return func(s *peerSetup) { s.logLevel = l }
}

func withBackend(w func(*nokernel.Backend) kernelops.Backend) peerOpt {
	return func(s *peerSetup) { s.wrap = w }
}

// withOptions opens the peer's model with o.
func withOptions(o kernelops.Options) peerOpt {
	return func(s *peerSetup) { s.opts = o }
}

// withLongLarval opens the peer's model with SPI reservations that last
// 10 minutes instead of 30s, for tests stepping the fake clock by minutes
// while exchanges may be under way (see step).
func withLongLarval() peerOpt {
	return withOptions(kernelops.Options{Params: map[string]string{"acquire-expires": "10m"}})
}

// withClock runs the peer's engine and model on c.
func withClock(c clock.Clock) peerOpt {
	return func(s *peerSetup) { s.clock = c }
}

type syncWriter struct {
	mu chan struct{}
	b  *strings.Builder
	w  io.Writer
}

func (s *syncWriter) Write(p []byte) (int, error) {
	s.mu <- struct{}{}
	defer func() { <-s.mu }()
	s.b.Write(p)
	if s.w != nil {
		s.w.Write(p)
	}
	return len(p), nil
}

func (s *syncWriter) String() string {
	s.mu <- struct{}{}
	defer func() { <-s.mu }()
	return s.b.String()
}

func newPeer(t testing.TB, name string, cfg *config.Config, opts ...peerOpt) *peer {
	t.Helper()
	st := peerSetup{logLevel: slog.LevelDebug}
	for _, o := range opts {
		o(&st)
	}
	bo := st.opts
	if st.clock != nil {
		bo.Clock = st.clock
	}
	b, err := nokernel.Open(t.Context(), bo)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { b.Close() })
	var kb kernelops.Backend = b
	if st.wrap != nil {
		kb = st.wrap(b)
	}
	sw := &syncWriter{mu: make(chan struct{}, 1), b: &strings.Builder{}}
	if os.Getenv("KEYPLANE_TEST_LOG") != "" {
		sw.w = os.Stderr
	}
	log := slog.New(slog.NewTextHandler(sw, &slog.HandlerOptions{Level: st.logLevel})).With("peer", name)
	o := Options{Backend: kb, Config: cfg, Logger: log, Clock: st.clock}
	if st.options != nil {
		st.options(&o)
	}
	e, err := New(t.Context(), o)
	if err != nil {
		t.Fatalf("engine %s: %v", name, err)
	}
	p := &peer{name: name, b: b, kb: kb, e: e, ev: e.Subscribe(), logs: sw}
	checked := func() {}
	if _, ok := t.(*testing.T); ok {
		checked = checkChanges(t, e) // changes_check_test.go
	}
	t.Cleanup(func() {
		checked()
		// Every test checks the connection index against the SAs.
		var ierr string
		ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
		if e.call(ctx, func() { ierr = e.indexErr() }) == nil && ierr != "" {
			t.Errorf("%s: %s", name, ierr)
		}
		cancel()
		e.Close()
		if t.Failed() {
			t.Logf("log of %s:\n%s", name, sw.String())
		}
	})
	return p
}

func ctxT(t *testing.T, d time.Duration) context.Context {
	ctx, cancel := context.WithTimeout(t.Context(), d)
	t.Cleanup(cancel)
	return ctx
}

// waitFor polls cond until it holds or the time is up.
func waitFor(t *testing.T, what string, d time.Duration, cond func() bool) {
	t.Helper()
	deadline := time.Now().Add(d)
	for time.Now().Before(deadline) {
		if cond() {
			return
		}
		time.Sleep(10 * time.Millisecond)
	}
	t.Fatalf("timed out waiting for %s", what)
}

// waitEvent waits for an engine event matching f.
func (p *peer) waitEvent(t *testing.T, d time.Duration, f func(Event) bool) Event {
	t.Helper()
	timeout := time.After(d)
	for {
		select {
		case ev, ok := <-p.ev.C:
			if !ok {
				t.Fatalf("%s: event stream closed", p.name)
			}
			if f(ev) {
				return ev
			}
		case <-timeout:
			t.Fatalf("%s: no matching event within %s", p.name, d)
		}
	}
}

func (p *peer) sas(t testing.TB) []IKESAInfo {
	t.Helper()
	s, err := p.e.IKESAs(t.Context())
	if err != nil {
		t.Fatal(err)
	}
	return s
}

// counts returns the SAs and policies in the peer's dataplane.
func (p *peer) counts(t *testing.T) (sas, pols int) {
	t.Helper()
	for _, err := range p.b.SAs(t.Context()) {
		if err != nil {
			t.Fatal(err)
		}
		sas++
	}
	for _, err := range p.b.Policies(t.Context()) {
		if err != nil {
			t.Fatal(err)
		}
		pols++
	}
	return sas, pols
}

func (p *peer) expectEmpty(t *testing.T) {
	t.Helper()
	waitFor(t, p.name+"'s dataplane to be empty", 3*time.Second, func() bool {
		s, pol := p.counts(t)
		return s == 0 && pol == 0
	})
}

// noLeaks fails if goroutines of this package outlive the engines.
func noLeaks(t *testing.T) {
	t.Cleanup(func() {
		deadline := time.Now().Add(3 * time.Second)
		for {
			buf := make([]byte, 1<<20)
			n := runtime.Stack(buf, true)
			var leaked []string
			for g := range strings.SplitSeq(string(buf[:n]), "\n\n") {
				if strings.Contains(g, "keyplane/ike.(*Engine)") || strings.Contains(g, "keyplane/ike.(*sub") {
					leaked = append(leaked, g)
				}
			}
			if len(leaked) == 0 {
				return
			}
			if time.Now().After(deadline) {
				t.Errorf("%d goroutines leaked:\n%s", len(leaked), strings.Join(leaked, "\n\n"))
				return
			}
			time.Sleep(20 * time.Millisecond)
		}
	})
}

// lacking is a named test double: the model without capability cap,
// with the note a backend gives for it (as PF_KEY and VPP lack if_ids,
// marks and xfrm interfaces).
type lacking struct {
	*nokernel.Backend
	cap  kernelops.Cap
	note string
}

func (b lacking) Capabilities() kernelops.Capabilities {
	c := b.Backend.Capabilities()
	c.Caps &^= b.cap
	c.Notes = map[kernelops.Cap]string{b.cap: b.note}
	return c
}
