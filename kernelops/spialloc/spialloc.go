// Package spialloc hands out random, unique SPIs from a range, for
// dataplanes that do not allocate SPIs themselves (VPP, the nokernel
// model). Random rather than sequential SPIs keep a restarted daemon from
// reusing the SPIs of its previous life.
package spialloc

import (
	"fmt"
	"math/rand/v2"
	"sync"

	"github.com/keyplane/keyplane/kernelops"
)

// Allocator tracks which SPIs are taken. It is safe for concurrent use.
type Allocator struct {
	mu   sync.Mutex
	used map[uint32]struct{}
}

// New returns an empty allocator.
func New() *Allocator { return &Allocator{used: map[uint32]struct{}{}} }

// Alloc returns a random SPI in [min, max] not yet taken, and takes it. It
// fails with kernelops.ErrNoSpace when the range is full and ErrInvalid
// for an empty or reserved range (SPIs below 256 are reserved by IANA).
func (a *Allocator) Alloc(min, max uint32) (uint32, error) {
	if min < 256 || min > max {
		return 0, fmt.Errorf("SPI range %#x..%#x: %w (want 256 <= min <= max)", min, max, kernelops.ErrInvalid)
	}
	a.mu.Lock()
	defer a.mu.Unlock()
	span := uint64(max) - uint64(min) + 1
	// Random probes find a free SPI at once unless the range is nearly
	// full; then a scan from a random start settles it.
	for range 32 {
		spi := min + uint32(rand.Uint64N(span))
		if _, taken := a.used[spi]; !taken {
			a.used[spi] = struct{}{}
			return spi, nil
		}
	}
	start := rand.Uint64N(span)
	for i := uint64(0); i < span; i++ {
		spi := min + uint32((start+i)%span)
		if _, taken := a.used[spi]; !taken {
			a.used[spi] = struct{}{}
			return spi, nil
		}
	}
	return 0, fmt.Errorf("SPI range %#x..%#x exhausted: %w", min, max, kernelops.ErrNoSpace)
}

// Reserve takes a specific SPI; it reports false if it was taken.
func (a *Allocator) Reserve(spi uint32) bool {
	a.mu.Lock()
	defer a.mu.Unlock()
	if _, taken := a.used[spi]; taken {
		return false
	}
	a.used[spi] = struct{}{}
	return true
}

// Release frees an SPI for reuse.
func (a *Allocator) Release(spi uint32) {
	a.mu.Lock()
	defer a.mu.Unlock()
	delete(a.used, spi)
}

// InUse reports how many SPIs are taken.
func (a *Allocator) InUse() int {
	a.mu.Lock()
	defer a.mu.Unlock()
	return len(a.used)
}
