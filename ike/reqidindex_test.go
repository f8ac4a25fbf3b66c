package ike

import (
	"fmt"
	"testing"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"
)

func TestReqIDIndex(t *testing.T) {
	e := &Engine{reqids: map[string]uint32{}, byReqID: map[uint32][]string{}}
	e.setReqID("a", 1)
	e.setReqID("b", 2)
	e.setReqID("c", 2) // configured twice: the first keeps it
	assert.Equal(t, "a", e.childNameOf(1))
	assert.Equal(t, "b", e.childNameOf(2))
	assert.Equal(t, "", e.childNameOf(3))
	e.setReqID("b", 3) // a reload changed b's reqid
	assert.Equal(t, "c", e.childNameOf(2))
	assert.Equal(t, "b", e.childNameOf(3))
	e.setReqID("a", 4)
	assert.Equal(t, "", e.childNameOf(1))
	require.Empty(t, e.reqidIndexErr())
	e.reqids["z"] = 9 // behind the index's back
	assert.NotEmpty(t, e.reqidIndexErr())
}

// BenchmarkReqIDLookup: what an acquire's lookup of its child costs with
// -children configured children: the scan of every child name it did
// before the reqid index (how=scan), against the index (how=index).
func BenchmarkReqIDLookup(b *testing.B) {
	for _, n := range []int{1000, 10000, 100000} {
		e := &Engine{reqids: map[string]uint32{}, byReqID: map[uint32][]string{}}
		for i := range n {
			e.setReqID(fmt.Sprintf("t%d-net", i), uint32(i+1))
		}
		want := uint32(n/2 + 1)
		scan := func(reqid uint32) string {
			for name, r := range e.reqids {
				if r == reqid {
					return name
				}
			}
			return ""
		}
		for _, how := range []string{"scan", "index"} {
			b.Run(fmt.Sprintf("children=%d/how=%s", n, how), func(b *testing.B) {
				var got string
				for b.Loop() {
					if how == "scan" {
						got = scan(want)
					} else {
						got = e.childNameOf(want)
					}
				}
				if got != fmt.Sprintf("t%d-net", n/2) {
					b.Fatalf("found %q", got)
				}
			})
		}
	}
}
