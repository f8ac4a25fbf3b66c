// Package clock lets dataplane models and shared helpers run on real time
// in production and on a hand-driven fake clock in tests, so lifetime and
// idle tests take milliseconds instead of minutes.
package clock

import "time"

// Clock is the time source of a backend or helper.
type Clock interface {
	Now() time.Time
	// AfterFunc calls f in its own goroutine (real) or synchronously from
	// Advance (fake) once d has passed.
	AfterFunc(d time.Duration, f func()) Timer
}

// Timer is a pending AfterFunc call.
type Timer interface {
	// Stop prevents the call; it reports whether it was still pending.
	Stop() bool
}

type real struct{}

// Real returns the system clock.
func Real() Clock { return real{} }

func (real) Now() time.Time { return time.Now() }

func (real) AfterFunc(d time.Duration, f func()) Timer { return time.AfterFunc(d, f) }
