//go:build vpp

package vpp_test

import (
	"testing"

	"github.com/keyplane/keyplane/backends/vpp/vppharness"
	"github.com/keyplane/keyplane/conformance"
)

// TestConformance runs the shared suite against the backend over a real
// unix socket to the vpptest double (not a real VPP: see README.md).
func TestConformance(t *testing.T) {
	conformance.Run(t, vppharness.DoubleHarness)
}
