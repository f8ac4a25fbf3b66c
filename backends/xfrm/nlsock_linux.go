package xfrm

import (
	"context"
	"errors"
	"fmt"
	"os"
	"sync"
	"syscall"
	"time"

	"golang.org/x/sys/unix"
)

// nlSock is one netlink socket in Go's poller, so reads honour deadlines
// and Close wakes a blocked reader.
type nlSock struct {
	f     *os.File
	rc    syscall.RawConn
	pid   uint32
	seq   uint32
	buf   []byte
	proto int
}

// recvBufSize is the receive buffer of one recvmsg: netlink dumps fill
// skbs of at most 32 KiB (the kernel caps max_recvmsg_len there), and
// single messages are far smaller.
const recvBufSize = 64 << 10

// nlError as a Go error.
type netlinkError struct {
	nlError
}

func (e *netlinkError) Error() string {
	if e.ExtMsg != "" {
		return fmt.Sprintf("%v: %s", e.Errno, e.ExtMsg)
	}
	return e.Errno.Error()
}

func (e *netlinkError) Unwrap() error { return e.Errno }

// openNLSock opens a netlink socket of proto in ns, bound to groups (a
// bitmask of multicast groups, 0 for a request socket). rcvbuf > 0 sets
// the receive buffer, with SO_RCVBUFFORCE first so root may exceed
// net.core.rmem_max.
func openNLSock(ns *nsRef, proto int, groups uint32, rcvbuf int) (*nlSock, error) {
	var fd int
	err := ns.do(func() error {
		var err error
		fd, err = unix.Socket(unix.AF_NETLINK, unix.SOCK_RAW|unix.SOCK_CLOEXEC|unix.SOCK_NONBLOCK, proto)
		return err
	})
	if err != nil {
		return nil, fmt.Errorf("netlink socket: %w", err)
	}
	fail := func(err error) (*nlSock, error) {
		unix.Close(fd)
		return nil, err
	}
	// Extended acks carry the kernel's reason text; capped acks keep an
	// error from echoing the whole request back.
	_ = unix.SetsockoptInt(fd, unix.SOL_NETLINK, unix.NETLINK_EXT_ACK, 1)
	_ = unix.SetsockoptInt(fd, unix.SOL_NETLINK, unix.NETLINK_CAP_ACK, 1)
	if rcvbuf > 0 {
		if err := setRcvbuf(fd, rcvbuf); err != nil {
			return fail(err)
		}
	}
	// Room for batches: one sendmsg carries many requests.
	if unix.SetsockoptInt(fd, unix.SOL_SOCKET, unix.SO_SNDBUFFORCE, 1<<20) != nil {
		_ = unix.SetsockoptInt(fd, unix.SOL_SOCKET, unix.SO_SNDBUF, 1<<20)
	}
	if err := unix.Bind(fd, &unix.SockaddrNetlink{Family: unix.AF_NETLINK, Groups: groups}); err != nil {
		return fail(fmt.Errorf("netlink bind (groups %#x): %w", groups, err))
	}
	sa, err := unix.Getsockname(fd)
	if err != nil {
		return fail(err)
	}
	nsa, ok := sa.(*unix.SockaddrNetlink)
	if !ok {
		return fail(fmt.Errorf("netlink getsockname: %T", sa))
	}
	f := os.NewFile(uintptr(fd), "netlink")
	rc, err := f.SyscallConn()
	if err != nil {
		f.Close()
		return nil, err
	}
	return &nlSock{f: f, rc: rc, pid: nsa.Pid, buf: make([]byte, recvBufSize), proto: proto,
		seq: uint32(time.Now().UnixNano())}, nil
}

func setRcvbuf(fd, n int) error {
	if unix.SetsockoptInt(fd, unix.SOL_SOCKET, unix.SO_RCVBUFFORCE, n) == nil {
		return nil
	}
	if err := unix.SetsockoptInt(fd, unix.SOL_SOCKET, unix.SO_RCVBUF, n); err != nil {
		return fmt.Errorf("SO_RCVBUF %d: %w", n, err)
	}
	return nil
}

func (s *nlSock) setRcvbuf(n int) error {
	var err error
	cerr := s.rc.Control(func(fd uintptr) { err = setRcvbuf(int(fd), n) })
	return errors.Join(cerr, err)
}

func (s *nlSock) close() error { return s.f.Close() }

func (s *nlSock) nextSeq() uint32 {
	s.seq++
	if s.seq == 0 {
		s.seq++
	}
	return s.seq
}

// reserveSeq reserves n consecutive sequence numbers and returns the first.
func (s *nlSock) reserveSeq(n int) uint32 {
	first := s.nextSeq()
	if uint64(first)+uint64(n) > 1<<32-1 {
		first = 1
	}
	s.seq = first + uint32(n) - 1
	return first
}

// send writes b (one or more netlink messages) with one sendmsg.
func (s *nlSock) send(b []byte) error {
	var err error
	werr := s.rc.Write(func(fd uintptr) bool {
		err = unix.Sendto(int(fd), b, 0, &unix.SockaddrNetlink{Family: unix.AF_NETLINK})
		return err != unix.EAGAIN
	})
	if werr != nil {
		return werr
	}
	return err
}

