package conformance

import (
	"testing"
)

// Case is one conformance case.
type Case struct {
	Name string
	Run  func(t TB, h *Harness)
}

// Cases lists the suite in order.
func Cases() []Case { return cases }

var cases []Case

// Run runs every case as a subtest of t, each on a fresh harness from
// newHarness.
func Run(t *testing.T, newHarness func(t TB) *Harness) {
	for _, c := range Cases() {
		t.Run(c.Name, func(t *testing.T) {
			h := newHarness(t)
			h.withDefaults()
			c.Run(t, h)
		})
	}
}
