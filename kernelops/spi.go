package kernelops

import (
	"context"
	"errors"
	"net/netip"
	"sync"

	"github.com/keyplane/keyplane/kernelops/clock"
	"github.com/keyplane/keyplane/kernelops/spialloc"
)

// SPI allocation for drivers without an SPIAllocator (their dataplane
// picks no SPIs): random unique SPIs per protocol, a reservation that
// lasts LarvalTimeout unless an AddSA fills it, and the SPIs of every SA
// installed through the Handle held so a later allocation never hands
// one out again (an outbound SA's SPI is the peer's choice and may be
// held already; then it is not held twice).
type spiTable struct {
	clk clock.Clock

	mu     sync.Mutex
	seeded bool // the SPIs of SAs already in the dataplane are held
	alloc  map[Proto]*spialloc.Allocator
	larval map[spiKey]*larvalSPI
	held   map[SAID]bool // SAs whose SPI this table holds
}

type spiKey struct {
	dst   netip.Addr // a comparable value: keying costs no allocation per SA
	spi   uint32
	proto Proto
}

type larvalSPI struct {
	req   SPIRequest
	timer clock.Timer
}

func keyOfSA(id SAID) spiKey { return spiKey{id.Dst, id.SPI, id.Proto} }

func newSPITable(clk clock.Clock) *spiTable {
	return &spiTable{clk: clk, alloc: map[Proto]*spialloc.Allocator{}, larval: map[spiKey]*larvalSPI{}, held: map[SAID]bool{}}
}

func (t *spiTable) allocator(p Proto) *spialloc.Allocator {
	a := t.alloc[p]
	if a == nil {
		a = spialloc.New()
		t.alloc[p] = a
	}
	return a
}

// allocate reserves an SPI in req's (resolved) range. The first one
// holds the SPIs of the SAs the dataplane has (one dump), so an SPI an
// earlier life of the daemon left installed is never handed out.
func (t *spiTable) allocate(ctx context.Context, sad SADriver, req SPIRequest) (uint32, error) {
	t.mu.Lock()
	seeded := t.seeded
	t.mu.Unlock()
	if !seeded {
		if err := t.resync(ctx, sad, nil); err != nil {
			return 0, err
		}
	}
	t.mu.Lock()
	defer t.mu.Unlock()
	a := t.allocator(req.Proto)
	spi, err := a.Alloc(req.Min, req.Max)
	switch {
	case errors.Is(err, spialloc.ErrExhausted):
		return 0, &Error{Err: ErrNoSpace, Detail: err.Error()}
	case err != nil:
		return 0, &Error{Field: "Min", Err: ErrInvalid, Detail: err.Error()}
	}
	k := spiKey{req.Dst, spi, req.Proto}
	l := &larvalSPI{req: req}
	l.timer = t.clk.AfterFunc(LarvalTimeout, func() {
		t.mu.Lock()
		defer t.mu.Unlock()
		if t.larval[k] == l {
			delete(t.larval, k)
			a.Release(spi)
		}
	})
	t.larval[k] = l
	return spi, nil
}

// installed records an SA added or updated through the Handle: it fills
// a reservation, or holds the SA's SPI.
func (t *spiTable) installed(id SAID) {
	t.mu.Lock()
	defer t.mu.Unlock()
	if l := t.larval[keyOfSA(id)]; l != nil {
		l.timer.Stop()
		delete(t.larval, keyOfSA(id))
		t.held[id] = true
		return
	}
	if !t.held[id] && t.allocator(id.Proto).Reserve(id.SPI) {
		t.held[id] = true
	}
}

// reserved reports whether id's SPI is a reservation no SA filled yet.
func (t *spiTable) reserved(id SAID) bool {
	t.mu.Lock()
	defer t.mu.Unlock()
	return t.larval[keyOfSA(id)] != nil
}

// dropLarval ends a reservation no SA filled; it reports whether there
// was one (DeleteSA of a reserved SPI succeeds, as on XFRM).
func (t *spiTable) dropLarval(id SAID) bool {
	t.mu.Lock()
	defer t.mu.Unlock()
	l := t.larval[keyOfSA(id)]
	if l == nil {
		return false
	}
	l.timer.Stop()
	delete(t.larval, keyOfSA(id))
	t.allocator(id.Proto).Release(id.SPI)
	return true
}

// gone releases the SPI of an SA that left the dataplane.
func (t *spiTable) gone(id SAID) {
	t.mu.Lock()
	defer t.mu.Unlock()
	if t.held[id] {
		delete(t.held, id)
		t.allocator(id.Proto).Release(id.SPI)
	}
}

// moved follows an SA to its new addresses: same SPI, same hold.
func (t *spiTable) moved(old, nu SAID) {
	t.mu.Lock()
	defer t.mu.Unlock()
	if t.held[old] {
		delete(t.held, old)
		t.held[nu] = true
	}
}

// resync makes the held set what the dataplane holds (after an owned
// flush, or before the first allocation) and, given owns, drops the
// reservations for owned reqids.
func (t *spiTable) resync(ctx context.Context, sad SADriver, owns func(uint32) bool) error {
	present := map[SAID]bool{}
	for e, err := range sad.SAs(ctx) {
		if err != nil {
			return err
		}
		present[e.ID] = true
	}
	t.mu.Lock()
	defer t.mu.Unlock()
	t.seeded = true
	for id := range t.held {
		if !present[id] {
			delete(t.held, id)
			t.allocator(id.Proto).Release(id.SPI)
		}
	}
	for id := range present {
		if !t.held[id] && t.allocator(id.Proto).Reserve(id.SPI) {
			t.held[id] = true
		}
	}
	if owns != nil {
		for k, l := range t.larval {
			if l.req.ReqID == 0 || owns(l.req.ReqID) {
				l.timer.Stop()
				delete(t.larval, k)
				t.allocator(k.proto).Release(k.spi)
			}
		}
	}
	return nil
}

// close stops the reservation timers.
func (t *spiTable) close() {
	t.mu.Lock()
	defer t.mu.Unlock()
	for k, l := range t.larval {
		l.timer.Stop()
		delete(t.larval, k)
	}
}
