package control

import (
	"context"
	"encoding/json"
	"fmt"
	"net"
)

// LogSource is the daemon's log for the "log" stream: lines as the log
// writes them, with a count of the ones this follower lost.
type LogSource interface {
	SubscribeLog() LogFollower
}

// LogFollower is one subscription to a LogSource.
type LogFollower interface {
	Lines() <-chan string
	// Dropped returns the lines lost since its last call.
	Dropped() uint64
	Close()
}

// LogLine is one element of the "log" stream: a line of the daemon's
// log, and how many lines this client lost just before it (it fell
// behind; the daemon never waits for a follower).
type LogLine struct {
	Line    string `json:"line"`
	Dropped uint64 `json:"dropped,omitempty"`
}

// streamLog sends the daemon's log lines until the client leaves or
// does not take a line within the write timeout.
func (s *Server) streamLog(ctx context.Context, c net.Conn, enc *json.Encoder) {
	if s.Logs == nil {
		_ = s.send(c, enc, Response{Error: "this daemon has no log stream"})
		return
	}
	sub := s.Logs.SubscribeLog()
	defer sub.Close()
	if err := s.send(c, enc, Response{OK: true, Text: "streaming the log"}); err != nil {
		return
	}
	for {
		select {
		case <-ctx.Done():
			return
		case l, ok := <-sub.Lines():
			if !ok {
				return
			}
			if err := s.send(c, enc, Response{OK: true, Log: &LogLine{Line: l, Dropped: sub.Dropped()}}); err != nil {
				return
			}
		}
	}
}

// FollowLog streams the daemon's log to f until ctx ends, f fails, or
// the daemon ends the stream.
func (c *Client) FollowLog(ctx context.Context, f func(LogLine) error) error {
	var d net.Dialer
	conn, err := d.DialContext(ctx, "unix", c.Path)
	if err != nil {
		return c.unreachable(err)
	}
	defer conn.Close()
	stop := context.AfterFunc(ctx, func() { conn.Close() })
	defer stop()
	if err := json.NewEncoder(conn).Encode(Request{Cmd: "log"}); err != nil {
		return err
	}
	b := &budget{r: conn}
	dec := json.NewDecoder(b)
	for first := true; ; first = false {
		b.n = c.max()
		var r Response
		if err := dec.Decode(&r); err != nil {
			if ctx.Err() != nil {
				return nil
			}
			return fmt.Errorf("control socket %s: %w", c.Path, err)
		}
		if !r.OK {
			return &DaemonError{Code: r.Code, Msg: r.Error}
		}
		if first || r.Log == nil {
			continue
		}
		if err := f(*r.Log); err != nil {
			return err
		}
	}
}
