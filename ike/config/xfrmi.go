package config

import (
	"fmt"
	"strings"
)

const wantXfrmInterface = "want an interface name of 1 to 15 characters without '/', ':' or spaces"

// validateXfrmInterface checks a child's xfrm_interface: a name the
// kernel takes, and one if_id for both directions (the interface has one).
func (ch *Child) validateXfrmInterface(bad func(field, format string, args ...any)) {
	x := ch.XfrmInterface
	if x == "" {
		return
	}
	if len(x) > 15 || strings.ContainsAny(x, "/: \t\n") {
		bad("xfrm_interface", "%q: %s", x, wantXfrmInterface)
		return
	}
	if ch.IfIDIn == 0 || ch.IfIDIn != ch.IfIDOut {
		bad("xfrm_interface", "%s needs if_id_in and if_id_out set to one non-zero id, the interface's (they are %d and %d)", x, ch.IfIDIn, ch.IfIDOut)
	}
}

// validateXfrmInterfaces checks that the children naming an interface
// agree on its if_id, and that an if_id belongs to one interface.
func (c *Config) validateXfrmInterfaces(add func(line int, conn, child, field, msg string)) {
	idOf := map[string]uint32{}   // xfrm_interface -> if_id
	nameOf := map[uint32]string{} // if_id -> xfrm_interface
	for _, conn := range c.Connections {
		if conn == nil {
			continue
		}
		for _, ch := range conn.Children {
			if ch == nil || ch.XfrmInterface == "" || ch.IfIDIn == 0 || ch.IfIDIn != ch.IfIDOut {
				continue
			}
			x, id := ch.XfrmInterface, ch.IfIDIn
			bad := func(format string, args ...any) {
				add(ch.Line, conn.Name, ch.Name, "xfrm_interface", fmt.Sprintf(format, args...))
			}
			if had, ok := idOf[x]; ok && had != id {
				bad("%s has if_id %d in another child and %d here; an interface has one if_id", x, had, id)
				continue
			}
			if other, ok := nameOf[id]; ok && other != x {
				bad("if_id %d is xfrm_interface %s's in another child; one interface per if_id", id, other)
				continue
			}
			idOf[x], nameOf[id] = id, x
		}
	}
}
