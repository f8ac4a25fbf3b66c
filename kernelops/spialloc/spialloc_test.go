package spialloc

import (
	"errors"
	"sync"
	"testing"
)

func TestRangeUniqueExhaust(t *testing.T) {
	a := New()
	const min, max = 0x1000, 0x1000 + 999
	seen := map[uint32]bool{}
	for range 1000 {
		spi, err := a.Alloc(min, max)
		if err != nil {
			t.Fatal(err)
		}
		if spi < min || spi > max || seen[spi] {
			t.Fatalf("spi %#x out of range or repeated", spi)
		}
		seen[spi] = true
	}
	if _, err := a.Alloc(min, max); !errors.Is(err, ErrExhausted) {
		t.Fatalf("full range: %v", err)
	}
	a.Release(0x1000 + 5)
	if spi, err := a.Alloc(min, max); err != nil || spi != 0x1000+5 {
		t.Fatalf("after release got %#x, %v", spi, err)
	}
	for _, r := range [][2]uint32{{0, 10}, {300, 299}} {
		if _, err := a.Alloc(r[0], r[1]); !errors.Is(err, ErrRange) {
			t.Errorf("range %v: %v", r, err)
		}
	}
}

func TestConcurrentUnique(t *testing.T) {
	a := New()
	var mu sync.Mutex
	seen := map[uint32]bool{}
	var wg sync.WaitGroup
	for range 8 {
		wg.Go(func() {
			for range 500 {
				spi, err := a.Alloc(0xc0000000, 0xcfffffff)
				if err != nil {
					t.Error(err)
					return
				}
				mu.Lock()
				if seen[spi] {
					t.Errorf("duplicate %#x", spi)
				}
				seen[spi] = true
				mu.Unlock()
			}
		})
	}
	wg.Wait()
	if a.InUse() != 4000 {
		t.Fatalf("in use %d", a.InUse())
	}
}
