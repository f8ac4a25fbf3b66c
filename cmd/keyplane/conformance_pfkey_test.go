//go:build linux && !no_pfkey

package main

import (
	"testing"

	"github.com/keyplane/keyplane/internal/lab"
)

// keyplane conformance --backend pfkey against Linux af_key in the VM lab.
func TestConformanceCommandPFKEY(t *testing.T) {
	lab.RequireVM(t, "the host kernel has no af_key; the pfkey suite runs in the VM lab")
	code, out, errs := runCLI(t, "conformance", "--backend", "pfkey", "--scale", "1000", "--run", "SA")
	t.Log(out)
	if code != 0 {
		t.Fatalf("exit %d: %s", code, errs)
	}
}
