package control

import (
	"context"
	"fmt"
	"strconv"
	"time"
)

// Terminate and rekey name their SAs by name (Request.Name) or by one
// SA's unique ID: Args "ike-id" or "child-id", a decimal number.
const (
	ArgIKEID   = "ike-id"
	ArgChildID = "child-id"
)

// saRef is the SA a terminate or rekey request names by ID: its kind
// ("IKE" or "CHILD") and ID; kind "" when it names by Name.
func saRef(req Request) (kind string, id uint32, err error) {
	ikeID, hasIKE := req.Args[ArgIKEID]
	childID, hasChild := req.Args[ArgChildID]
	switch {
	case hasIKE && hasChild:
		return "", 0, fmt.Errorf("%w: give %s or %s, not both", ErrBadRequest, ArgIKEID, ArgChildID)
	case !hasIKE && !hasChild:
		if req.Name == "" {
			return "", 0, fmt.Errorf("%w: %s needs a name, %s or %s", ErrBadRequest, req.Cmd, ArgIKEID, ArgChildID)
		}
		return "", 0, nil
	case req.Name != "":
		return "", 0, fmt.Errorf("%w: give a name or an ID, not both", ErrBadRequest)
	}
	kind, arg, v := "IKE", ArgIKEID, ikeID
	if hasChild {
		kind, arg, v = "CHILD", ArgChildID, childID
	}
	n, perr := strconv.ParseUint(v, 10, 32)
	if perr != nil || n == 0 {
		return "", 0, fmt.Errorf("%w: %s: want a number from 1 to %d, got %q", ErrBadRequest, arg, uint32(1<<32-1), clip(v, 20))
	}
	return kind, uint32(n), nil
}

func (s *Server) terminate(ctx context.Context, req Request) (Response, error) {
	kind, id, err := saRef(req)
	if err != nil {
		return Response{}, err
	}
	ctx, cancel := context.WithTimeout(ctx, 60*time.Second)
	defer cancel()
	switch kind {
	case "IKE":
		return Response{Text: fmt.Sprintf("IKE SA %d terminated", id)}, s.Engine.TerminateIKESA(ctx, id)
	case "CHILD":
		return Response{Text: fmt.Sprintf("CHILD SA %d terminated", id)}, s.Engine.TerminateChildSA(ctx, id)
	}
	return Response{Text: req.Name + " terminated"}, s.Engine.Terminate(ctx, req.Name)
}

func (s *Server) rekey(ctx context.Context, req Request) (Response, error) {
	kind, id, err := saRef(req)
	if err != nil {
		return Response{}, err
	}
	switch kind {
	case "IKE":
		return Response{Text: fmt.Sprintf("IKE SA %d: rekey started", id)}, s.Engine.RekeyIKESA(ctx, id)
	case "CHILD":
		return Response{Text: fmt.Sprintf("CHILD SA %d: rekey started", id)}, s.Engine.RekeyChildSA(ctx, id)
	}
	return Response{Text: req.Name + ": rekey started"}, s.Engine.Rekey(ctx, req.Name)
}
