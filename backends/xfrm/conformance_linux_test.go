package xfrm_test

import (
	"testing"

	_ "github.com/keyplane/keyplane/backends/xfrm"
	"github.com/keyplane/keyplane/backends/xfrm/xfrmtest"
	"github.com/keyplane/keyplane/conformance"
	"github.com/keyplane/keyplane/internal/lab"
)

// TestConformance runs the shared suite against the running kernel, each
// case in a fresh pair of namespaces with real traffic between them. On
// the host (no ESP) the SA cases skip with the kernel's own answer; in
// the VM lab everything the kernel supports runs.
func TestConformance(t *testing.T) {
	lab.RequireRoot(t)
	conformance.Run(t, func(t conformance.TB) *conformance.Harness {
		return xfrmtest.NewHarness(t, xfrmtest.Options{})
	})
}