// recv reads one datagram into the socket's buffer; the result is valid
// until the next recv.
func (s *nlSock) recv() ([]byte, error) {
	var n, flags int
	var err error
	rerr := s.rc.Read(func(fd uintptr) bool {
		n, _, flags, _, err = unix.Recvmsg(int(fd), s.buf, nil, 0)
		return err != unix.EAGAIN
	})
	if rerr != nil {
		return nil, rerr
	}
	if err != nil {
		return nil, err
	}
	if flags&unix.MSG_TRUNC != 0 {
		return nil, fmt.Errorf("netlink message larger than %d bytes", len(s.buf))
	}
	return s.buf[:n], nil
}

// watch makes blocking reads and writes on s return when ctx is done;
// the returned func undoes it and reports ctx's error if it fired.
func (s *nlSock) watch(ctx context.Context) func() error {
	if ctx.Done() == nil {
		return func() error { return nil }
	}
	stop := context.AfterFunc(ctx, func() { _ = s.f.SetDeadline(time.Unix(1, 0)) })
	return func() error {
		if !stop() {
			_ = s.f.SetDeadline(time.Time{})
			return ctx.Err()
		}
		return nil
	}
}

// request sends one message (seq already in it) and reads until its ack
// or error; replies with seq go to onReply (may be nil).
func (s *nlSock) request(ctx context.Context, msg []byte, seq uint32, onReply func(nlMsg) error) error {
	if err := ctx.Err(); err != nil {
		return err
	}
	done := s.watch(ctx)
	err := s.exchange(msg, seq, onReply)
	if cerr := done(); cerr != nil {
		return cerr
	}
	return err
}

func (s *nlSock) exchange(msg []byte, seq uint32, onReply func(nlMsg) error) error {
	if err := s.send(msg); err != nil {
		return err
	}
	for {
		b, err := s.recv()
		if err != nil {
			return err
		}
		for len(b) > 0 {
			var m nlMsg
			m, b, err = nextMsg(b)
			if err != nil {
				return err
			}
			if m.Seq != seq {
				continue // a stale reply of an abandoned request
			}
			switch m.Type {
			case unix.NLMSG_ERROR:
				e, err := parseNlError(m)
				if err != nil {
					return err
				}
				if e.Errno != 0 {
					return &netlinkError{e}
				}
				return nil
			case unix.NLMSG_DONE:
				return nil
			case unix.NLMSG_NOOP:
			default:
				if onReply != nil {
					if err := onReply(m); err != nil {
						return err
					}
				}
			}
		}
	}
}

// dump sends a dump request and hands every message of the answer to fn,
// reading one datagram at a time into the same buffer. fn returning false
// stops early; the socket then holds the rest of the dump and must be
// closed (clean reports false).
func (s *nlSock) dump(ctx context.Context, msg []byte, seq uint32, fn func(nlMsg) bool) (clean bool, err error) {
	if err := ctx.Err(); err != nil {
		return true, err
	}
	done := s.watch(ctx)
	clean, err = s.dumpLoop(msg, seq, fn)
	if cerr := done(); cerr != nil {
		return false, cerr
	}
	return clean, err
}

func (s *nlSock) dumpLoop(msg []byte, seq uint32, fn func(nlMsg) bool) (bool, error) {
	if err := s.send(msg); err != nil {
		return true, err
	}
	for {
		b, err := s.recv()
		if err != nil {
			return false, err
		}
		for len(b) > 0 {
			var m nlMsg
			m, b, err = nextMsg(b)
			if err != nil {
				return false, err
			}
			if m.Seq != seq {
				continue
			}
			switch m.Type {
			case unix.NLMSG_DONE:
				return true, nil
			case unix.NLMSG_ERROR:
				e, err := parseNlError(m)
				if err != nil {
					return false, err
				}
				if e.Errno != 0 {
					return true, &netlinkError{e}
				}
			case unix.NLMSG_NOOP:
			default:
				if !fn(m) {
					return false, nil
				}
			}
		}
	}
}

// sockPool keeps a few idle request sockets, so concurrent calls and a
// dump being iterated while its loop body makes calls each get their own.
type sockPool struct {
	ns    *nsRef
	proto int

	mu     sync.Mutex
	free   []*nlSock
	closed bool
}

const maxIdleSocks = 4

func (p *sockPool) get() (*nlSock, error) {
	p.mu.Lock()
	if p.closed {
		p.mu.Unlock()
		return nil, errPoolClosed
	}
	if n := len(p.free); n > 0 {
		s := p.free[n-1]
		p.free = p.free[:n-1]
		p.mu.Unlock()
		return s, nil
	}
	p.mu.Unlock()
	return openNLSock(p.ns, p.proto, 0, 0)
}

var errPoolClosed = errors.New("closed")

// put returns s for reuse when ok; a socket that saw an error or an
// abandoned dump may hold stale data and is closed instead.
func (p *sockPool) put(s *nlSock, ok bool) {
	p.mu.Lock()
	if ok && !p.closed && len(p.free) < maxIdleSocks {
		p.free = append(p.free, s)
		p.mu.Unlock()
		return
	}
	p.mu.Unlock()
	s.close()
}

func (p *sockPool) close() {
	p.mu.Lock()
	p.closed = true
	free := p.free
	p.free = nil
	p.mu.Unlock()
	for _, s := range free {
		s.close()
	}
}
