//go:build linux || freebsd || netbsd || darwin

package pfkey

import (
	"context"
	"errors"
	"fmt"
	"math/rand/v2"
	"sync"
	"sync/atomic"
	"syscall"

	"github.com/keyplane/keyplane/backends/pfkey/sadb"
	"github.com/keyplane/keyplane/kernelops"
)

// Replies to PF_KEY requests are broadcast: a SADB_ADD's answer goes to
// every PF_KEY socket, an error to the sender only. A reply is matched by
// sadb_msg_seq, sadb_msg_pid and type. Sequence numbers come from one
// counter for the whole process, so two sockets of one process never
// wait for the same number; it starts high and random, clear of the
// small numbers the kernel gives acquires (Linux's GETSPI and ADD look
// larval SAs up by sequence number).
var seqCounter atomic.Uint32

func init() { seqCounter.Store(0x80000000 | rand.Uint32()>>2) }

func nextSeq() uint32 {
	for {
		if s := seqCounter.Add(1); s != 0 {
			return s
		}
	}
}

// writeMu serialises the sending of requests across the process. The
// kernel processes a PF_KEY message inside write(2), under one mutex
// (Linux: xfrm_cfg_mutex), and queues the reply before write returns, so
// concurrent writers gain nothing — but a writer starved on that mutex
// while others run thousands of requests sees its socket fill with their
// broadcasts, and af_key then drops its reply without a word (seen in
// the lab: 10,000 policies on eight sockets lost replies). Holding writeMu
// from drain to the end of write means nothing of ours lands in the
// socket before the reply; the replies themselves are read in parallel.
var writeMu sync.Mutex

// send drains s and writes wire under writeMu.
func (s *sock) send(wire []byte) error {
	writeMu.Lock()
	defer writeMu.Unlock()
	s.drain()
	return s.write(wire)
}

// pool holds request sockets; each carries one request at a time, so
// requests on different sockets run in parallel.
type pool struct {
	open func() (*sock, error)
	sem  chan struct{}

	mu     sync.Mutex
	idle   []*sock
	closed bool
}

func newPool(size int, open func() (*sock, error)) *pool {
	return &pool{open: open, sem: make(chan struct{}, size)}
}

func (p *pool) get(ctx context.Context) (*sock, error) {
	select {
	case p.sem <- struct{}{}:
	case <-ctx.Done():
		return nil, ctx.Err()
	}
	p.mu.Lock()
	if p.closed {
		p.mu.Unlock()
		<-p.sem
		return nil, kernelops.ErrClosed
	}
	if n := len(p.idle); n > 0 {
		s := p.idle[n-1]
		p.idle = p.idle[:n-1]
		p.mu.Unlock()
		return s, nil
	}
	p.mu.Unlock()
	s, err := p.open()
	if err != nil {
		<-p.sem
		return nil, err
	}
	return s, nil
}

// put returns s; a socket in an unknown state (a dump cut short, a
// timed-out request) is closed instead.
func (p *pool) put(s *sock, reuse bool) {
	p.mu.Lock()
	if reuse && !p.closed {
		p.idle = append(p.idle, s)
		s = nil
	}
	p.mu.Unlock()
	if s != nil {
		s.close()
	}
	<-p.sem
}

func (p *pool) close() {
	p.mu.Lock()
	p.closed = true
	idle := p.idle
	p.idle = nil
	p.mu.Unlock()
	for _, s := range idle {
		s.close()
	}
}

// request sends m and returns the kernel's reply; a reply with an errno
// becomes the kernelops error for op.
func (b *driver) request(ctx context.Context, obj string, m *sadb.Msg) (*sadb.Msg, error) {
	reply, err := b.exchange(ctx, obj, m, true)
	if err != nil {
		return nil, err
	}
	if reply.Errno != 0 {
		return reply, kerr(obj, m.Type, syscall.Errno(reply.Errno))
	}
	return reply, nil
}

