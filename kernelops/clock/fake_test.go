package clock

import (
	"testing"
	"time"
)

func TestFakeFiresInOrderAndStop(t *testing.T) {
	c := NewFake(time.Unix(1000, 0))
	var got []string
	c.AfterFunc(3*time.Second, func() { got = append(got, "c") })
	c.AfterFunc(1*time.Second, func() {
		got = append(got, "a")
		// a timer armed by a callback fires in the same Advance when due
		c.AfterFunc(500*time.Millisecond, func() { got = append(got, "a2") })
	})
	stopped := c.AfterFunc(2*time.Second, func() { got = append(got, "b") })
	if !stopped.Stop() || stopped.Stop() {
		t.Fatal("Stop should succeed once")
	}
	c.Advance(2 * time.Second)
	if want := "a,a2"; join(got) != want {
		t.Fatalf("after 2s fired %q, want %q", join(got), want)
	}
	if now := c.Now(); !now.Equal(time.Unix(1002, 0)) {
		t.Fatalf("Now = %v", now)
	}
	c.Advance(time.Second)
	if want := "a,a2,c"; join(got) != want {
		t.Fatalf("after 3s fired %q, want %q", join(got), want)
	}
	if c.Pending() != 0 {
		t.Fatalf("pending %d", c.Pending())
	}
}

func TestFakeNowDuringCallback(t *testing.T) {
	c := NewFake(time.Unix(0, 0))
	var at time.Time
	c.AfterFunc(5*time.Second, func() { at = c.Now() })
	c.Advance(time.Minute)
	if !at.Equal(time.Unix(5, 0)) {
		t.Fatalf("callback saw %v, want the timer's own time", at)
	}
}

func join(s []string) string {
	out := ""
	for i, x := range s {
		if i > 0 {
			out += ","
		}
		out += x
	}
	return out
}

// TestFakeManyTimers: thousands of timers, half stopped, fire in time
// order (ties in the order set); Next names the earliest pending one.
func TestFakeManyTimers(t *testing.T) {
	c := NewFake(time.Unix(0, 0))
	var fired []int
	var timers []Timer
	for i := 0; i < 5000; i++ {
		d := time.Duration((i*7919)%1000) * time.Millisecond
		timers = append(timers, c.AfterFunc(d, func() { fired = append(fired, i) }))
	}
	for i := 0; i < 5000; i += 2 {
		if !timers[i].Stop() {
			t.Fatalf("timer %d not pending", i)
		}
	}
	if c.Pending() != 2500 {
		t.Fatalf("pending %d", c.Pending())
	}
	when := func(i int) int { return (i * 7919) % 1000 }
	earliest := 1000
	for i := 1; i < 5000; i += 2 {
		earliest = min(earliest, when(i))
	}
	next, ok := c.Next()
	if want := time.Unix(0, 0).Add(time.Duration(earliest) * time.Millisecond); !ok || !next.Equal(want) {
		t.Fatalf("next %v %v, want %v", next, ok, want)
	}
	c.Advance(time.Second)
	if len(fired) != 2500 {
		t.Fatalf("fired %d", len(fired))
	}
	for k := 1; k < len(fired); k++ {
		a, b := fired[k-1], fired[k]
		if a%2 == 0 || when(a) > when(b) || (when(a) == when(b) && a > b) {
			t.Fatalf("order: %d (at %d) before %d (at %d)", a, when(a), b, when(b))
		}
	}
	if _, ok := c.Next(); ok || c.Pending() != 0 {
		t.Fatalf("timers left: %d", c.Pending())
	}
}
