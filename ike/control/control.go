// Package control is keyplane's control socket: a unix socket on which
// the daemon answers requests from the `keyplane` command (list IKE and
// child SAs, initiate, terminate, rekey, reload, stream events). The protocol
// is one JSON request per connection, answered by one JSON response, or
// by a stream of them for "events".
//
// The socket is a local attack surface and an operator's lifeline, so the
// server bounds what a client can make it hold (Limits: request size,
// time to send it, time to read each answer, clients and event streams at
// once), keeps accepting after errors such as EMFILE, and never deletes
// anything at its path but a stale socket.
package control

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"log/slog"
	"net"
	"sync"
	"time"

	"github.com/keyplane/keyplane/ike"
	"github.com/keyplane/keyplane/ike/config"
	"github.com/keyplane/keyplane/kernelops"
)

// Request is what a client asks.
type Request struct {
	Cmd  string            `json:"cmd"` // ike-list, child-list, certs-list, initiate, terminate, rekey, reload, events, log, or a registered one
	Name string            `json:"name,omitempty"`
	Args map[string]string `json:"args,omitempty"`
}

// Response is the answer, or one element of a stream.
type Response struct {
	OK    bool   `json:"ok"`
	Error string `json:"error,omitempty"`
	// Code classifies Error for programs: see ErrorCode.
	Code string `json:"code,omitempty"`
	// More says that a listing's stream goes on after this response
	// (Client.List).
	More     bool            `json:"more,omitempty"`
	IKESAs   []ike.IKESAInfo `json:"ike_sas,omitempty"`
	Children []ike.ChildInfo `json:"children,omitempty"`
	Certs    []ike.CertInfo  `json:"certs,omitempty"`
	Event    *StreamEvent    `json:"event,omitempty"`
	Text     string          `json:"text,omitempty"`
	Reload   *ReloadReport   `json:"reload,omitempty"`
	// Initiate is the outcome of an initiate that succeeded.
	Initiate *InitiateResult `json:"initiate,omitempty"`
	Data     json.RawMessage `json:"data,omitempty"`
	// Log is one line of the "log" stream.
	Log *LogLine `json:"log,omitempty"`
	// Deleted are the IKE SAs (ike-list) or children (child-list) a
	// listing since a cursor says are gone; Cursor, in its last
	// response, is the cursor for the next listing.
	Deleted []ike.Deleted `json:"deleted,omitempty"`
	Cursor  ike.Cursor    `json:"cursor,omitzero"`
}

// ReloadReport is the answer to a reload that was applied: what changed
// and what the daemon did about it.
type ReloadReport struct {
	config.Diff
	// Connections is how many the running configuration now has.
	Connections int `json:"connections"`
	// Started are the children with start_action = start that the reload
	// added (or switched to start): their initiation has begun.
	Started []string `json:"started"`
	// Warnings are the new file's warnings and the changes that need a
	// restart to apply.
	Warnings []string `json:"warnings"`
	// Closed are the IKE SAs the reload closed because their
	// authentication settings changed or their connection is gone
	// (ike.Engine.Reconfigure).
	Closed []ike.ClosedIKESA `json:"closed"`
	// LogLevel is the level in effect, LogLevelFrom where it comes from
	// (daemon.log_level or -log-level).
	LogLevel     string `json:"log_level"`
	LogLevelFrom string `json:"log_level_from"`
}

// InitiateResult says whether initiate brought something up or found it
// up already.
type InitiateResult struct {
	AlreadyUp bool `json:"already_up"`
}

// StreamEvent is one event of the "events" stream: the engine's own, or
// one from the dataplane with its one-line description.
type StreamEvent struct {
	Time      time.Time       `json:"time"`
	Source    string          `json:"source"` // "engine" or "dataplane"
	Engine    *ike.Event      `json:"engine,omitempty"`
	Kind      string          `json:"kind,omitempty"`
	Text      string          `json:"text,omitempty"`
	Dataplane kernelops.Event `json:"dataplane,omitempty"`
}

