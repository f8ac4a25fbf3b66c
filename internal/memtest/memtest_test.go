package memtest

import (
	"os"
	"path/filepath"
	"runtime"
	"testing"
)

var sink [][]byte

// LiveHeap sees memory that stays reachable and not what was let go.
func TestLiveHeap(t *testing.T) {
	before := LiveHeap()
	for range 64 {
		sink = append(sink, make([]byte, 64<<10))
	}
	held := LiveHeap()
	if d := held - before; d < 4<<20 {
		t.Errorf("4 MiB held, LiveHeap grew by %d B", d)
	}
	sink = nil
	if d := LiveHeap() - before; d > 1<<20 {
		t.Errorf("4 MiB let go, LiveHeap still %d B above the start", d)
	}
	runtime.KeepAlive(sink)
}

func TestWriteHeapProfile(t *testing.T) {
	WriteHeapProfile(t, "") // nothing
	p := filepath.Join(t.TempDir(), "heap.pprof")
	WriteHeapProfile(t, p)
	st, err := os.Stat(p)
	if err != nil || st.Size() == 0 {
		t.Fatalf("profile not written: %v", err)
	}
}
