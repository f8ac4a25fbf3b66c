package kernelops

import (
	"errors"
	"fmt"
	"strings"
	"syscall"
)

// Sentinel errors. Backends wrap them in *Error; test them with errors.Is.
var (
	ErrNotFound     = errors.New("not found")
	ErrExists       = errors.New("already exists")
	ErrNotSupported = errors.New("not supported by this dataplane")
	ErrInvalid      = errors.New("invalid argument")
	ErrNoSpace      = errors.New("no space left")
	ErrClosed       = errors.New("backend closed")
	ErrPermission   = errors.New("permission denied")
	ErrBusy         = errors.New("resource busy")
	// ErrOffload means the dataplane refused a hardware offload request;
	// the *Error wrapping it carries an *OffloadError with the details.
	ErrOffload = errors.New("offload refused")
	// ErrUnknownBackend is returned by Open for a name no backend registered.
	ErrUnknownBackend = errors.New("unknown backend")
)

// Error describes a failed dataplane operation. It wraps a sentinel (Err)
// and, when the dataplane reported one, the errno, so both
// errors.Is(err, ErrExists) and errors.Is(err, syscall.EEXIST) hold.
type Error struct {
	Backend string        // "xfrm", "pfkey", "vpp", "nokernel"
	Op      string        // "add SA", "delete policy", "alloc SPI", ...
	Object  string        // what it was done to, e.g. an SAID or PolicyID string
	Field   string        // for ErrInvalid: the offending field, e.g. "Encryption.Key"
	Err     error         // a sentinel from this package, or another error
	Errno   syscall.Errno // 0 when the dataplane gave none
	Detail  string        // the dataplane's own words (netlink extack, VPP retval name, ...)
}

func (e *Error) Error() string {
	var b strings.Builder
	if e.Backend != "" {
		b.WriteString(e.Backend)
		b.WriteString(": ")
	}
	b.WriteString(e.Op)
	if e.Object != "" {
		b.WriteString(" ")
		b.WriteString(e.Object)
	}
	b.WriteString(": ")
	if e.Field != "" {
		b.WriteString(e.Field)
		b.WriteString(": ")
	}
	if e.Err != nil {
		b.WriteString(e.Err.Error())
	} else {
		b.WriteString("failed")
	}
	if e.Errno != 0 {
		fmt.Fprintf(&b, " (%s)", errnoName(e.Errno))
	}
	if e.Detail != "" {
		b.WriteString(": ")
		b.WriteString(e.Detail)
	}
	return b.String()
}

// Unwrap exposes both the sentinel and the errno to errors.Is/As.
func (e *Error) Unwrap() []error {
	errs := make([]error, 0, 2)
	if e.Err != nil {
		errs = append(errs, e.Err)
	}
	if e.Errno != 0 {
		errs = append(errs, e.Errno)
	}
	return errs
}

// OffloadError says which device refused which offload mode and why. It is
// wrapped by an *Error whose Err is ErrOffload, so errors.As finds it.
type OffloadError struct {
	Device string
	Mode   OffloadMode
	Reason string // the kernel's extack text or the driver's reason
}

func (e *OffloadError) Error() string {
	return fmt.Sprintf("device %q refused %s offload: %s", e.Device, e.Mode, e.Reason)
}

func (e *OffloadError) Is(target error) bool { return target == ErrOffload }

// Invalid builds the *Error for a bad argument naming the field.
func Invalid(backend, op, object, field, format string, args ...any) *Error {
	return &Error{Backend: backend, Op: op, Object: object, Field: field, Err: ErrInvalid,
		Detail: fmt.Sprintf(format, args...)}
}

// NotSupported builds the *Error for an operation the dataplane lacks.
func NotSupported(backend, op, detail string) *Error {
	return &Error{Backend: backend, Op: op, Err: ErrNotSupported, Detail: detail}
}

// ErrnoSentinel maps a kernel errno onto the sentinel it means for kernelops.
// Backends use it so the same errno means the same thing everywhere.
func ErrnoSentinel(errno syscall.Errno) error {
	switch errno {
	case syscall.EEXIST:
		return ErrExists
	case syscall.ENOENT, syscall.ESRCH, syscall.ENXIO:
		return ErrNotFound
	case syscall.EINVAL, syscall.EAFNOSUPPORT, syscall.E2BIG, syscall.ERANGE:
		return ErrInvalid
	case syscall.EOPNOTSUPP, syscall.EPROTONOSUPPORT, syscall.ENOSYS, syscall.ENOPROTOOPT:
		return ErrNotSupported
	case syscall.ENOSPC, syscall.ENOBUFS, syscall.ENOMEM:
		return ErrNoSpace
	case syscall.EPERM, syscall.EACCES:
		return ErrPermission
	case syscall.EBUSY, syscall.EAGAIN:
		return ErrBusy
	}
	return errno
}

// FromErrno wraps an errno into an *Error with the matching sentinel.
func FromErrno(backend, op, object string, errno syscall.Errno, detail string) *Error {
	return &Error{Backend: backend, Op: op, Object: object, Err: ErrnoSentinel(errno), Errno: errno, Detail: detail}
}

func errnoName(e syscall.Errno) string {
	if n, ok := errnoNames[e]; ok {
		return n
	}
	return fmt.Sprintf("errno %d", int(e))
}

var errnoNames = map[syscall.Errno]string{
	syscall.EPERM: "EPERM", syscall.ENOENT: "ENOENT", syscall.ESRCH: "ESRCH",
	syscall.EINTR: "EINTR", syscall.EIO: "EIO", syscall.ENXIO: "ENXIO", syscall.E2BIG: "E2BIG",
	syscall.EAGAIN: "EAGAIN", syscall.ENOMEM: "ENOMEM", syscall.EACCES: "EACCES",
	syscall.EBUSY: "EBUSY", syscall.EEXIST: "EEXIST", syscall.ENODEV: "ENODEV",
	syscall.EINVAL: "EINVAL", syscall.ENOSPC: "ENOSPC", syscall.ERANGE: "ERANGE",
	syscall.ENOSYS: "ENOSYS", syscall.ENOPROTOOPT: "ENOPROTOOPT",
	syscall.EPROTONOSUPPORT: "EPROTONOSUPPORT", syscall.EOPNOTSUPP: "EOPNOTSUPP",
	syscall.EAFNOSUPPORT: "EAFNOSUPPORT", syscall.ENOBUFS: "ENOBUFS",
	syscall.EADDRINUSE: "EADDRINUSE", syscall.EADDRNOTAVAIL: "EADDRNOTAVAIL",
	syscall.ENETUNREACH: "ENETUNREACH", syscall.EHOSTUNREACH: "EHOSTUNREACH",
}
