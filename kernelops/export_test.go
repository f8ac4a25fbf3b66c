package kernelops

import (
	"context"
	"iter"

	"github.com/keyplane/keyplane/kernelops/clock"
)

// IdleScanner exposes the idle detector to the benchmarks of package
// kernelops_test, which need a real backend to read from.
type IdleScanner = idleDetector

func NewIdleScanner(clk clock.Clock, read func(context.Context) iter.Seq2[Usage, error], emit func(*IdleEvent)) *IdleScanner {
	return newIdleDetector(idleConfig{Clock: clk, Read: read, Emit: emit})
}
