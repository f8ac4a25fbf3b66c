//go:build !no_nokernel

package main

import (
	"context"

	"github.com/keyplane/keyplane/backends/nokernel/nokerneltest"
	"github.com/keyplane/keyplane/conformance"
)

// The model's live harness adds a traffic source, a fake clock and a test
// interface, so no case skips for want of them.
func init() {
	liveHarnesses["nokernel"] = func(_ context.Context, params map[string]string) (func(t conformance.TB) *conformance.Harness, error) {
		return nokerneltest.NewHarness(params), nil
	}
}
