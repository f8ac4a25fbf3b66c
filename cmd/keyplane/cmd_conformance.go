package main

import (
	"context"
	"encoding/json"
	"fmt"
	"sync"
	"time"

	"github.com/keyplane/keyplane/conformance"
	"github.com/keyplane/keyplane/kernelops"
)

func init() {
	register(&command{name: "conformance", summary: "run the conformance suite against a live dataplane", run: runConformance})
}

// liveHarnesses builds richer harnesses (traffic sources, fake clocks,
// test interfaces) for backends that have them; others get a plain one.
// Backend-specific files add to it in init().
var (
	liveMu        sync.Mutex
	liveHarnesses = map[string]func(ctx context.Context, params map[string]string) (func(t conformance.TB) *conformance.Harness, error){}
)

func plainHarness(name string, params map[string]string) func(t conformance.TB) *conformance.Harness {
	return func(t conformance.TB) *conformance.Harness {
		opts := conformance.BackendOptions(kernelops.Options{Params: params})
		b, err := kernelops.Open(t.Context(), name, opts)
		if err != nil {
			t.Fatalf("open %s: %v", name, err)
		}
		t.Cleanup(func() { b.Close() })
		return &conformance.Harness{Backend: b}
	}
}

func runConformance(ctx context.Context, e *env, args []string) error {
	fs := newFlags(e, "conformance")
	bf := addBackendFlags(fs)
	run := fs.String("run", "", "run only cases whose name contains this")
	scale := fs.Int("scale", 0, "cap the bulk cases at this many SAs/policies (default: the suite's 10,000)")
	if err := e.parse(fs, args); err != nil {
		return err
	}
	liveMu.Lock()
	build, rich := liveHarnesses[bf.name]
	liveMu.Unlock()
	newHarness := plainHarness(bf.name, bf.params)
	if rich {
		h, err := build(ctx, bf.params)
		if err != nil {
			return err
		}
		newHarness = h
	}
	if *scale > 0 {
		inner := newHarness
		newHarness = func(t conformance.TB) *conformance.Harness {
			h := inner(t)
			h.Scale = *scale
			return h
		}
	}
	enc := json.NewEncoder(e.stdout)
	counts := map[conformance.Outcome]int{}
	results := conformance.RunCases(ctx, newHarness, *run, func(r conformance.Result) {
		counts[r.Outcome]++
		if bf.json {
			enc.Encode(r)
			return
		}
		line := fmt.Sprintf("%-4s %-30s %8s", r.Outcome, r.Name, r.Duration.Round(time.Millisecond))
		if r.Outcome == conformance.Skip {
			line += "  " + r.Reason
		}
		fmt.Fprintln(e.stdout, line)
		if r.Outcome == conformance.Fail {
			for _, l := range r.Log {
				fmt.Fprintf(e.stdout, "       %s\n", l)
			}
		}
	})
	if !bf.json {
		fmt.Fprintf(e.stdout, "\n%s: %d cases: %d pass, %d fail, %d skip\n", bf.name, len(results),
			counts[conformance.Pass], counts[conformance.Fail], counts[conformance.Skip])
	}
	if counts[conformance.Fail] > 0 {
		return fmt.Errorf("%d of %d cases failed", counts[conformance.Fail], len(results))
	}
	return nil
}
