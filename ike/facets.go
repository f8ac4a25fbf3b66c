package ike

import (
	"errors"
	"fmt"

	"github.com/keyplane/keyplane/ike/config"
	"github.com/keyplane/keyplane/kernelops"
)

// ErrFacetMissing: the configuration asks for something the dataplane
// cannot do (it lacks the facet, or does not claim its capability). The
// error wrapping it quotes the backend's note on the capability.
var ErrFacetMissing = errors.New("the dataplane lacks what the configuration needs")

// checkFacets refuses a configuration that needs a facet the backend
// lacks, at load and reload, before anything is applied.
func (e *Engine) checkFacets(cfg *config.Config) error {
	var errs []error
	if h := holesFor(cfg); !noHoles(h) {
		if _, err := kernelops.As[kernelops.Holes](e.b); err != nil {
			errs = append(errs, fmt.Errorf("selectors catch IKE or IPv6 neighbour discovery (holes %+v): %w: %w", h, ErrFacetMissing, err))
		}
	}
	errs = append(errs, e.checkVIPFacets(cfg)...) // vips.go
	for _, c := range cfg.Connections {
		for _, ch := range c.Children {
			if ch.IfIDIn != 0 || ch.IfIDOut != 0 {
				if err := e.b.Capabilities().Require(e.b.Name(), "if_id", kernelops.CapIfID); err != nil {
					errs = append(errs, fmt.Errorf("child %s: if_id_in = %d, if_id_out = %d: %w: %w", ch.Name, ch.IfIDIn, ch.IfIDOut, ErrFacetMissing, err))
				}
			}
			if !ch.MarkIn.IsZero() || !ch.MarkOut.IsZero() {
				if err := e.b.Capabilities().Require(e.b.Name(), "mark", kernelops.CapMarks); err != nil {
					errs = append(errs, fmt.Errorf("child %s: mark_in = %s, mark_out = %s: %w: %w", ch.Name, ch.MarkIn, ch.MarkOut, ErrFacetMissing, err))
				}
			}
			if ch.XfrmInterface != "" {
				if _, err := kernelops.As[kernelops.XfrmInterfaces](e.b); err != nil {
					errs = append(errs, fmt.Errorf("child %s: xfrm_interface = %s: %w: %w", ch.Name, ch.XfrmInterface, ErrFacetMissing, err))
				}
			}
			if ch.HWOffload == kernelops.OffloadNone {
				continue
			}
			if _, err := kernelops.As[kernelops.Offloader](e.b); err != nil {
				errs = append(errs, fmt.Errorf("child %s: hw_offload = %s: %w: %w", ch.Name, ch.HWOffload, ErrFacetMissing, err))
				continue
			}
			if _, err := kernelops.As[kernelops.AddrSelector](e.b); err != nil {
				errs = append(errs, fmt.Errorf("child %s: hw_offload = %s needs the route to the peer to find the device: %w: %w", ch.Name, ch.HWOffload, ErrFacetMissing, err))
			}
		}
	}
	return errors.Join(errs...)
}
