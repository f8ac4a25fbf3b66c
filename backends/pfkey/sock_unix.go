//go:build linux || freebsd || netbsd || darwin

package pfkey

import (
	"context"
	"encoding/binary"
	"errors"
	"fmt"
	"os"
	"syscall"
	"time"

	"github.com/keyplane/keyplane/backends/pfkey/sadb"
	"golang.org/x/sys/unix"
)

// sock is one PF_KEY socket, non-blocking under Go's poller so reads
// honour deadlines and Close unblocks them.
type sock struct {
	f   *os.File
	rc  syscall.RawConn
	buf []byte
}

const (
	readBuf = 64 << 10
	// defaultTimeout bounds a request whose context has no deadline;
	// generous because the VM lab runs the kernel under emulation.
	defaultTimeout = 30 * time.Second
)

// newSock wraps a PF_KEY socket fd.
func newSock(fd int) (*sock, error) {
	if err := unix.SetNonblock(fd, true); err != nil {
		unix.Close(fd)
		return nil, err
	}
	unix.CloseOnExec(fd)
	f := os.NewFile(uintptr(fd), "pf_key")
	rc, err := f.SyscallConn()
	if err != nil {
		f.Close()
		return nil, err
	}
	return &sock{f: f, rc: rc, buf: make([]byte, readBuf)}, nil
}

func (s *sock) close() error { return s.f.Close() }

func (s *sock) fd() (fd int) {
	s.rc.Control(func(f uintptr) { fd = int(f) })
	return fd
}

func (s *sock) write(b []byte) error {
	var werr error
	err := s.rc.Write(func(fd uintptr) bool {
		_, werr = unix.Write(int(fd), b)
		return werr != unix.EAGAIN
	})
	if err != nil {
		return err
	}
	return werr
}

// read returns the next message; it stays valid until the next read.
// A message longer than the buffer grows it for next time and fails.
func (s *sock) read() ([]byte, error) {
	var n int
	var rerr error
	err := s.rc.Read(func(fd uintptr) bool {
		n, rerr = unix.Read(int(fd), s.buf)
		return rerr != unix.EAGAIN
	})
	if err != nil {
		return nil, err
	}
	if rerr != nil {
		return nil, rerr
	}
	b := s.buf[:n]
	if n >= sadb.HeaderLen {
		if want := int(binary.NativeEndian.Uint16(b[4:6])) * 8; want > n {
			s.buf = make([]byte, want)
			return nil, fmt.Errorf("PF_KEY message of %d bytes truncated to %d", want, n)
		}
	}
	return b, nil
}

// tryRead is read without waiting: (nil, nil) when nothing is queued.
func (s *sock) tryRead() ([]byte, error) {
	var n int
	var rerr error
	err := s.rc.Read(func(fd uintptr) bool {
		n, rerr = unix.Read(int(fd), s.buf)
		return true
	})
	if err != nil {
		return nil, err
	}
	if rerr == unix.EAGAIN {
		return nil, nil
	}
	if rerr != nil {
		return nil, rerr
	}
	return s.buf[:n], nil
}

// drain discards what other sockets' traffic left queued here: every
// PF_KEY socket receives the kernel's broadcasts.
func (s *sock) drain() {
	for range 1 << 16 {
		if b, err := s.tryRead(); b == nil || err != nil {
			return
		}
	}
}

// deadlineFor arms s for ctx: the context's deadline (or the default),
// and cancellation that unblocks a read. The returned stop disarms it.
func (s *sock) deadlineFor(ctx context.Context) (stop func()) {
	d, ok := ctx.Deadline()
	if !ok {
		d = time.Now().Add(defaultTimeout)
	}
	s.f.SetReadDeadline(d)
	after := context.AfterFunc(ctx, func() { s.f.SetReadDeadline(time.Unix(1, 0)) })
	return func() {
		after()
		s.f.SetReadDeadline(time.Time{})
	}
}

// header reads the fields a reply is matched by, without parsing the rest.
func header(b []byte) (t sadb.MsgType, errno uint8, seq, pid uint32, ok bool) {
	if len(b) < sadb.HeaderLen || b[0] != sadb.Version {
		return 0, 0, 0, 0, false
	}
	return sadb.MsgType(b[1]), b[2], binary.NativeEndian.Uint32(b[8:12]), binary.NativeEndian.Uint32(b[12:16]), true
}

// timeoutErr turns a deadline or cancellation into the context's error.
func timeoutErr(ctx context.Context, err error) error {
	if errors.Is(err, os.ErrDeadlineExceeded) {
		if ctx.Err() != nil {
			return ctx.Err()
		}
		return fmt.Errorf("no reply from the kernel within %v: %w", defaultTimeout, context.DeadlineExceeded)
	}
	return err
}
