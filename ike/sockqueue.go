package ike

import (
	"cmp"
	"context"
	"slices"

	"github.com/keyplane/keyplane/kernelops"
)

// SocketStats is one IKE socket's receive queue as the kernel sees it.
type SocketStats struct {
	Addr string `json:"addr"` // the bound address and port
	NATT bool   `json:"nat_t"`
	// RecvBuffer is the receive buffer the kernel accounts, in bytes
	// (Linux doubles what was asked for); Drops the datagrams it dropped
	// for the socket since it opened. Measured is false when the
	// dataplane's sockets cannot tell (Err says why, when there was an
	// error): Drops means nothing then.
	RecvBuffer int    `json:"recv_buffer"`
	Drops      uint64 `json:"drops"`
	Measured   bool   `json:"measured"`
	Err        string `json:"error,omitempty"`
	// Behind counts the datagrams the engine read and dropped because
	// its loop was behind (maxQueuedDatagrams of exchanges under way or
	// maxQueuedInits new IKE SA requests queued: intake.go).
	Behind uint64 `json:"dropped_behind"`
	// Repeated counts the IKE_SA_INIT requests the engine read and
	// dropped because the same request (SPIi and source) was still
	// queued: a retransmission, answered when its first copy is.
	Repeated uint64 `json:"dropped_repeated"`
}

// SocketStats reads the receive figures of the engine's IKE sockets,
// sorted by address. It does not wait for the loop, so it answers while
// the loop is busy with the very burst it measures.
func (e *Engine) SocketStats(ctx context.Context) ([]SocketStats, error) {
	e.closeMu.Lock()
	closed := e.closed
	e.closeMu.Unlock()
	if closed {
		return nil, ErrClosed
	}
	if err := ctx.Err(); err != nil {
		return nil, err
	}
	var socks []*sock
	if l := e.sockList.Load(); l != nil {
		socks = *l
	}
	out := make([]SocketStats, 0, len(socks))
	for _, s := range socks {
		st := SocketStats{Addr: s.bound.String(), NATT: s.nat, Behind: s.behind.Load(), Repeated: s.repeats.Load()}
		if q, ok := s.conn.(kernelops.IKEQueue); ok {
			qs, err := q.QueueStats()
			if err != nil {
				st.Err = err.Error()
			} else {
				st.RecvBuffer, st.Drops, st.Measured = qs.RecvBuffer, qs.Drops, qs.DropsCounted
			}
		}
		out = append(out, st)
	}
	slices.SortFunc(out, func(a, b SocketStats) int { return cmp.Compare(a.Addr, b.Addr) })
	return out, nil
}

// resizeSockets asks for a new receive buffer on the open sockets after
// a reload changed daemon.ike_socket_buffer (0 leaves them as they are:
// the OS default cannot be asked back). Runs on the loop.
func (e *Engine) resizeSockets(n int) {
	for _, s := range e.sockets {
		if n <= 0 || s.rcvbuf == n {
			continue
		}
		q, ok := s.conn.(kernelops.IKEQueue)
		if !ok {
			continue
		}
		if err := q.SetRecvBuffer(n); err != nil {
			e.log.Warn("cannot resize the IKE socket's receive buffer", "addr", s.bound, "bytes", n, "err", err)
			continue
		}
		s.rcvbuf = n
	}
}
