package main

import (
	"flag"
	"fmt"
	"strconv"

	"github.com/keyplane/keyplane/ike/control"
)

// saRefFlags are terminate's and rekey's --ike-id and --child-id: one SA
// by its unique ID (ike list / child list show them), instead of NAME.
type saRefFlags struct {
	ikeID, childID uint64
}

func addSARefFlags(fs *flag.FlagSet) *saRefFlags {
	r := &saRefFlags{}
	fs.Uint64Var(&r.ikeID, "ike-id", 0, "one IKE SA by its unique ID (see 'ike list') instead of NAME")
	fs.Uint64Var(&r.childID, "child-id", 0, "one CHILD SA by its unique ID (see 'child list') instead of NAME")
	return r
}

// request builds the control request for cmd from the flags and the
// arguments: exactly one of NAME, --ike-id, --child-id. result is the
// JSON answer's identifying fields.
func (r *saRefFlags) request(cmd string, fs *flag.FlagSet) (req control.Request, result map[string]any, err error) {
	given := 0
	for _, set := range []bool{fs.NArg() > 0, r.ikeID != 0, r.childID != 0} {
		if set {
			given++
		}
	}
	if given != 1 || fs.NArg() > 1 {
		return req, nil, usageError{"want one NAME (a child or a connection), or --ike-id N, or --child-id N"}
	}
	req.Cmd = cmd
	switch {
	case r.ikeID != 0:
		if r.ikeID > 1<<32-1 {
			return req, nil, usageError{fmt.Sprintf("--ike-id: %d is not an SA ID (1 to %d)", r.ikeID, uint32(1<<32-1))}
		}
		req.Args = map[string]string{control.ArgIKEID: strconv.FormatUint(r.ikeID, 10)}
		return req, map[string]any{"ike_id": r.ikeID}, nil
	case r.childID != 0:
		if r.childID > 1<<32-1 {
			return req, nil, usageError{fmt.Sprintf("--child-id: %d is not an SA ID (1 to %d)", r.childID, uint32(1<<32-1))}
		}
		req.Args = map[string]string{control.ArgChildID: strconv.FormatUint(r.childID, 10)}
		return req, map[string]any{"child_id": r.childID}, nil
	}
	req.Name = fs.Arg(0)
	return req, map[string]any{"name": req.Name}, nil
}
