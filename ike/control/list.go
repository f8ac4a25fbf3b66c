package control

import (
	"context"
	"encoding/json"
	"fmt"
	"iter"
	"net"
	"strconv"
	"time"

	"github.com/keyplane/keyplane/ike"
)

// The listings (ike-list, child-list) are written as the engine yields
// them (ike.Engine.ListIKESAs), listBatch entries at a time: the daemon
// never holds a listing of 100,000 SAs as one document. Their arguments:
//
//	after    list the IKE SAs whose ID is larger (ike.ListOptions.After)
//	limit    at most this many IKE SAs (ike.ListOptions.Limit)
//	since    a cursor (ike.Cursor, "0" for everything): list what changed
//	         after it (ike.Engine.Changes); not with after or limit
//	counters "1": with since, read the children's counters (one bulk
//	         read of the dataplane); without, they are omitted
//	stream   "1": one response per batch, "more": true on all but the
//	         last (Client.List); otherwise one response, as any command
//
// A one-response listing puts "ok" after the list, so that a failure
// midway can still say so. A listing since a cursor has, after the
// entries, the IKE SAs or children deleted ("deleted", in batches too),
// and "cursor", the cursor for the next listing, in its last response.

// listBatch is how many entries one write (or one response of a stream)
// carries.
const listBatch = 256

// Argument names of the listings.
const (
	ArgAfter    = "after"
	ArgLimit    = "limit"
	ArgStream   = "stream"
	ArgSince    = "since"
	ArgCounters = "counters"
)

// listReq is a listing's arguments, read.
type listReq struct {
	opts     ike.ListOptions
	stream   bool
	delta    bool // since given
	since    ike.Cursor
	counters bool
}

// isList says whether cmd is a listing served by serveList.
func isList(cmd string) bool { return cmd == "ike-list" || cmd == "child-list" }

// listArgs reads a listing's arguments.
func listArgs(req Request) (ike.ListOptions, bool, error) {
	var o ike.ListOptions
	num := func(k string) (uint64, error) {
		v, ok := req.Args[k]
		if !ok {
			return 0, nil
		}
		n, err := strconv.ParseUint(v, 10, 32)
		if err != nil {
			return 0, fmt.Errorf("%w: arg %s: want a number from 0 to %d", ErrBadRequest, k, uint32(1<<32-1))
		}
		return n, nil
	}
	after, err := num(ArgAfter)
	if err != nil {
		return o, false, err
	}
	limit, err := num(ArgLimit)
	if err != nil {
		return o, false, err
	}
	o.After, o.Limit = uint32(after), int(limit)
	stream := false
	switch v, ok := req.Args[ArgStream]; {
	case !ok, v == "0":
	case v == "1":
		stream = true
	default:
		return o, false, fmt.Errorf("%w: arg %s: want 0 or 1", ErrBadRequest, ArgStream)
	}
	return o, stream, nil
}

// deltaArgs reads a listing's arguments, those of a listing of changes
// included.
func deltaArgs(req Request) (listReq, error) {
	var r listReq
	var err error
	r.opts, r.stream, err = listArgs(req)
	if err != nil {
		return r, err
	}
	v, ok := req.Args[ArgSince]
	if ok {
		if r.since, err = ike.ParseCursor(v); err != nil {
			return r, fmt.Errorf("%w: arg %s: %v", ErrBadRequest, ArgSince, err)
		}
		r.delta = true
		if r.opts != (ike.ListOptions{}) {
			return r, fmt.Errorf("%w: arg %s: a listing of changes is not paged (no %s or %s)", ErrBadRequest, ArgSince, ArgAfter, ArgLimit)
		}
	}
	switch v, ok := req.Args[ArgCounters]; {
	case !ok, v == "0":
	case v == "1" && r.delta:
		r.counters = true
	case v == "1":
		return r, fmt.Errorf("%w: arg %s: only with %s (a full listing always reads them)", ErrBadRequest, ArgCounters, ArgSince)
	default:
		return r, fmt.Errorf("%w: arg %s: want 0 or 1", ErrBadRequest, ArgCounters)
	}
	return r, nil
}

