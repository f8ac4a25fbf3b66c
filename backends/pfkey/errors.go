package pfkey

import (
	"fmt"
	"syscall"

	"github.com/keyplane/keyplane/backends/pfkey/sadb"
	"github.com/keyplane/keyplane/kernelops"
)

// Name is the backend's registry name.
const Name = "pfkey"

// kerr turns a kernel's sadb_msg_errno into the kernelops error for op:
// the errno's sentinel, with what that errno means for that message
// (PF_KEY replies carry no text of their own).
func kerr(object string, t sadb.MsgType, errno syscall.Errno) *kernelops.Error {
	e := kernelops.FromErrno("", "", object, errno, errnoDetail(t, errno))
	switch {
	case t == sadb.MsgGetSPI && errno == syscall.ENOENT:
		// xfrm_alloc_spi (and KAME key_do_getnewspi) found no free SPI.
		e.Err = kernelops.ErrNoSpace
	case t == sadb.MsgGetSPI && errno == syscall.EEXIST:
		e.Err = kernelops.ErrNoSpace
	}
	return e
}

func errnoDetail(t sadb.MsgType, errno syscall.Errno) string {
	switch errno {
	case syscall.ESRCH, syscall.ENOENT:
		switch t {
		case sadb.MsgGetSPI:
			return "no SPI free in the requested range"
		case sadb.MsgSPDDelete, sadb.MsgSPDDelete2, sadb.MsgSPDGet:
			return "no such policy"
		}
		return "no such SA"
	case syscall.EEXIST:
		switch t {
		case sadb.MsgSPDAdd:
			return "a policy with this selector and direction exists"
		case sadb.MsgRegister:
			return "socket already registered for this SA type"
		}
		return "an SA with this SPI, destination and protocol exists"
	case syscall.ENOSYS:
		return "the kernel has no such algorithm (none registered under this SADB id)"
	case syscall.EINVAL:
		return fmt.Sprintf("the kernel refused %s (PF_KEY gives no reason: check algorithms, key lengths, addresses and modes)", t)
	case syscall.EPERM:
		return "PF_KEY needs CAP_NET_ADMIN (root)"
	case syscall.EBUSY:
		return "a dump is already running on this socket"
	case syscall.ENOBUFS, syscall.ENOMEM:
		return "the kernel is out of memory or reqids"
	case syscall.ELOOP:
		return "too many templates in one policy"
	case syscall.EOPNOTSUPP, syscall.ENOPROTOOPT:
		return fmt.Sprintf("this kernel does not implement %s", t)
	}
	return ""
}

// unsupported is the ErrNotSupported error naming the field.
func unsupported(object, field, format string, args ...any) *kernelops.Error {
	return &kernelops.Error{Object: object, Field: field, Err: kernelops.ErrNotSupported,
		Detail: fmt.Sprintf(format, args...)}
}

func errnoOf(e uint8) syscall.Errno { return syscall.Errno(e) }
