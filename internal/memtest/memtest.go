// Package memtest holds what the memory benchmarks and tests share: the
// live heap after a full collection, and a heap profile written on
// request.
package memtest

import (
	"os"
	"runtime"
	"runtime/pprof"
	"testing"
)

// LiveHeap is the heap in use after a full collection. It collects twice:
// objects with finalizers, and what they alone kept, go only in the second.
func LiveHeap() int64 {
	var m runtime.MemStats
	runtime.GC()
	runtime.GC()
	runtime.ReadMemStats(&m)
	return int64(m.HeapAlloc)
}

// WriteHeapProfile writes the heap profile to path; an empty path writes
// nothing. A failure fails tb.
func WriteHeapProfile(tb testing.TB, path string) {
	tb.Helper()
	if path == "" {
		return
	}
	f, err := os.Create(path)
	if err != nil {
		tb.Fatalf("heap profile: %v", err)
	}
	if err := pprof.WriteHeapProfile(f); err != nil {
		f.Close()
		tb.Fatalf("heap profile %s: %v", path, err)
	}
	if err := f.Close(); err != nil {
		tb.Fatalf("heap profile %s: %v", path, err)
	}
}
