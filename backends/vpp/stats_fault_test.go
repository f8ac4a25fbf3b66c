//go:build vpp && linux

package vpp

import (
	"errors"
	"syscall"
	"testing"

	"go.fd.io/govpp/adapter"
)

// TestGuardFault: a counter read whose directory points into a mapping
// that was unmapped under it (as the stats client's own reconnect does)
// returns errSegmentRemapped instead of killing the process with SIGSEGV,
// as it did in TestReconnectWhileReadingCounters' neighbours under load.
func TestGuardFault(t *testing.T) {
	page, err := syscall.Mmap(-1, 0, syscall.Getpagesize(), syscall.PROT_READ|syscall.PROT_WRITE, syscall.MAP_ANON|syscall.MAP_PRIVATE)
	if err != nil {
		t.Fatal(err)
	}
	copy(page, SACounterName)
	// A name slice into the mapping, as PrepareDir hands out.
	name := page[:len(SACounterName)]
	dir := &adapter.StatDir{Entries: []adapter.StatEntry{{
		StatIdentifier: adapter.StatIdentifier{Name: name},
		Data:           adapter.CombinedCounterStat{{adapter.CombinedCounter{3, 300}}},
	}}}
	read := func() error { _, err := countersOf(dir); return err }
	if err := guardFault(read); err != nil {
		t.Fatalf("read of a mapped segment: %v", err)
	}
	if err := syscall.Munmap(page); err != nil {
		t.Fatal(err)
	}
	if err := guardFault(read); !errors.Is(err, errSegmentRemapped) {
		t.Fatalf("read of an unmapped segment: %v, want errSegmentRemapped", err)
	}
	// Other panics are not swallowed.
	defer func() {
		if r := recover(); r != "boom" {
			t.Fatalf("recovered %v, want the panic to go on", r)
		}
	}()
	_ = guardFault(func() error { panic("boom") })
}
