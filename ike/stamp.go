package ike

import "time"

// A stamp is an engine time in 8 octets instead of time.Time's 24: an
// IKE SA keeps five times and a child two, for 100,000s of each. It is
// nanoseconds from the engine's epoch (its clock's reading at New), one
// more when not negative, so 0 is the zero time. Every stored time comes
// from the engine's clock, so it has the epoch's kind: a monotonic
// reading with the real clock (then a stamp reads back as the epoch
// plus the monotonic time since, whose wall clock is off by any step of
// the wall clock between the two), the wall clock alone with a test's.
// One more than 292 years from the epoch reads back as 292 years.
type stamp int64

func (e *Engine) stampOf(t time.Time) stamp {
	if t.IsZero() {
		return 0
	}
	d := t.Sub(e.epoch)
	if d >= 0 && d < time.Duration(1<<63-1) {
		d++
	}
	return stamp(d)
}

func (e *Engine) timeOf(s stamp) time.Time {
	switch {
	case s == 0:
		return time.Time{}
	case s > 0:
		return e.epoch.Add(time.Duration(s - 1))
	}
	return e.epoch.Add(time.Duration(s))
}

// nowStamp is the clock's time as a stamp.
func (e *Engine) nowStamp() stamp { return e.stampOf(e.clk.Now()) }
