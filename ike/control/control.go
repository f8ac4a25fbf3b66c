// Package control is keyplane's control socket: a unix socket on which
// the daemon answers requests from the `keyplane` command (list IKE and
// child SAs, initiate, terminate, reload, stream events). The protocol
// is one JSON request per connection, answered by one JSON response, or
// by a stream of them for "events".
package control

import (
	"bufio"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"log/slog"
	"net"
	"os"
	"path/filepath"
	"sync"
	"time"

	"github.com/keyplane/keyplane/ike"
	"github.com/keyplane/keyplane/kernelops"
)

// Request is what a client asks.
type Request struct {
	Cmd  string            `json:"cmd"` // ike-list, child-list, initiate, terminate, reload, events, or a registered one
	Name string            `json:"name,omitempty"`
	Args map[string]string `json:"args,omitempty"`
}

// Response is the answer, or one element of a stream.
type Response struct {
	OK       bool            `json:"ok"`
	Error    string          `json:"error,omitempty"`
	IKESAs   []ike.IKESAInfo `json:"ike_sas,omitempty"`
	Children []ike.ChildInfo `json:"children,omitempty"`
	Event    *StreamEvent    `json:"event,omitempty"`
	Text     string          `json:"text,omitempty"`
	Data     json.RawMessage `json:"data,omitempty"`
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
	// Reload re-reads the configuration and applies it.
	Reload func(ctx context.Context) error
	// Describe renders a dataplane event as one line.
	Describe func(kernelops.Event) string
	Log      *slog.Logger

	mu       sync.Mutex
	handlers map[string]Handler
	ln       net.Listener
	conns    map[net.Conn]bool
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

// Listen opens the socket at path (its directory is created; a stale
// socket file is replaced) and serves it until Close.
func (s *Server) Listen(path string) error {
	if s.Log == nil {
		s.Log = slog.Default()
	}
	if err := os.MkdirAll(filepath.Dir(path), 0o755); err != nil {
		return fmt.Errorf("control socket directory: %w", err)
	}
	if c, err := net.Dial("unix", path); err == nil {
		c.Close()
		return fmt.Errorf("control socket %s is in use by a running daemon", path)
	}
	_ = os.Remove(path)
	ln, err := net.Listen("unix", path)
	if err != nil {
		return fmt.Errorf("control socket: %w", err)
	}
	if err := os.Chmod(path, 0o600); err != nil {
		ln.Close()
		return fmt.Errorf("control socket: %w", err)
	}
	s.ctx, s.cancel = context.WithCancel(context.Background())
	s.ln = ln
	s.conns = map[net.Conn]bool{}
	s.wg.Add(1)
	go s.accept()
	return nil
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

func (s *Server) accept() {
	defer s.wg.Done()
	for {
		c, err := s.ln.Accept()
		if err != nil {
			return
		}
		s.mu.Lock()
		s.conns[c] = true
		s.mu.Unlock()
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

func (s *Server) serve(c net.Conn) {
	enc := json.NewEncoder(c)
	var req Request
	if err := json.NewDecoder(bufio.NewReader(c)).Decode(&req); err != nil {
		enc.Encode(Response{Error: "bad request: " + err.Error()})
		return
	}
	ctx, cancel := context.WithCancel(s.ctx)
	defer cancel()
	if req.Cmd == "events" {
		// The client ends the stream by closing: notice it.
		go func() {
			var b [1]byte
			c.Read(b[:])
			cancel()
		}()
		s.streamEvents(ctx, enc)
		return
	}
	resp, err := s.do(ctx, req)
	if err != nil {
		resp = Response{Error: err.Error()}
	} else {
		resp.OK = true
	}
	enc.Encode(resp)
}

func (s *Server) do(ctx context.Context, req Request) (Response, error) {
	e := s.Engine
	switch req.Cmd {
	case "ike-list":
		sas, err := e.IKESAs(ctx)
		return Response{IKESAs: sas}, err
	case "child-list":
		ch, err := e.Children(ctx)
		return Response{Children: ch}, err
	case "initiate":
		ctx, cancel := context.WithTimeout(ctx, 60*time.Second)
		defer cancel()
		return Response{Text: req.Name + " initiated"}, e.Initiate(ctx, req.Name)
	case "terminate":
		ctx, cancel := context.WithTimeout(ctx, 60*time.Second)
		defer cancel()
		return Response{Text: req.Name + " terminated"}, e.Terminate(ctx, req.Name)
	case "reload":
		if s.Reload == nil {
			return Response{}, errors.New("reload is not available")
		}
		return Response{Text: "configuration reloaded"}, s.Reload(ctx)
	}
	s.mu.Lock()
	h := s.handlers[req.Cmd]
	s.mu.Unlock()
	if h == nil {
		return Response{}, fmt.Errorf("unknown command %q", req.Cmd)
	}
	return h(ctx, req)
}

func (s *Server) streamEvents(ctx context.Context, enc *json.Encoder) {
	sub := s.Engine.Subscribe()
	defer sub.Close()
	var dp <-chan kernelops.Event
	if src, ok := s.Engine.Backend().(kernelops.EventSource); ok && s.Engine.Backend().Capabilities().Has(kernelops.CapEvents) {
		if ds, err := src.Subscribe(ctx, kernelops.SubscribeOptions{}); err == nil {
			defer ds.Close()
			dp = ds.Events()
		}
	}
	if err := enc.Encode(Response{OK: true, Text: "streaming events"}); err != nil {
		return
	}
	for {
		var se StreamEvent
		select {
		case <-ctx.Done():
			return
		case ev, ok := <-sub.C:
			if !ok {
				return
			}
			se = StreamEvent{Time: ev.Time, Source: "engine", Engine: &ev, Kind: ev.Kind}
		case ev, ok := <-dp:
			if !ok {
				dp = nil
				continue
			}
			se = StreamEvent{Time: time.Now(), Source: "dataplane", Kind: ev.Kind().String(), Dataplane: ev}
			if s.Describe != nil {
				se.Text = s.Describe(ev)
			}
		}
		if err := enc.Encode(Response{OK: true, Event: &se}); err != nil {
			return
		}
	}
}

// Client talks to a daemon's control socket.
type Client struct {
	Path string
}

// Do sends one request and reads its answer; a failed command is an
// error carrying the daemon's message.
func (c *Client) Do(ctx context.Context, req Request) (*Response, error) {
	var d net.Dialer
	conn, err := d.DialContext(ctx, "unix", c.Path)
	if err != nil {
		return nil, fmt.Errorf("control socket %s: %w (is the daemon running? -s sets the path)", c.Path, err)
	}
	defer conn.Close()
	stop := context.AfterFunc(ctx, func() { conn.Close() })
	defer stop()
	if err := json.NewEncoder(conn).Encode(req); err != nil {
		return nil, err
	}
	var resp Response
	if err := json.NewDecoder(conn).Decode(&resp); err != nil {
		if ctx.Err() != nil {
			return nil, ctx.Err()
		}
		return nil, fmt.Errorf("control socket %s: %w", c.Path, err)
	}
	if !resp.OK {
		return &resp, errors.New(resp.Error)
	}
	return &resp, nil
}

// Events streams the daemon's events to f until ctx ends or f fails.
func (c *Client) Events(ctx context.Context, f func(json.RawMessage) error) error {
	var d net.Dialer
	conn, err := d.DialContext(ctx, "unix", c.Path)
	if err != nil {
		return fmt.Errorf("control socket %s: %w", c.Path, err)
	}
	defer conn.Close()
	stop := context.AfterFunc(ctx, func() { conn.Close() })
	defer stop()
	if err := json.NewEncoder(conn).Encode(Request{Cmd: "events"}); err != nil {
		return err
	}
	dec := json.NewDecoder(conn)
	first := true
	for {
		var raw json.RawMessage
		if err := dec.Decode(&raw); err != nil {
			if ctx.Err() != nil {
				return nil
			}
			return err
		}
		if first {
			first = false
			var r Response
			if json.Unmarshal(raw, &r) == nil && !r.OK {
				return errors.New(r.Error)
			}
			continue
		}
		if err := f(raw); err != nil {
			return err
		}
	}
}
