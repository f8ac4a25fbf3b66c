package kernelops

import (
	"errors"
	"fmt"
	"github.com/keyplane/keyplane/iana"
	"strings"
	"syscall"
	"testing"
)

func TestErrorWrapsSentinelAndErrno(t *testing.T) {
	err := error(FromErrno("xfrm", "add SA", "esp 0x00001000 10.0.0.1->10.0.0.2", syscall.EEXIST, "SA already exists"))
	err = fmt.Errorf("child install: %w", err)
	if !errors.Is(err, ErrExists) {
		t.Errorf("errors.Is(err, ErrExists) = false for %v", err)
	}
	if !errors.Is(err, syscall.EEXIST) {
		t.Errorf("errors.Is(err, EEXIST) = false for %v", err)
	}
	if errors.Is(err, ErrNotFound) {
		t.Errorf("errors.Is(err, ErrNotFound) = true for %v", err)
	}
	var ke *Error
	if !errors.As(err, &ke) || ke.Backend != "xfrm" || ke.Op != "add SA" {
		t.Fatalf("errors.As: got %#v", ke)
	}
	for _, want := range []string{"xfrm", "add SA", "0x00001000", "already exists", "EEXIST", "SA already exists"} {
		if !strings.Contains(err.Error(), want) {
			t.Errorf("message %q lacks %q", err, want)
		}
	}
}

func TestErrnoSentinel(t *testing.T) {
	for _, tc := range []struct {
		errno syscall.Errno
		want  error
	}{
		{syscall.EEXIST, ErrExists}, {syscall.ENOENT, ErrNotFound}, {syscall.ESRCH, ErrNotFound},
		{syscall.EINVAL, ErrInvalid}, {syscall.EPROTONOSUPPORT, ErrNotSupported},
		{syscall.EOPNOTSUPP, ErrNotSupported}, {syscall.ENOBUFS, ErrNoSpace}, {syscall.EPERM, ErrPermission},
	} {
		if got := ErrnoSentinel(tc.errno); got != tc.want {
			t.Errorf("ErrnoSentinel(%v) = %v, want %v", tc.errno, got, tc.want)
		}
	}
	if got := ErrnoSentinel(syscall.EIO); got != syscall.EIO {
		t.Errorf("unmapped errno should pass through, got %v", got)
	}
}

func TestOffloadErrorIsAndAs(t *testing.T) {
	oe := &OffloadError{Device: "eth0", Mode: OffloadPacket, Reason: "Device doesn't support offload"}
	err := error(&Error{Backend: "xfrm", Op: "add SA", Err: oe})
	if !errors.Is(err, ErrOffload) {
		t.Error("errors.Is(err, ErrOffload) = false")
	}
	var got *OffloadError
	if !errors.As(err, &got) || got.Device != "eth0" || got.Mode != OffloadPacket {
		t.Fatalf("errors.As: %#v", got)
	}
	for _, want := range []string{"eth0", "packet", "Device doesn't support offload"} {
		if !strings.Contains(err.Error(), want) {
			t.Errorf("message %q lacks %q", err, want)
		}
	}
}

func TestKeyNeverPrints(t *testing.T) {
	sa := SA{Encryption: Encryption{ID: iana.EncrAESGCM16, KeyBits: 128, Key: Key("0123456789abcdefSALT")}}
	for _, verb := range []string{"%v", "%+v", "%s", "%x", "%X", "%q", "%#v"} {
		out := fmt.Sprintf(verb, sa)
		if strings.Contains(out, "0123456789") || strings.Contains(out, "30313233") {
			t.Errorf("%s printed key material: %s", verb, out)
		}
	}
}