// listWriter writes a listing's entries in batches, within the write
// timeout for each batch.
type listWriter struct {
	s      *Server
	c      net.Conn
	key    string // of the entries being written: "ike_sas", "children" or "deleted"
	stream bool
	buf    []byte
	n      int // entries in buf
	begun  bool
	opened bool // a list was just begun in one response: no comma before its first entry
}

// jsonAppender is an entry that writes its own JSON, as encoding/json
// would (ike.ChildInfo, ike.IKESAInfo): without reflection and straight
// into the batch.
type jsonAppender interface {
	AppendJSON([]byte) ([]byte, error)
}

// add appends one entry, writing a batch when it is full.
func (w *listWriter) add(v jsonAppender) error { return w.addAs(w.key, v) }

// addAs appends one entry under key: after entries under another key,
// their list is closed (a stream writes their batch) and key's begins.
func (w *listWriter) addAs(key string, v jsonAppender) error {
	first := w.n == 0 // of its batch
	switch {
	case key == w.key:
	case w.stream:
		if w.n > 0 {
			w.buf = append(w.buf, "]}\n"...)
			if err := w.flush(); err != nil {
				return err
			}
		}
		first = true
	case w.begun:
		// One response: `...],"deleted":[` and the entry.
		w.buf = append(w.buf, `],"`...)
		w.buf = append(w.buf, key...)
		w.buf = append(w.buf, `":[`...)
		w.opened = true
	}
	w.key = key
	switch {
	case first && w.stream:
		w.buf = append(w.buf, `{"ok":true,"more":true,"`...)
		w.buf = append(w.buf, w.key...)
		w.buf = append(w.buf, `":[`...)
	case !w.begun:
		w.buf = append(w.buf, `{"`...)
		w.buf = append(w.buf, w.key...)
		w.buf = append(w.buf, `":[`...)
	case !w.opened:
		w.buf = append(w.buf, ',')
	}
	w.begun, w.opened = true, false
	b, err := v.AppendJSON(w.buf)
	if err != nil {
		return err
	}
	w.buf = b
	w.n++
	if w.n == listBatch {
		if w.stream {
			w.buf = append(w.buf, "]}\n"...)
		}
		return w.flush()
	}
	return nil
}

func (w *listWriter) flush() error {
	if len(w.buf) == 0 {
		return nil
	}
	if err := w.c.SetWriteDeadline(time.Now().Add(w.s.lim.WriteTimeout)); err != nil {
		return err
	}
	_, err := w.c.Write(w.buf)
	w.buf, w.n = w.buf[:0], 0
	return err
}

// end closes the listing with its outcome (nil: complete); cursor, when
// not zero, is the next cursor of a listing of changes.
func (w *listWriter) end(failed error, cursor ike.Cursor) error {
	tail := []byte(`{"ok":true}`)
	if !cursor.IsZero() {
		tail = fmt.Appendf(nil, `{"ok":true,"cursor":"%s"}`, cursor)
	}
	if failed != nil {
		r, err := json.Marshal(Response{Error: failed.Error(), Code: ErrorCode(failed)})
		if err != nil {
			return err
		}
		tail = r
	}
	switch {
	case w.stream:
		if w.n > 0 {
			w.buf = append(w.buf, "]}\n"...)
		}
	case !w.begun:
		if failed == nil {
			tail = fmt.Appendf(nil, `{"ok":true,"%s":[]%s`, w.key, tail[len(`{"ok":true`):])
		}
	default:
		// Continue the open object: `],"ok":true}` or `],"ok":false,...}`.
		w.buf = append(w.buf, ']', ',')
		tail = tail[1:]
	}
	w.buf = append(w.buf, tail...)
	w.buf = append(w.buf, '\n')
	return w.flush()
}

