package ike

// State most IKE SAs never have (multi-KE, virtual IPs) sits behind a
// pointer in ikeSA, made at its first write (made) and read as a zero
// value while there is none (orZero).

// made is *p, made at first use.
func made[T any](p **T) *T {
	if *p == nil {
		*p = new(T)
	}
	return *p
}

// orZero is *p, or T's zero value when p is nil: for reading only.
func orZero[T any](p *T) T {
	if p == nil {
		var zero T
		return zero
	}
	return *p
}
