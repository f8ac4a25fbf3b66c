package ike

import (
	"testing"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"
)

// TestOutIndex: children found by SPI through the short list and, past
// outIndexSmall, the map; replaced and removed ones are not.
func TestOutIndex(t *testing.T) {
	for _, n := range []int{1, outIndexSmall, outIndexSmall + 5} {
		var x outIndex
		chs := make([]*childSA, n)
		for i := range chs {
			chs[i] = &childSA{outSPI: uint32(0x1000 + i)}
			x.put(chs[i].outSPI, chs[i])
		}
		assert.Equal(t, n > outIndexSmall, x.many != nil, "n=%d: a map only past the short list", n)
		for _, ch := range chs {
			require.Same(t, ch, x.get(ch.outSPI), "n=%d", n)
		}
		assert.Nil(t, x.get(0x999))
		repl := &childSA{outSPI: 0x1000}
		x.put(0x1000, repl)
		assert.Same(t, repl, x.get(0x1000))
		for _, ch := range chs {
			x.del(ch.outSPI)
			assert.Nil(t, x.get(ch.outSPI))
		}
		assert.Empty(t, x.few)
		assert.Empty(t, x.many)
	}
}
