package nokernel_test

import (
	"testing"

	"github.com/keyplane/keyplane/backends/nokernel/nokerneltest"
	"github.com/keyplane/keyplane/conformance"
)

// TestConformance runs the shared suite on the model; -v prints every
// case.
func TestConformance(t *testing.T) {
	conformance.Run(t, nokerneltest.NewHarness(nil))
}
