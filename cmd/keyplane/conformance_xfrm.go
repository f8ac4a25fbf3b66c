//go:build linux && !no_xfrm

package main

import (
	"context"

	"github.com/keyplane/keyplane/backends/xfrm/xfrmtest"
	"github.com/keyplane/keyplane/conformance"
	"github.com/keyplane/keyplane/kernelops"
)

// Against this kernel, inside two fresh network namespaces joined by a
// veth: real ESP and real packets, without touching the host's own SAD
// and SPD. Needs root; SA cases need a kernel with ESP.
func init() {
	liveHarnesses["xfrm"] = func(_ context.Context, params map[string]string) (func(t conformance.TB) *conformance.Harness, error) {
		return func(t conformance.TB) *conformance.Harness {
			return xfrmtest.NewHarness(t, xfrmtest.Options{Open: kernelops.Options{Params: params}})
		}, nil
	}
}
