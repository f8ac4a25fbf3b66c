package conformance

import (
	"context"
	"fmt"
	"runtime"
	"strings"
	"sync"
	"testing"
	"time"
)

// Case is one conformance case.
type Case struct {
	Name string
	Run  func(t TB, h *Harness)
}

// Cases lists the suite in order.
func Cases() []Case { return cases }

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

// Outcome of one case run by RunCases.
type Outcome string

const (
	Pass Outcome = "pass"
	Fail Outcome = "fail"
	Skip Outcome = "skip"
)

// Result is one case's outcome with what it logged; for a skip, Reason
// is the skip message.
type Result struct {
	Name     string        `json:"name"`
	Outcome  Outcome       `json:"outcome"`
	Reason   string        `json:"reason,omitempty"`
	Log      []string      `json:"log,omitempty"`
	Duration time.Duration `json:"duration_ns"`
}

// RunCases runs the suite outside `go test` — against a live dataplane
// from the command line. match selects cases by substring (empty: all);
// report, if non-nil, sees each result as it finishes.
func RunCases(ctx context.Context, newHarness func(t TB) *Harness, match string, report func(Result)) []Result {
	var out []Result
	for _, c := range Cases() {
		if match != "" && !strings.Contains(c.Name, match) {
			continue
		}
		r := runOne(ctx, c, newHarness)
		if report != nil {
			report(r)
		}
		out = append(out, r)
	}
	return out
}

func runOne(ctx context.Context, c Case, newHarness func(t TB) *Harness) Result {
	cctx, cancel := context.WithCancel(ctx)
	t := &runT{name: c.Name, ctx: cctx}
	start := time.Now()
	done := make(chan struct{})
	go func() {
		defer close(done)
		defer func() {
			if p := recover(); p != nil {
				t.fail(fmt.Sprintf("panic: %v", p))
			}
		}()
		h := newHarness(t)
		h.withDefaults()
		c.Run(t, h)
	}()
	<-done
	cancel()
	t.runCleanups()
	r := Result{Name: c.Name, Duration: time.Since(start), Log: t.log}
	switch {
	case t.failed:
		r.Outcome = Fail
	case t.skipped:
		r.Outcome, r.Reason = Skip, t.skipReason
	default:
		r.Outcome = Pass
	}
	return r
}

// runT implements TB for RunCases: Fatalf and Skipf end the case's
// goroutine with runtime.Goexit, as the testing package does.
type runT struct {
	name string
	ctx  context.Context

	mu         sync.Mutex
	log        []string
	failed     bool
	skipped    bool
	skipReason string
	cleanups   []func()
}

func (t *runT) Helper()                  {}
func (t *runT) Name() string             { return t.name }
func (t *runT) Context() context.Context { return t.ctx }

func (t *runT) Logf(format string, args ...any) {
	t.mu.Lock()
	defer t.mu.Unlock()
	t.log = append(t.log, fmt.Sprintf(format, args...))
}

func (t *runT) fail(msg string) {
	t.mu.Lock()
	defer t.mu.Unlock()
	t.failed = true
	t.log = append(t.log, msg)
}

func (t *runT) Errorf(format string, args ...any) { t.fail(fmt.Sprintf(format, args...)) }

func (t *runT) Fatalf(format string, args ...any) {
	t.fail(fmt.Sprintf(format, args...))
	runtime.Goexit()
}

func (t *runT) Skipf(format string, args ...any) {
	t.mu.Lock()
	t.skipped = true
	t.skipReason = fmt.Sprintf(format, args...)
	t.mu.Unlock()
	runtime.Goexit()
}

func (t *runT) Failed() bool {
	t.mu.Lock()
	defer t.mu.Unlock()
	return t.failed
}

func (t *runT) Cleanup(f func()) {
	t.mu.Lock()
	defer t.mu.Unlock()
	t.cleanups = append(t.cleanups, f)
}

func (t *runT) runCleanups() {
	for {
		t.mu.Lock()
		n := len(t.cleanups)
		if n == 0 {
			t.mu.Unlock()
			return
		}
		f := t.cleanups[n-1]
		t.cleanups = t.cleanups[:n-1]
		t.mu.Unlock()
		func() {
			defer func() {
				if p := recover(); p != nil {
					t.fail(fmt.Sprintf("cleanup panic: %v", p))
				}
			}()
			f()
		}()
	}
}
