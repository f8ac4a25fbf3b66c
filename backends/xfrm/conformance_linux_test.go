package xfrm_test

import (
	"testing"

	_ "github.com/keyplane/keyplane/backends/xfrm"
	"github.com/keyplane/keyplane/conformance"
	"github.com/keyplane/keyplane/internal/kerneltest"
	"github.com/keyplane/keyplane/internal/lab"
)

// TestConformance runs the shared suite against the running kernel, each
// case in a fresh pair of namespaces with real traffic between them. On
// the host (no ESP) the SA cases skip with the kernel's own answer; in
// the VM lab everything the kernel supports runs.
func TestConformance(t *testing.T) {
	lab.RequireRoot(t)
	conformance.Run(t, func(t conformance.TB) *conformance.Harness {
		return kerneltest.NewHarness(t, kerneltest.Options{})
	})
}

// TestConformanceRunCases drives the same harness through RunCases, the
// path `keyplane conformance --backend xfrm` takes (its TB is not a
// *testing.T: Fatalf and Skipf end the case with runtime.Goexit).
func TestConformanceRunCases(t *testing.T) {
	lab.RequireRoot(t)
	match := "Policy"
	if lab.InVM() {
		match = "SA" // SALifecycle, SAFeatures, SAAllocThenAdd, ...
	}
	results := conformance.RunCases(t.Context(), func(t conformance.TB) *conformance.Harness {
		return kerneltest.NewHarness(t, kerneltest.Options{})
	}, match, nil)
	if len(results) < 3 {
		t.Fatalf("only %d cases match %q", len(results), match)
	}
	for _, r := range results {
		if r.Outcome == conformance.Fail {
			t.Errorf("%s failed through RunCases: %v", r.Name, r.Log)
		}
		t.Logf("%s %s %s", r.Outcome, r.Name, r.Reason)
	}
}
