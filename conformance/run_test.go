package conformance

import (
	"context"
	"strings"
	"testing"

	"github.com/keyplane/keyplane/kernelops"
)

// bareBackend is a test double that claims nothing and implements no
// facet: every case must skip with a reason, or pass, and none may fail.
type bareBackend struct{}

func (bareBackend) Name() string                         { return "bare" }
func (bareBackend) Capabilities() kernelops.Capabilities { return kernelops.Capabilities{} }
func (bareBackend) Close() error                         { return nil }

func TestRunCasesSkipsWithReasons(t *testing.T) {
	var cleaned int
	results := RunCases(context.Background(), func(t TB) *Harness {
		t.Cleanup(func() { cleaned++ })
		return &Harness{Backend: bareBackend{}}
	}, "", nil)
	if len(results) != len(Cases()) {
		t.Fatalf("%d results for %d cases", len(results), len(Cases()))
	}
	if cleaned != len(results) {
		t.Errorf("cleanups ran %d times for %d cases", cleaned, len(results))
	}
	for _, r := range results {
		switch r.Outcome {
		case Fail:
			t.Errorf("%s failed on a backend that claims nothing: %v", r.Name, r.Log)
		case Skip:
			if !strings.Contains(r.Reason, "absent") && !strings.Contains(r.Reason, "harness") {
				t.Errorf("%s skipped without a reason naming what is missing: %q", r.Name, r.Reason)
			}
		}
	}
}

func TestRunCasesReportsFailure(t *testing.T) {
	cases = append(cases, Case{"zzFailing", func(t TB, h *Harness) { t.Fatalf("boom %d", 42); panic("not reached") }})
	defer func() { cases = cases[:len(cases)-1] }()
	res := RunCases(context.Background(), func(t TB) *Harness { return &Harness{Backend: bareBackend{}} }, "zzFailing", nil)
	if len(res) != 1 || res[0].Outcome != Fail || len(res[0].Log) == 0 || res[0].Log[0] != "boom 42" {
		t.Fatalf("got %+v", res)
	}
}

// TestEveryFacetHasAProbe: the suite's refusal check is derived from
// kernelops' facet table, so a facet added there without a probe here
// fails the suite's own test rather than going unchecked.
func TestEveryFacetHasAProbe(t *testing.T) {
	for _, f := range kernelops.Facets() {
		if _, ok := facetProbes[f.Type]; !ok {
			t.Errorf("facet %s (capability %s) has no probe in facetProbes", f.Type, f.Cap)
		}
	}
	if len(facetProbes) != len(kernelops.Facets()) {
		t.Errorf("%d probes for %d facets", len(facetProbes), len(kernelops.Facets()))
	}
}
