// Package spialloc hands out random, unique SPIs from a range, for
// dataplanes that do not allocate SPIs themselves (VPP, the nokernel
// model). Random rather than sequential SPIs keep a restarted daemon from
// reusing the SPIs of its previous life.
package spialloc

import (
	"errors"
	"fmt"
	"math/rand/v2"
	"sync"
)

// Errors of Alloc. The package imports nothing of keyplane's, so the
// kernelops front end can use it; the front end maps them onto
// kernelops.ErrNoSpace and kernelops.ErrInvalid.
var (
	ErrExhausted = errors.New("SPI range exhausted")
	ErrRange     = errors.New("invalid SPI range")
)

// Allocator tracks which SPIs are taken. It is safe for concurrent use.
type Allocator struct {
	mu   sync.Mutex
	used map[uint32]struct{}
}

// New returns an empty allocator.
func New() *Allocator { return &Allocator{used: map[uint32]struct{}{}} }

// Alloc returns a random SPI in [min, max] not yet taken, and takes it. It
// fails with ErrExhausted when the range is full and ErrRange for an
// empty one or one starting at 0. (SPIs below 256 are reserved by IANA;
// IPComp CPIs are not SPIs: callers check the range for the protocol.)
func (a *Allocator) Alloc(min, max uint32) (uint32, error) {
	if min == 0 || min > max {
		return 0, fmt.Errorf("%w %#x..%#x (want 0 < min <= max)", ErrRange, min, max)
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
	return 0, fmt.Errorf("%w: %#x..%#x", ErrExhausted, min, max)
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
