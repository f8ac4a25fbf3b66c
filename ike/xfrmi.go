package ike

import (
	"errors"
	"fmt"

	"github.com/keyplane/keyplane/ike/config"
	"github.com/keyplane/keyplane/kernelops"
)

// ErrXfrmInterfaceTaken: the if_id of an xfrm_interface belongs to
// another interface in the dataplane, or the name to an interface of
// another if_id or kind.
var ErrXfrmInterfaceTaken = errors.New("the xfrm interface's name or if_id is taken")

// xfrmiRef is an XFRM interface held by the installed children and traps
// naming it; it goes with the last unless keyplane found it in place.
type xfrmiRef struct {
	ifID    uint32
	n       int
	adopted bool // there before keyplane: never deleted by keyplane
}

// holdXfrmi takes a reference on the child's xfrm_interface, creating
// it at the first. It returns the name held ("" for none), to be given
// back to releaseXfrmi.
func (e *Engine) holdXfrmi(cfg *config.Child) (string, error) {
	name := cfg.XfrmInterface
	if name == "" {
		return "", nil
	}
	if r := e.xfrmis[name]; r != nil {
		if r.ifID != cfg.IfIDIn {
			// A reload changed the interface's if_id while SAs of the old
			// one are up: the interface cannot serve both.
			return "", fmt.Errorf("xfrm interface %s has if_id %d, the child wants %d: %w", name, r.ifID, cfg.IfIDIn, ErrXfrmInterfaceTaken)
		}
		r.n++
		return name, nil
	}
	xi, err := kernelops.As[kernelops.XfrmInterfaces](e.b)
	if err != nil {
		return "", fmt.Errorf("xfrm_interface %s: %w: %w", name, ErrFacetMissing, err)
	}
	x := kernelops.XfrmInterface{Name: name, IfID: cfg.IfIDIn}
	r := &xfrmiRef{ifID: x.IfID, n: 1}
	err = xi.AddXfrmInterface(e.ctx, x)
	switch {
	case errors.Is(err, kernelops.ErrExists):
		if err := e.adoptable(x); err != nil {
			return "", err
		}
		r.adopted = true
		e.log.Info("xfrm interface already there: used, and left in place at the end", "interface", name, "if_id", x.IfID)
	case err != nil:
		return "", fmt.Errorf("create xfrm interface %s (if_id %d): %w", name, x.IfID, err)
	default:
		e.log.Info("xfrm interface created", "interface", name, "if_id", x.IfID)
	}
	e.xfrmis[name] = r
	return name, nil
}

// adoptable tells whether the interface whose creation failed with
// ErrExists is one keyplane may use: an xfrm interface of that name with
// that if_id, as the dataplane lists it.
func (e *Engine) adoptable(x kernelops.XfrmInterface) error {
	as, err := kernelops.As[kernelops.AddrSelector](e.b)
	if err != nil {
		return fmt.Errorf("xfrm interface %s exists and the dataplane cannot list interfaces to check its if_id: %w: %w", x.Name, ErrXfrmInterfaceTaken, err)
	}
	ifs, err := as.Interfaces(e.ctx)
	if err != nil {
		return fmt.Errorf("xfrm interface %s exists; listing interfaces to check its if_id: %w", x.Name, err)
	}
	return adoptDecision(ifs, x)
}

// adoptDecision: nil when ifs hold an xfrm interface named x.Name with
// x.IfID, else why not.
func adoptDecision(ifs []kernelops.Interface, x kernelops.XfrmInterface) error {
	for _, i := range ifs {
		if i.Name != x.Name {
			continue
		}
		if i.XfrmIfID != x.IfID {
			what := fmt.Sprintf("if_id %d", i.XfrmIfID)
			if i.XfrmIfID == 0 {
				what = "no if_id (not an xfrm interface)"
			}
			return fmt.Errorf("interface %s exists with %s, the child wants if_id %d: %w", x.Name, what, x.IfID, ErrXfrmInterfaceTaken)
		}
		return nil
	}
	for _, i := range ifs {
		if i.XfrmIfID == x.IfID {
			return fmt.Errorf("if_id %d of xfrm interface %s belongs to interface %s: %w", x.IfID, x.Name, i.Name, ErrXfrmInterfaceTaken)
		}
	}
	return fmt.Errorf("creating xfrm interface %s (if_id %d) failed with \"exists\" but no such interface is listed: %w", x.Name, x.IfID, ErrXfrmInterfaceTaken)
}

// releaseXfrmi gives back a reference from holdXfrmi; the last removes
// the interface keyplane created.
func (e *Engine) releaseXfrmi(name string) {
	r := e.xfrmis[name]
	if name == "" || r == nil {
		return
	}
	if r.n--; r.n > 0 {
		return
	}
	delete(e.xfrmis, name)
	e.deleteXfrmi(name, r)
}

func (e *Engine) deleteXfrmi(name string, r *xfrmiRef) {
	if r.adopted {
		return
	}
	xi, err := kernelops.As[kernelops.XfrmInterfaces](e.b)
	if err == nil {
		err = xi.DeleteXfrmInterface(e.ctx, name)
	}
	if err != nil && !errors.Is(err, kernelops.ErrNotFound) {
		e.log.Warn("delete xfrm interface failed", "interface", name, "err", err)
		return
	}
	e.log.Info("xfrm interface removed", "interface", name, "if_id", r.ifID)
}

// closeXfrmis removes the interfaces still held at the engine's end
// (none once every SA and trap is gone; this is the safety net).
func (e *Engine) closeXfrmis() {
	for name, r := range e.xfrmis {
		delete(e.xfrmis, name)
		e.deleteXfrmi(name, r)
	}
}
