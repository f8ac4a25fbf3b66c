package pfkey_test

import (
	"context"
	"errors"
	"strings"
	"syscall"
	"testing"

	"github.com/keyplane/keyplane/backends/pfkey"
	"github.com/keyplane/keyplane/internal/lab"
	"github.com/keyplane/keyplane/kernelops"
	"golang.org/x/sys/unix"
)

// TestOpenWithoutAFKey runs where the kernel has no af_key (the project's
// hosts): Open must fail with ErrNotSupported and say what to load.
func TestOpenWithoutAFKey(t *testing.T) {
	if lab.InVM() {
		t.Skip("the VM kernel has af_key; this checks the failure on a kernel without it")
	}
	fd, err := unix.Socket(unix.AF_KEY, unix.SOCK_RAW, 2)
	if err == nil {
		unix.Close(fd)
		t.Skip("this kernel has af_key")
	}
	if errors.Is(err, syscall.EPERM) || errors.Is(err, syscall.EACCES) {
		t.Skipf("PF_KEY sockets need root here: %v", err)
	}
	_, err = kernelops.Open(context.Background(), pfkey.Name, kernelops.Options{})
	var ke *kernelops.Error
	if !errors.Is(err, kernelops.ErrNotSupported) || !errors.As(err, &ke) || !strings.Contains(ke.Detail, "af_key") {
		t.Fatalf("Open without af_key: %v; want ErrNotSupported naming af_key", err)
	}
}

func TestOpenRejectsBadParams(t *testing.T) {
	for _, p := range []map[string]string{
		{"nosuch": "1"},
		{pfkey.ParamReqIDBase: "0x4000"},
		{pfkey.ParamReqIDBase: "seven"},
		{pfkey.ParamNetns: "/nonexistent/netns"},
	} {
		_, err := kernelops.Open(context.Background(), pfkey.Name, kernelops.Options{Params: p})
		if !errors.Is(err, kernelops.ErrInvalid) {
			t.Errorf("params %v: %v, want ErrInvalid", p, err)
		}
	}
}
