package config

import (
	"fmt"
	"strconv"
	"strings"

	"github.com/keyplane/keyplane/kernelops"
)

const wantMark = "want VALUE or VALUE/MASK, decimal or 0x hex, such as 42 or 0x2a/0xff (0: none)"

// parseMark reads mark_in or mark_out as swanctl writes them: VALUE or
// VALUE/MASK, the mask 0xffffffff when left out. swanctl's %unique,
// %unique-dir and %same are refused: they need a mark allocated per SA,
// which keyplane does not do. A value with bits outside its mask could
// never match a packet, so it is refused too.
func parseMark(v string) (kernelops.Mark, error) {
	if strings.HasPrefix(v, "%") {
		return kernelops.Mark{}, fmt.Errorf("%q: %%unique, %%unique-dir and %%same marks are not supported; %s", v, wantMark)
	}
	val, mask, hasMask := strings.Cut(v, "/")
	x, err := strconv.ParseUint(val, 0, 32)
	if err != nil {
		return kernelops.Mark{}, fmt.Errorf("%q: %s", v, wantMark)
	}
	m := kernelops.Mark{Value: uint32(x), Mask: 0xffffffff}
	if hasMask {
		y, err := strconv.ParseUint(mask, 0, 32)
		if err != nil {
			return kernelops.Mark{}, fmt.Errorf("%q: %s", v, wantMark)
		}
		m.Mask = uint32(y)
	}
	if m.Value&^m.Mask != 0 {
		return kernelops.Mark{}, fmt.Errorf("%q: the value has bits outside the mask; %s", v, wantMark)
	}
	if m.Value == 0 {
		// swanctl's 0 (any mask) is no mark.
		return kernelops.Mark{}, nil
	}
	return m, nil
}
