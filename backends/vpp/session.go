//go:build vpp

package vpp

import (
	"context"
	"errors"
	"fmt"
	"io"
	"reflect"
	"sync"
	"sync/atomic"
	"time"

	"go.fd.io/govpp/adapter/socketclient"
	"go.fd.io/govpp/api"
	"go.fd.io/govpp/binapi/memclnt"
	"go.fd.io/govpp/core"
)

// session is one connection to VPP: the API socket through GoVPP's socket
// client and core, and the stats segment. A session that fails is thrown
// away whole; the backend dials a new one.
type session struct {
	sc      *socketclient.Client
	conn    *core.Connection
	stats   statsReader // nil when counters are disabled
	statsMu sync.Mutex  // a stats directory is read by one goroutine at a time
	timeout time.Duration
	lastRx  atomic.Int64 // unix nanoseconds of the last message from VPP

	dead     chan struct{} // closed when the session is found dead or closed
	deadOnce sync.Once
	life     context.Context // cancelled with dead
	kill     context.CancelFunc
	evCtx    context.Context    // the watchers' context
	cancel   context.CancelFunc // ends it
	wg       sync.WaitGroup     // the session's goroutines
}

// dialSession connects to VPP's API socket, checks that every message the
// backend uses has the CRC it was built for, and opens the stats segment.
func dialSession(p params) (*session, error) {
	sc := socketclient.NewVppClient(p.socket)
	sc.SetClientName("keyplane")
	sc.SetConnectTimeout(p.timeout)
	conn, err := core.Connect(sc)
	if err != nil {
		return nil, fmt.Errorf("connect to VPP API socket %s: %w", p.socket, err)
	}
	s := &session{sc: sc, conn: conn, timeout: p.timeout, dead: make(chan struct{})}
	s.life, s.kill = context.WithCancel(context.Background())
	s.evCtx, s.cancel = context.WithCancel(s.life)
	if err := checkCompat(conn.GetMessageID, p.socket, p.timeout); err != nil {
		conn.Disconnect()
		return nil, err
	}
	if p.statsSocket != "" {
		st, err := openStats(p.statsSocket, p.timeout)
		if err != nil {
			conn.Disconnect()
			return nil, fmt.Errorf("open VPP stats segment %s (set stats-socket=none to run without counters): %w", p.statsSocket, err)
		}
		s.stats = st
	}
	return s, nil
}

// markDead reports whether this call was the one that killed it.
func (s *session) markDead() bool {
	first := false
	s.deadOnce.Do(func() { close(s.dead); s.kill(); first = true })
	return first
}

func (s *session) isDead() bool {
	select {
	case <-s.dead:
		return true
	default:
		return false
	}
}

// close tears the session down and waits for its goroutines.
func (s *session) close() {
	s.markDead()
	s.cancel()
	s.conn.Disconnect()
	if s.stats != nil {
		// Unmap the segment only once a read in it is done; reads that
		// come after find the session dead (readCounters).
		s.statsMu.Lock()
		s.stats.Close()
		s.statsMu.Unlock()
	}
	s.wg.Wait()
}

func (s *session) reqCtx(ctx context.Context) (context.Context, context.CancelFunc) {
	ctx, cancel := context.WithTimeout(ctx, s.timeout)
	// A request on a session found dead must not wait for its timeout.
	ctx2, cancel2 := context.WithCancelCause(ctx)
	stop := context.AfterFunc(s.life, func() { cancel2(errConnLost) })
	return ctx2, func() { stop(); cancel2(nil); cancel() }
}

// invoke sends req and decodes the reply; a reply with a non-zero retval
// is returned as api.VPPApiError.
func (s *session) invoke(ctx context.Context, req, reply api.Message) error {
	if s.isDead() {
		return errConnLost
	}
	rctx, cancel := s.reqCtx(ctx)
	defer cancel()
	if err := s.conn.Invoke(rctx, req, reply); err != nil {
		return s.transportErr(rctx, err)
	}
	s.lastRx.Store(time.Now().UnixNano())
	if rv := retval(reply); rv != 0 {
		return api.VPPApiError(rv)
	}
	return nil
}

func (s *session) transportErr(ctx context.Context, err error) error {
	if c := context.Cause(ctx); c != nil && errors.Is(c, errConnLost) {
		return errConnLost
	}
	if s.isDead() {
		return errConnLost
	}
	if ctx.Err() != nil && !errors.Is(err, ctx.Err()) {
		return fmt.Errorf("%w (%v)", ctx.Err(), err)
	}
	return err
}

// retval reads the Retval field every VPP reply carries.
func retval(m api.Message) int32 {
	v := reflect.ValueOf(m).Elem().FieldByName("Retval")
	if !v.IsValid() {
		return 0
	}
	return int32(v.Int())
}

// dump sends a dump request followed by control_ping and collects every
// details message until control_ping_reply. It collects before returning
// because GoVPP drops replies for a reader slower than 100 ms per
// message: a dump must be drained at once, not at the caller's pace.
func dump[D api.Message](ctx context.Context, s *session, req api.Message) ([]D, error) {
	if s.isDead() {
		return nil, errConnLost
	}
	rctx, cancel := s.reqCtx(ctx)
	defer cancel()
	st, err := s.conn.NewStream(rctx, core.WithReplySize(1024))
	if err != nil {
		return nil, s.transportErr(rctx, err)
	}
	defer st.Close()
	if err := st.SendMsg(req); err != nil {
		return nil, s.transportErr(rctx, err)
	}
	if err := st.SendMsg(&memclnt.ControlPing{}); err != nil {
		return nil, s.transportErr(rctx, err)
	}
	var out []D
	for {
		m, err := st.RecvMsg()
		if err != nil {
			if err == io.EOF {
				return out, nil
			}
			return nil, s.transportErr(rctx, err)
		}
		s.lastRx.Store(time.Now().UnixNano())
		switch x := m.(type) {
		case D:
			out = append(out, x)
		case *memclnt.ControlPingReply:
			return out, nil
		default:
			return nil, fmt.Errorf("dump %s: unexpected reply %s", req.GetMessageName(), m.GetMessageName())
		}
	}
}

// busy reports whether VPP answered anything within the last timeout: a
// ping stuck behind a long dump is not a dead VPP.
func (s *session) busy() bool {
	return time.Since(time.Unix(0, s.lastRx.Load())) < s.timeout
}

// ping is the keepalive: a control_ping round trip.
func (s *session) ping(ctx context.Context) error {
	return s.invoke(ctx, &memclnt.ControlPing{}, &memclnt.ControlPingReply{})
}
