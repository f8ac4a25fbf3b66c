package xfrm

import (
	"context"
	"errors"
	"os"
	"syscall"

	"github.com/keyplane/keyplane/kernelops"
)

// kerr turns whatever a kernel call returned into a *kernelops.Error:
// netlink errors keep their errno and extack text, errnos map to the
// sentinels every backend shares, context errors stay matchable. The
// front end names the backend and the operation.
func (b *driver) kerr(object string, err error) error {
	if err == nil {
		return nil
	}
	var ke *kernelops.Error
	if errors.As(err, &ke) {
		return err
	}
	var nle *netlinkError
	if errors.As(err, &nle) {
		e := kernelops.FromErrno("", "", object, nle.Errno, nle.ExtMsg)
		b.explain(e)
		return e
	}
	if errors.Is(err, os.ErrDeadlineExceeded) {
		err = context.DeadlineExceeded
	}
	if errors.Is(err, context.Canceled) || errors.Is(err, context.DeadlineExceeded) {
		return &kernelops.Error{Object: object, Err: err}
	}
	if errors.Is(err, errPoolClosed) || errors.Is(err, os.ErrClosed) {
		return &kernelops.Error{Object: object, Err: kernelops.ErrClosed}
	}
	var errno syscall.Errno
	if errors.As(err, &errno) {
		e := kernelops.FromErrno("", "", object, errno, "")
		if e.Detail == "" && err.Error() != errno.Error() {
			e.Detail = err.Error()
		}
		b.explain(e)
		return e
	}
	return &kernelops.Error{Object: object, Err: err}
}

// explain adds the reason an errno has in XFRM where the kernel gave no
// text of its own.
func (b *driver) explain(e *kernelops.Error) {
	if e.Detail != "" {
		return
	}
	switch e.Errno {
	case syscall.EPROTONOSUPPORT:
		e.Detail = "the kernel lacks this IPsec protocol (esp4/esp6, ah4/ah6 or ipcomp; CONFIG_INET_ESP and friends)"
	case syscall.ENOSYS:
		e.Detail = "the kernel does not know this algorithm"
	case syscall.ENOPROTOOPT:
		e.Detail = "the kernel was built without this XFRM feature"
	case syscall.EPERM:
		e.Detail = "XFRM configuration needs CAP_NET_ADMIN"
	}
}

// ok reports whether a socket that returned err is still in a clean
// state: a kernel error reply is; an I/O error or a cancelled exchange is
// not (replies may still be queued).
func sockOK(err error) bool {
	if err == nil {
		return true
	}
	var nle *netlinkError
	return errors.As(err, &nle)
}

// do runs one request on a pooled socket: build fills the message with
// the sequence number it is given; onReply sees the replies.
func (b *driver) do(ctx context.Context, object string, build func(mb *msgBuilder, seq uint32) error, onReply func(nlMsg) error) error {
	s, err := b.pool.get()
	if err != nil {
		return b.kerr(object, err)
	}
	var mb msgBuilder
	seq := s.nextSeq()
	if err := build(&mb, seq); err != nil {
		b.pool.put(s, true)
		return b.kerr(object, err)
	}
	err = s.request(ctx, mb.buf, seq, onReply)
	b.pool.put(s, sockOK(err))
	return b.kerr(object, err)
}
