package kernelops

import (
	"fmt"
	"reflect"
)

// Facet is one row of the facet table: the interface the engine asks for,
// the capability that makes it usable, and what a driver must implement
// to claim that capability (nil: the front end supplies the facet itself,
// from the driver's other facets or its events).
type Facet struct {
	Type   reflect.Type
	Cap    Cap
	Driver reflect.Type
}

func rt[T any]() reflect.Type { return reflect.TypeFor[T]() }

// facets is the one table behind As, the Handle's refusals, the check a
// driver's claims get at open, and the conformance suite's agreement case.
var facets = []Facet{
	{rt[SAD](), CapSAD, rt[SADriver]()}, // AllocSPI only where the dataplane allocates (SPIAllocator)
	{rt[UsageReader](), CapSAD, nil},    // the Handle reads the SAD dump when the driver has no cheaper path
	{rt[SPD](), CapSPD, rt[SPD]()},
	{rt[Batcher](), CapBatch, rt[Batcher]()},
	{rt[EventSource](), CapEvents, nil}, // the driver publishes through Env
	{rt[Sockets](), CapSockets, rt[Sockets]()},
	{rt[AddrSelector](), CapAddrSelect, rt[AddrSelector]()},
	{rt[AddrManager](), CapAddrManage, rt[InterfaceAddrs]()},
	{rt[XfrmInterfaces](), CapXfrmInterfaces, rt[XfrmInterfaces]()},
	{rt[Holes](), CapHoles, rt[Holes]()},
	{rt[Offloader](), CapOffload, rt[Offloader]()},
	{rt[Syncer](), CapSync, rt[Syncer]()},
	{rt[IdleWatcher](), CapIdle, nil}, // the Handle scans the driver's usage
	{rt[Migrator](), CapMigrate, rt[Migrator]()},
}

// Facets returns the facet table.
func Facets() []Facet { return append([]Facet(nil), facets...) }

// Usable returns nil when b implements the facet and claims its
// capability, else an ErrNotSupported *Error that says which is missing,
// with the backend's own note.
func (f Facet) Usable(b Backend) error {
	if b == nil || !reflect.TypeOf(b).Implements(f.Type) {
		name := ""
		if b != nil {
			name = b.Name()
		}
		return NotSupported(name, "facet", "backend lacks "+f.Type.String())
	}
	if c := b.Capabilities(); !c.Has(f.Cap) {
		return NotSupported(b.Name(), "facet", fmt.Sprintf("%s needs capability %s: %s", f.Type, f.Cap, c.Why(f.Cap)))
	}
	return nil
}

// FacetOf returns the table row of facet type t.
func FacetOf(t reflect.Type) (Facet, bool) {
	for _, f := range facets {
		if f.Type == t {
			return f, true
		}
	}
	return Facet{}, false
}

// As finds facet F on b: b must implement it and claim its capability
// (the facet table). Otherwise the error is an ErrNotSupported *Error
// quoting the backend's note, so callers never test a type assertion and
// a capability bit separately.
//
//	sad, err := kernelops.As[kernelops.SAD](b)
func As[F any](b Backend) (F, error) {
	var zero F
	if f, ok := FacetOf(rt[F]()); ok {
		if err := f.Usable(b); err != nil {
			return zero, err
		}
	}
	x, ok := b.(F)
	if !ok {
		return zero, NotSupported(b.Name(), "facet", "backend lacks "+rt[F]().String())
	}
	return x, nil
}

// Has reports whether As[F] would succeed.
func Has[F any](b Backend) bool {
	_, err := As[F](b)
	return err == nil
}