// Handler answers a registered command.
type Handler func(ctx context.Context, req Request) (Response, error)

// Server serves the control socket of one engine.
type Server struct {
	Engine *ike.Engine
	// Reload re-reads the configuration and applies it, and says what
	// changed.
	Reload func(ctx context.Context) (*ReloadReport, error)
	// Config returns the running configuration (nil: initiate cannot
	// tell whether a connection is already up).
	Config func() *config.Config
	// Logs, if not nil, serves the "log" stream (logstream.go).
	Logs LogSource
	// Describe renders a dataplane event as one line.
	Describe func(kernelops.Event) string
	Log      *slog.Logger
	// Limits bound clients; zero fields take their defaults.
	Limits Limits

	lim      Limits
	mu       sync.Mutex
	handlers map[string]Handler
	ln       net.Listener
	conns    map[net.Conn]bool
	subs     int
	wg       sync.WaitGroup
	ctx      context.Context
	cancel   context.CancelFunc
}

// Handle registers an extra command (e.g. simulated traffic on nokernel).
func (s *Server) Handle(cmd string, h Handler) {
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.handlers == nil {
		s.handlers = map[string]Handler{}
	}
	s.handlers[cmd] = h
}

// Listen opens the socket at path and serves it until Close. Missing
// directories are created 0700 and the socket is 0600 from its creation.
// An existing path is replaced only when it is a stale socket (nobody
// listening); a running daemon's socket is ErrInUse, and anything else
// (a regular file, a directory, a symbolic link) is ErrNotSocket, left
// untouched.
func (s *Server) Listen(path string) error {
	ln, err := listenUnix(path)
	if err != nil {
		return err
	}
	s.Start(ln)
	return nil
}

// Start serves ln until Close (Listen calls it; tests may pass their own
// listener).
func (s *Server) Start(ln net.Listener) {
	if s.Log == nil {
		s.Log = slog.Default()
	}
	s.lim = s.Limits.withDefaults()
	s.ctx, s.cancel = context.WithCancel(context.Background())
	s.ln = ln
	s.conns = map[net.Conn]bool{}
	s.wg.Add(1)
	go s.accept()
}

// Close stops serving and waits for the connections to end.
func (s *Server) Close() error {
	if s.ln == nil {
		return nil
	}
	s.cancel()
	err := s.ln.Close()
	s.mu.Lock()
	for c := range s.conns {
		c.Close()
	}
	s.mu.Unlock()
	s.wg.Wait()
	return err
}

// Clients reports the connections being served and, of them, the event
// streams.
func (s *Server) Clients() (conns, subscribers int) {
	s.mu.Lock()
	defer s.mu.Unlock()
	return len(s.conns), s.subs
}

// acceptDelay is the wait after the n-th consecutive failed accept:
// 5 ms, doubling, at most 1 s (the daemon must not spin on EMFILE, nor
// stay deaf long after a descriptor is free again).
func acceptDelay(n int) time.Duration {
	d := 5 * time.Millisecond
	for i := 1; i < n && d < time.Second; i++ {
		d *= 2
	}
	return min(d, time.Second)
}

