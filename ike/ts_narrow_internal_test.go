package ike

import (
	"testing"

	"github.com/stretchr/testify/assert"
)

// narrow keeps each intersection once and drops one inside another: the
// initiator's packet-specific first selector (RFC 7296 §2.9) inside the
// wide one.
func TestNarrow(t *testing.T) {
	wide, host, other := ranges(t, "10.1.0.0/16")[0], ranges(t, "10.1.2.3/32")[0], ranges(t, "10.9.0.0/24")[0]
	for _, tc := range []struct {
		name         string
		theirs, ours []tsRange
		want         []tsRange
	}{
		{"one each", []tsRange{wide}, []tsRange{wide}, []tsRange{wide}},
		{"theirs narrower", []tsRange{host}, []tsRange{wide}, []tsRange{host}},
		{"packet-specific first, then wide", []tsRange{host, wide}, []tsRange{wide}, []tsRange{wide}},
		{"two apart", []tsRange{wide, other}, []tsRange{wide, other}, []tsRange{wide, other}},
		{"none in common", []tsRange{other}, []tsRange{wide}, nil},
		{"the same twice", []tsRange{wide, wide}, []tsRange{wide}, []tsRange{wide}},
	} {
		t.Run(tc.name, func(t *testing.T) {
			assert.Equal(t, tc.want, narrow(tc.theirs, tc.ours))
		})
	}
}
