package main

import (
	"regexp"
	"strconv"
	"testing"
	"time"

	"github.com/stretchr/testify/assert"
)

// pingReply is one reply line of iputils ping -D: "[secs.micros] 64
// bytes from ...".
var pingReply = regexp.MustCompile(`(?m)^\[(\d+)\.(\d+)\] \d+ bytes from`)

// pingGap is the longest a ping run (ping -D output) went without a
// reply: between two replies in a row, from start to the first reply or
// from the last one to end — a tunnel's outage across a failover, to
// within the ping interval.
func pingGap(out string, start, end time.Time) time.Duration {
	prev, worst := start, time.Duration(0)
	for _, m := range pingReply.FindAllStringSubmatch(out, -1) {
		s, _ := strconv.ParseInt(m[1], 10, 64)
		frac := (m[2] + "000000000")[:9]
		ns, _ := strconv.ParseInt(frac, 10, 64)
		at := time.Unix(s, ns)
		worst = max(worst, at.Sub(prev))
		prev = at
	}
	return max(worst, end.Sub(prev))
}

func TestPingGap(t *testing.T) {
	start := time.Unix(100, 0)
	line := func(ts string) string { return "[" + ts + "] 64 bytes from 10.20.0.1: icmp_seq=1 ttl=64 time=1.2 ms\n" }
	for _, tc := range []struct {
		name string
		out  string
		end  time.Time
		want time.Duration
	}{
		{"no reply: the whole run", "PING 10.20.0.1\n", time.Unix(110, 0), 10 * time.Second},
		{"steady", line("100.200000") + line("100.400000") + line("100.600000"), time.Unix(100, 700_000_000), 200 * time.Millisecond},
		{"gap in the middle", line("100.200000") + line("103.700000") + line("103.900000"), time.Unix(104, 0), 3500 * time.Millisecond},
		{"late first reply", line("102.5") + line("102.7"), time.Unix(102, 800_000_000), 2500 * time.Millisecond},
		{"silent at the end", line("100.1") + line("100.2"), time.Unix(105, 200_000_000), 5 * time.Second},
		{"other lines ignored", "From 10.30.0.1 icmp_seq=3 Destination Host Unreachable\n" + line("100.100000"), time.Unix(100, 100_000_000), 100 * time.Millisecond},
	} {
		t.Run(tc.name, func(t *testing.T) {
			assert.Equal(t, tc.want, pingGap(tc.out, start, tc.end))
		})
	}
}
