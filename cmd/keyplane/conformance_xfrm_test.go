//go:build linux && !no_xfrm

package main

import (
	"strings"
	"testing"

	"github.com/keyplane/keyplane/internal/lab"
)

// keyplane conformance --backend xfrm against the VM lab's real kernel:
// every case must pass, none may skip for want of a kernel feature.
func TestConformanceCommandXFRM(t *testing.T) {
	lab.RequireVM(t, "the host kernel lacks ESP; the xfrm suite runs in the VM lab")
	code, out, errs := runCLI(t, "conformance", "--backend", "xfrm", "--scale", "2000")
	t.Log(out)
	if code != 0 {
		t.Fatalf("exit %d: %s", code, errs)
	}
	for _, line := range strings.Split(out, "\n") {
		if strings.HasPrefix(line, "skip") && !strings.Contains(line, "absent") {
			t.Errorf("skip without an absent capability: %s", line)
		}
	}
}
