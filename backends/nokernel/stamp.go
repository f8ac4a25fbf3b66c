package nokernel

import (
	"math"
	"time"
)

// stamp is a time in 8 octets: nanoseconds from the model's epoch, a
// nanosecond before the model opened; zero is the zero time, so a zero
// entry has zero times. A time that does not read back exactly as
// epoch.Add of its offset (in another location, more than 292 years away,
// or the epoch itself) is kept whole apart, its stamp stampApart. Times
// are kept as wall-clock readings: one read back carries no monotonic
// clock reading, as a time read from a kernel does not.
type stamp int64

const (
	stampZero  stamp = 0             // the zero time
	stampApart stamp = math.MinInt64 // kept whole in the entry's extra part
)

// epochOf is the epoch of a model opened at now.
func epochOf(now time.Time) time.Time { return now.Round(0).Add(-time.Nanosecond) }

// toStamp returns t as a stamp; false: t must be kept whole (as
// t.Round(0)).
func (b *model) toStamp(t time.Time) (stamp, bool) {
	if t.IsZero() {
		return stampZero, true
	}
	t = t.Round(0)
	d := t.Sub(b.epoch)
	if s := stamp(d); s != stampZero && s != stampApart && b.epoch.Add(d) == t {
		return s, true
	}
	return 0, false
}

// fromStamp is the time of a stamp other than stampApart.
func (b *model) fromStamp(s stamp) time.Time {
	if s == stampZero {
		return time.Time{}
	}
	return b.epoch.Add(time.Duration(s))
}
