package kernelops

import "reflect"

// As finds facet F on b, or returns an ErrNotSupported *Error naming it.
//
//	sad, err := kernelops.As[kernelops.SAD](b)
func As[F any](b Backend) (F, error) {
	f, ok := b.(F)
	if !ok {
		var zero F
		return zero, NotSupported(b.Name(), "facet", "backend lacks "+facetName[F]())
	}
	return f, nil
}

func facetName[F any]() string {
	var p *F
	return typeName(p)
}

func typeName(p any) string { return reflect.TypeOf(p).Elem().String() }
