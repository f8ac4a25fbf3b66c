package ike

import (
	"testing"
	"time"

	"github.com/stretchr/testify/assert"

	"github.com/keyplane/keyplane/ike/config"
	"github.com/keyplane/keyplane/kernelops"
)

func TestJittered(t *testing.T) {
	top := func(n uint64) uint64 { return n - 1 } // the largest draw
	zero := func(uint64) uint64 { return 0 }
	for _, tc := range []struct {
		limit, spread uint64
		rnd           func(uint64) uint64
		want          uint64
	}{
		{0, 100, top, 0},     // no limit stays none
		{1000, 0, top, 1000}, // no spread
		{1000, 100, zero, 1000},
		{1000, 100, top, 900}, // up to the whole spread
		{1000, 900, top, 500}, // at most half the limit
	} {
		assert.Equal(t, tc.want, jittered(tc.limit, tc.spread, tc.rnd), "limit %d spread %d", tc.limit, tc.spread)
	}
}

// TestChildLifetimeSpread: the soft limits of children with swanctl's
// defaults (rekey 1h, life 66m, rand 6m) fall in [54m, 60m], spread over
// the range; the hard ones stay.
func TestChildLifetimeSpread(t *testing.T) {
	c := &config.Child{Lifetime: kernelops.Lifetimes{
		Soft: kernelops.Limits{AddTime: time.Hour, Bytes: 1 << 30, Packets: 1 << 20},
		Hard: kernelops.Limits{AddTime: 66 * time.Minute, Bytes: 1 << 31, Packets: 1 << 21}},
		RandTime: 6 * time.Minute, RandBytes: 1 << 29, RandPackets: 1 << 19}
	lo, hi := time.Hour, time.Duration(0)
	for range 2000 {
		lt := childLifetime(c, randN)
		assert.Equal(t, c.Lifetime.Hard, lt.Hard)
		s := lt.Soft.AddTime
		if s < 54*time.Minute || s > time.Hour {
			t.Fatalf("soft time %v outside [54m, 1h]", s)
		}
		if lt.Soft.Bytes < 1<<30-1<<29 || lt.Soft.Bytes > 1<<30 || lt.Soft.Packets < 1<<20-1<<19 || lt.Soft.Packets > 1<<20 {
			t.Fatalf("soft volume %+v", lt.Soft)
		}
		lo, hi = min(lo, s), max(hi, s)
	}
	if lo > 55*time.Minute || hi < 59*time.Minute {
		t.Errorf("2000 soft times span only [%v, %v] of [54m, 1h]", lo, hi)
	}
	conn := &config.Connection{RekeyTime: 4 * time.Hour, RandTime: 24 * time.Minute}
	for range 100 {
		if d := ikeRekeyIn(conn, randN); d < 216*time.Minute || d > 4*time.Hour {
			t.Fatalf("IKE rekey in %v, outside [3h36m, 4h]", d)
		}
	}
	assert.Equal(t, time.Duration(0), ikeRekeyIn(&config.Connection{}, randN))
}