func (s *Server) accept() {
	defer s.wg.Done()
	failures, refused := 0, 0
	var lastRefusal time.Time
	for {
		c, err := s.ln.Accept()
		if err != nil {
			if s.ctx.Err() != nil || errors.Is(err, net.ErrClosed) {
				return
			}
			// EMFILE, ENFILE, ENOBUFS, ECONNABORTED...: the listener is
			// still good; a descriptor frees up when a client leaves.
			failures++
			d := acceptDelay(failures)
			if failures == 1 || d == time.Second {
				s.Log.Error("control socket: accept failed; retrying", "err", err, "failures", failures, "retry-in", d)
			}
			select {
			case <-s.ctx.Done():
				return
			case <-time.After(d):
			}
			continue
		}
		if failures > 0 {
			s.Log.Info("control socket: accepting again", "failed-accepts", failures)
			failures = 0
		}
		s.mu.Lock()
		full := len(s.conns) >= s.lim.MaxClients
		if !full {
			s.conns[c] = true
		}
		s.mu.Unlock()
		if full {
			// A fresh socket's buffer takes the short reply at once.
			_ = c.SetWriteDeadline(time.Now().Add(100 * time.Millisecond))
			_ = json.NewEncoder(c).Encode(Response{Error: fmt.Sprintf("too many control clients (%d); try again", s.lim.MaxClients)})
			c.Close()
			// One line a second at most, however many are refused.
			refused++
			if now := time.Now(); now.Sub(lastRefusal) >= time.Second {
				s.Log.Warn("control socket: clients refused: too many clients", "max", s.lim.MaxClients, "refused", refused)
				lastRefusal, refused = now, 0
			}
			continue
		}
		s.wg.Add(1)
		go func() {
			defer s.wg.Done()
			defer func() {
				s.mu.Lock()
				delete(s.conns, c)
				s.mu.Unlock()
				c.Close()
			}()
			s.serve(c)
		}()
	}
}

// send writes one response within the write deadline.
func (s *Server) send(c net.Conn, enc *json.Encoder, r Response) error {
	if err := c.SetWriteDeadline(time.Now().Add(s.lim.WriteTimeout)); err != nil {
		return err
	}
	return enc.Encode(r)
}

func (s *Server) serve(c net.Conn) {
	enc := json.NewEncoder(c)
	_ = c.SetReadDeadline(time.Now().Add(s.lim.ReadTimeout))
	req, err := DecodeRequest(c, s.lim.MaxRequest)
	if err != nil {
		s.Log.Debug("control socket: bad request", "err", err)
		_ = s.send(c, enc, Response{Error: err.Error(), Code: ErrorCode(err)})
		return
	}
	_ = c.SetReadDeadline(time.Time{})
	s.Log.Debug("control request", "cmd", req.Cmd, "name", req.Name)
	ctx, cancel := context.WithCancel(s.ctx)
	defer cancel()
	if req.Cmd == "events" || req.Cmd == "log" {
		s.mu.Lock()
		full := s.subs >= s.lim.MaxSubscribers
		if !full {
			s.subs++
		}
		s.mu.Unlock()
		if full {
			_ = s.send(c, enc, Response{Error: fmt.Sprintf("too many event subscribers (%d); try again", s.lim.MaxSubscribers)})
			return
		}
		defer func() {
			s.mu.Lock()
			s.subs--
			s.mu.Unlock()
		}()
		// The client ends the stream by closing: notice it.
		go func() {
			var b [1]byte
			c.Read(b[:])
			cancel()
		}()
		if req.Cmd == "log" {
			s.streamLog(ctx, c, enc)
		} else {
			s.streamEvents(ctx, c, enc)
		}
		return
	}
	if isList(req.Cmd) {
		s.serveList(ctx, c, enc, req)
		return
	}
	resp, err := s.do(ctx, req)
	if err != nil {
		resp = Response{Error: err.Error(), Code: ErrorCode(err)}
	} else {
		resp.OK = true
	}
	_ = s.send(c, enc, resp)
}

func (s *Server) do(ctx context.Context, req Request) (Response, error) {
	e := s.Engine
	switch req.Cmd {
	case "certs-list":
		cs, err := e.Certs(ctx)
		return Response{Certs: cs}, err
	case "initiate":
		return s.initiate(ctx, req)
	case "terminate":
		return s.terminate(ctx, req)
	case "rekey":
		return s.rekey(ctx, req)
	case "reload":
		if s.Reload == nil {
			return Response{}, errors.New("reload is not available")
		}
		r, err := s.Reload(ctx)
		if err != nil {
			return Response{}, err
		}
		return Response{Text: "configuration reloaded", Reload: r}, nil
	}
	s.mu.Lock()
	h := s.handlers[req.Cmd]
	s.mu.Unlock()
	if h == nil {
		return Response{}, fmt.Errorf("unknown command %q", req.Cmd)
	}
	return h(ctx, req)
}