// exchange sends m on a pooled socket. With waitReply it waits for the
// matching reply; without, it only collects an error the kernel queued
// while processing (Linux answers a successful SADB_X_MIGRATE with
// nothing, and handles every message synchronously inside write).
func (b *driver) exchange(ctx context.Context, obj string, m *sadb.Msg, waitReply bool) (*sadb.Msg, error) {
	m.Seq, m.PID = nextSeq(), b.pid
	wire, err := m.Marshal(b.x.d)
	if err != nil {
		return nil, &kernelops.Error{Object: obj, Err: kernelops.ErrInvalid, Detail: err.Error()}
	}
	s, err := b.pool.get(ctx)
	if err != nil {
		return nil, b.sockErr(obj, err)
	}
	reuse := false
	defer func() { b.pool.put(s, reuse) }()
	stop := s.deadlineFor(ctx)
	defer stop()
	if err := s.send(wire); err != nil {
		var errno syscall.Errno
		if errors.As(err, &errno) {
			reuse = true
			return nil, kerr(obj, m.Type, errno)
		}
		return nil, b.sockErr(obj, err)
	}
	skipped := 0
	for {
		var raw []byte
		if waitReply {
			raw, err = s.read()
		} else if raw, err = s.tryRead(); raw == nil && err == nil {
			reuse = true
			return &sadb.Msg{Header: m.Header}, nil
		}
		if err != nil {
			err = timeoutErr(ctx, err)
			if errors.Is(err, context.DeadlineExceeded) {
				err = fmt.Errorf("%w (after %d other messages; receive queue overflowed: %v)", err, skipped, mayHaveLost(s.fd()))
			}
			return nil, b.sockErr(obj, err)
		}
		t, _, seq, pid, ok := header(raw)
		if !ok || t != m.Type || seq != m.Seq || pid != m.PID {
			skipped++
			continue // someone else's broadcast
		}
		reply, err := sadb.Parse(b.x.d, raw)
		if err != nil {
			return nil, &kernelops.Error{Object: obj, Err: err, Detail: "unparsable reply"}
		}
		reuse = true
		return reply, nil
	}
}

// dump sends a SADB_DUMP or SADB_X_SPDDUMP and hands each reply to
// yield as it arrives; the kernel paces the dump by the socket's
// receive buffer, so memory stays flat however many entries there are.
// The kernel numbers dump replies (not by the request's sequence
// number); the last one has sequence number 0. An empty table is an
// ENOENT reply.
func (b *driver) dump(ctx context.Context, t sadb.MsgType, yield func(*sadb.Msg) bool) error {
	m := &sadb.Msg{Header: sadb.Header{Type: t, SAType: sadb.SATypeUnspec, Seq: nextSeq(), PID: b.pid}}
	wire, err := m.Marshal(b.x.d)
	if err != nil {
		return err
	}
	s, err := b.pool.get(ctx)
	if err != nil {
		return b.sockErr("", err)
	}
	reuse := false
	defer func() { b.pool.put(s, reuse) }()
	if err := s.send(wire); err != nil {
		return b.sockErr("", err)
	}
	for {
		stop := s.deadlineFor(ctx) // per message: a long dump may take long in all
		raw, err := s.read()
		stop()
		if err != nil {
			return b.sockErr("", timeoutErr(ctx, err))
		}
		rt, errno, seq, pid, ok := header(raw)
		if !ok || rt != t || pid != b.pid {
			continue
		}
		if errno != 0 {
			reuse = true
			if syscall.Errno(errno) == syscall.ENOENT {
				return nil
			}
			return kerr("", t, syscall.Errno(errno))
		}
		r, err := sadb.Parse(b.x.d, raw)
		if err != nil {
			return &kernelops.Error{Err: err, Detail: "unparsable dump entry"}
		}
		if !yield(r) {
			// Closing the socket ends the kernel's dump; draining
			// thousands of entries to reuse it would cost more.
			return nil
		}
		if seq == 0 {
			reuse = true
			return nil
		}
	}
}

func (b *driver) sockErr(obj string, err error) error {
	var ke *kernelops.Error
	switch {
	case errors.As(err, &ke):
		return err
	case errors.Is(err, kernelops.ErrClosed):
		return &kernelops.Error{Object: obj, Err: kernelops.ErrClosed}
	case errors.Is(err, context.Canceled), errors.Is(err, context.DeadlineExceeded):
		return &kernelops.Error{Object: obj, Err: err}
	}
	var errno syscall.Errno
	if errors.As(err, &errno) {
		return kernelops.FromErrno("", "", obj, errno, "PF_KEY socket: "+err.Error())
	}
	return &kernelops.Error{Object: obj, Err: err}
}
