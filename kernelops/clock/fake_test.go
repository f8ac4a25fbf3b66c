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
