package control

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net"
)

// DefaultMaxResponse caps one response (or one event) a Client reads:
// far above a listing of 100,000 SAs, and a bound should the path hold
// something other than a keyplane daemon.
const DefaultMaxResponse = 256 << 20

// ErrResponseTooLarge is a response beyond the client's cap.
var ErrResponseTooLarge = errors.New("control response too large")

// Client talks to a daemon's control socket.
type Client struct {
	Path string
	// MaxResponse caps one response in bytes; 0: DefaultMaxResponse.
	MaxResponse int64
}

// budget is a reader that fails once more than its allowance has been
// read; Events renews the allowance for each element of the stream.
type budget struct {
	r io.Reader
	n int64
}

func (b *budget) Read(p []byte) (int, error) {
	if b.n <= 0 {
		return 0, ErrResponseTooLarge
	}
	if int64(len(p)) > b.n {
		p = p[:b.n]
	}
	n, err := b.r.Read(p)
	b.n -= int64(n)
	return n, err
}

func (c *Client) max() int64 {
	if c.MaxResponse > 0 {
		return c.MaxResponse
	}
	return DefaultMaxResponse
}

// Do sends one request and reads its answer; a failed command is an
// error carrying the daemon's message.
func (c *Client) Do(ctx context.Context, req Request) (*Response, error) {
	var d net.Dialer
	conn, err := d.DialContext(ctx, "unix", c.Path)
	if err != nil {
		return nil, c.unreachable(err)
	}
	defer conn.Close()
	stop := context.AfterFunc(ctx, func() { conn.Close() })
	defer stop()
	// A request the daemon refuses before reading it all (too large)
	// fails to write; its answer, already sent, says why.
	werr := json.NewEncoder(conn).Encode(req)
	var resp Response
	if err := json.NewDecoder(&budget{conn, c.max()}).Decode(&resp); err != nil {
		if ctx.Err() != nil {
			return nil, ctx.Err()
		}
		if werr != nil {
			err = werr
		}
		return nil, fmt.Errorf("control socket %s: %w", c.Path, err)
	}
	if !resp.OK {
		return &resp, &DaemonError{Code: resp.Code, Msg: resp.Error}
	}
	return &resp, nil
}

func (c *Client) unreachable(err error) error {
	return &unreachable{fmt.Sprintf("control socket %s: %v (is the daemon running? -s sets the path)", c.Path, err), err}
}

// Events streams the daemon's events to f until ctx ends, f fails, or
// the daemon ends the stream (with an error when this client fell behind).
func (c *Client) Events(ctx context.Context, f func(json.RawMessage) error) error {
	st, err := c.Subscribe(ctx)
	if err != nil {
		if ctx.Err() != nil {
			return nil // ended while subscribing: as ended while streaming
		}
		return err
	}
	defer st.Close()
	for {
		raw, err := st.Next()
		if err != nil {
			if ctx.Err() != nil {
				return nil
			}
			return err
		}
		if err := f(raw); err != nil {
			return err
		}
	}
}

// EventStream is an open "events" subscription.
type EventStream struct {
	c    *Client
	conn net.Conn
	stop func() bool
	b    *budget
	dec  *json.Decoder
}

// Subscribe opens an events subscription and returns once the daemon has
// accepted it: every event from then on is delivered (a command issued
// after Subscribe returns has its events in the stream).
func (c *Client) Subscribe(ctx context.Context) (*EventStream, error) {
	var d net.Dialer
	conn, err := d.DialContext(ctx, "unix", c.Path)
	if err != nil {
		return nil, c.unreachable(err)
	}
	st := &EventStream{c: c, conn: conn, b: &budget{r: conn}}
	st.stop = context.AfterFunc(ctx, func() { conn.Close() })
	st.dec = json.NewDecoder(st.b)
	if err := json.NewEncoder(conn).Encode(Request{Cmd: "events"}); err != nil {
		st.Close()
		return nil, err
	}
	// The first answer accepts (or refuses) the subscription.
	st.b.n = c.max()
	var r Response
	if err := st.dec.Decode(&r); err != nil {
		st.Close()
		if ctx.Err() != nil {
			return nil, ctx.Err()
		}
		return nil, fmt.Errorf("control socket %s: %w", c.Path, err)
	}
	if !r.OK {
		st.Close()
		return nil, &DaemonError{Code: r.Code, Msg: r.Error}
	}
	return st, nil
}

// Next returns the next event: a Response with its Event set, as raw
// JSON. The stream ends with an error (io.EOF when the daemon closed it,
// the daemon's message when this subscriber fell behind).
func (st *EventStream) Next() (json.RawMessage, error) {
	for {
		st.b.n = st.c.max()
		var raw json.RawMessage
		if err := st.dec.Decode(&raw); err != nil {
			return nil, err
		}
		var r struct {
			OK    bool            `json:"ok"`
			Error string          `json:"error"`
			Code  string          `json:"code"`
			Event json.RawMessage `json:"event"`
		}
		if err := json.Unmarshal(raw, &r); err != nil {
			return nil, fmt.Errorf("control socket %s: %w", st.c.Path, err)
		}
		if !r.OK {
			return nil, &DaemonError{Code: r.Code, Msg: r.Error}
		}
		if len(r.Event) == 0 || string(r.Event) == "null" {
			continue
		}
		return raw, nil
	}
}

// Close ends the subscription.
func (st *EventStream) Close() error {
	st.stop()
	return st.conn.Close()
}
