package ike

import "slices"

// Child names by reqid (Engine.byReqID), the reverse of Engine.reqids,
// so that an acquire finds its child without scanning every configured
// child name: with 100,000 trap children, each acquire scanned them all.
// Every change of Engine.reqids goes through setReqID. A reqid may be
// configured for several children; the one set first is the acquire's.
// Loop-owned.

// setReqID records r as the reqid of the child name.
func (e *Engine) setReqID(name string, r uint32) {
	if old, ok := e.reqids[name]; ok {
		if old == r {
			return
		}
		names := slices.DeleteFunc(e.byReqID[old], func(n string) bool { return n == name })
		if len(names) == 0 {
			delete(e.byReqID, old)
		} else {
			e.byReqID[old] = names
		}
	}
	e.reqids[name] = r
	e.byReqID[r] = append(e.byReqID[r], name)
}

// childNameOf is the name of the child that reqid belongs to ("" for
// none of ours).
func (e *Engine) childNameOf(reqid uint32) string {
	if names := e.byReqID[reqid]; len(names) > 0 {
		return names[0]
	}
	return ""
}

// reqidIndexErr reports where byReqID and reqids disagree ("" when they
// agree), for tests.
func (e *Engine) reqidIndexErr() string {
	n := 0
	for r, names := range e.byReqID {
		if len(names) == 0 {
			return "an empty reqid entry is kept"
		}
		for _, name := range names {
			n++
			if got, ok := e.reqids[name]; !ok || got != r {
				return "child " + name + " is indexed under a reqid it does not have"
			}
		}
	}
	if n != len(e.reqids) {
		return "the reqid index holds a different number of children than have reqids"
	}
	return ""
}
