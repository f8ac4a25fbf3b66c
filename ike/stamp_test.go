package ike

import (
	"testing"
	"time"

	"github.com/stretchr/testify/assert"

	"github.com/keyplane/keyplane/kernelops/clock"
)

// TestStamp: a stamp reads back as the time stored, for a test's clock
// (wall clock only, to the nanosecond, in its location) and the real one
// (with its monotonic reading, so it compares with clk.Now() as the time
// did); the zero time is 0, the epoch itself is not.
func TestStamp(t *testing.T) {
	t0 := time.Date(2026, 12, 6, 17, 0, 0, 0, time.UTC)
	e := &Engine{clk: clock.NewFake(t0)}
	e.epoch = e.clk.Now()
	assert.Equal(t, stamp(0), e.stampOf(time.Time{}))
	assert.True(t, e.timeOf(0).IsZero())
	for _, x := range []time.Time{t0, t0.Add(1), t0.Add(-1), t0.Add(-time.Hour), t0.Add(90 * 24 * time.Hour), t0.AddDate(-50, 0, 0)} {
		s := e.stampOf(x)
		assert.NotZero(t, s, x)
		assert.Equal(t, x, e.timeOf(s), "stamp %d", s)
	}
	assert.Less(t, e.stampOf(t0.Add(-1)), e.stampOf(t0))
	assert.Less(t, e.stampOf(t0), e.stampOf(t0.Add(1)), "ordered as the times")

	r := &Engine{clk: clock.Real()}
	r.epoch = r.clk.Now()
	now := r.clk.Now()
	back := r.timeOf(r.stampOf(now))
	assert.True(t, back.Equal(now), "%v against %v", back, now)
	assert.Contains(t, back.String(), "m=+", "keeps a monotonic reading")
	assert.True(t, r.timeOf(r.stampOf(now.Add(time.Minute))).After(r.clk.Now()))
}
