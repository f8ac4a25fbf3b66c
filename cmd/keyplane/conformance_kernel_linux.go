package main

import (
	"context"

	"github.com/keyplane/keyplane/conformance"
	"github.com/keyplane/keyplane/internal/kerneltest"
	"github.com/keyplane/keyplane/kernelops"
)

// kernelHarness runs the suite on this kernel inside two fresh network
// namespaces joined by a veth (internal/kerneltest): real ESP and real
// packets, never the host's own SAD and SPD. Needs root; SA cases need a
// kernel with ESP (and af_key for pfkey).
func kernelHarness(backend string) func(context.Context, map[string]string) (func(t conformance.TB) *conformance.Harness, error) {
	return func(_ context.Context, params map[string]string) (func(t conformance.TB) *conformance.Harness, error) {
		return func(t conformance.TB) *conformance.Harness {
			return kerneltest.NewHarness(t, kerneltest.Options{Backend: backend, Open: kernelops.Options{Params: params}})
		}, nil
	}
}