// serveList answers a listing.
func (s *Server) serveList(ctx context.Context, c net.Conn, enc *json.Encoder, req Request) {
	lr, err := deltaArgs(req)
	if err != nil {
		_ = s.send(c, enc, Response{Error: err.Error(), Code: ErrorCode(err)})
		return
	}
	opts := lr.opts
	w := &listWriter{s: s, c: c, stream: lr.stream}
	var failed error
	var werr error
	var next ike.Cursor
	if lr.delta {
		w.key = "children"
		if req.Cmd == "ike-list" {
			w.key = "ike_sas"
		}
		next, failed, werr = s.serveChanges(ctx, req.Cmd, lr, w)
	} else if req.Cmd == "ike-list" {
		w.key = "ike_sas"
		failed, werr = drain(s.Engine.ListIKESAs(ctx, opts), w)
	} else {
		w.key = "children"
		failed, werr = drain(s.Engine.ListChildren(ctx, opts), w)
	}
	if werr != nil {
		s.Log.Debug("control socket: listing not taken", "cmd", req.Cmd, "err", werr)
		return
	}
	if failed != nil {
		next = ike.Cursor{}
	}
	if err := w.end(failed, next); err != nil {
		s.Log.Debug("control socket: listing not taken", "cmd", req.Cmd, "err", err)
	}
}

// serveChanges writes a listing of changes: the entries, then the
// deleted ones. It returns the next cursor.
func (s *Server) serveChanges(ctx context.Context, cmd string, lr listReq, w *listWriter) (next ike.Cursor, failed, werr error) {
	ch, err := s.Engine.Changes(ctx, lr.since, ike.ChangeOptions{Counters: lr.counters})
	if err != nil {
		return next, err, nil
	}
	gone := ch.DeletedChildren
	if cmd == "ike-list" {
		gone = ch.DeletedIKESAs
		failed, werr = drain(ch.IKESAs(ctx), w)
	} else {
		failed, werr = drain(ch.Children(ctx), w)
	}
	if failed != nil || werr != nil {
		return next, failed, werr
	}
	for i := range gone {
		if err := w.addAs("deleted", &gone[i]); err != nil {
			return next, nil, err
		}
	}
	return ch.Next, nil, nil
}

// drain writes what seq yields: the listing's failure, or the writer's.
func drain[T any, P interface {
	*T
	jsonAppender
}](seq iter.Seq2[T, error], w *listWriter) (failed, werr error) {
	for v, err := range seq {
		if err != nil {
			return err, nil
		}
		if err := w.add(P(&v)); err != nil {
			return nil, err
		}
	}
	return nil, nil
}

// List sends a listing request (ike-list, child-list) and hands each
// response of its stream, a batch of entries, to each: the client holds
// one batch at a time. A failure the daemon reports midway is an error
// after the batches before it.
func (c *Client) List(ctx context.Context, req Request, each func(*Response) error) error {
	args := map[string]string{ArgStream: "1"}
	for k, v := range req.Args {
		args[k] = v
	}
	req.Args = args
	var d net.Dialer
	conn, err := d.DialContext(ctx, "unix", c.Path)
	if err != nil {
		return c.unreachable(err)
	}
	defer conn.Close()
	stop := context.AfterFunc(ctx, func() { conn.Close() })
	defer stop()
	werr := json.NewEncoder(conn).Encode(req)
	b := &budget{r: conn}
	dec := json.NewDecoder(b)
	for {
		b.n = c.max()
		var r Response
		if err := dec.Decode(&r); err != nil {
			if ctx.Err() != nil {
				return ctx.Err()
			}
			if werr != nil {
				err = werr
			}
			return fmt.Errorf("control socket %s: %w", c.Path, err)
		}
		if !r.OK {
			return &DaemonError{Code: r.Code, Msg: r.Error}
		}
		if err := each(&r); err != nil {
			return err
		}
		if !r.More {
			return nil
		}
	}
}
