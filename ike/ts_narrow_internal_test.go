package ike

import (
	"net/netip"
	"testing"

	"github.com/stretchr/testify/assert"
)

func rangeOf(from, to string) tsRange {
	return tsRange{eport: 65535, start: netip.MustParseAddr(from), end: netip.MustParseAddr(to)}
}

// narrow keeps each intersection once and drops one inside another: the
// initiator's packet-specific first selector (RFC 7296 §2.9) inside the
// wide one.
func TestNarrow(t *testing.T) {
	wide := rangeOf("10.1.0.0", "10.1.255.255")
	host := rangeOf("10.1.2.3", "10.1.2.3")
	other := rangeOf("10.9.0.0", "10.9.0.255")
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
