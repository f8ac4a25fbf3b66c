package ike

import (
	"context"
	"fmt"

	"github.com/keyplane/keyplane/kernelops"
)

// Hardware offload per child (hw_offload): the SAs of a child are
// offloaded to the interface that carries its traffic to the peer, the
// one the dataplane's route to the remote address goes out of.

// offloadPlan is what install asks of the dataplane for a child's SAs.
type offloadPlan struct {
	off     kernelops.Offload // zero: software
	support string            // the device's offload support, as read
}

// planOffload finds the device that carries the child's traffic and
// reads what it can offload. An explicit mode fails when either cannot
// be known; auto then installs in software, with one log line saying why.
func (e *Engine) planOffload(ctx context.Context, ch *childSA) (offloadPlan, error) {
	mode := ch.cfg.HWOffload
	if mode == kernelops.OffloadNone {
		return offloadPlan{}, nil
	}
	dev, sup, err := e.offloadDevice(ctx, ch)
	if err != nil {
		if mode != kernelops.OffloadAuto {
			return offloadPlan{}, fmt.Errorf("hw_offload = %s: %w", mode, err)
		}
		ch.logger().Info("hw_offload auto: installing without offload", "device", dev, "mode", kernelops.OffloadNone, "reason", err.Error())
		return offloadPlan{}, nil
	}
	return offloadPlan{off: kernelops.Offload{Device: dev, Mode: mode}, support: sup.Detail}, nil
}

func (e *Engine) offloadDevice(ctx context.Context, ch *childSA) (string, kernelops.OffloadSupport, error) {
	as, err := kernelops.As[kernelops.AddrSelector](e.b)
	if err != nil {
		return "", kernelops.OffloadSupport{}, err
	}
	off, err := kernelops.As[kernelops.Offloader](e.b)
	if err != nil {
		return "", kernelops.OffloadSupport{}, err
	}
	r, err := as.RouteTo(ctx, ch.remoteAddr)
	if err != nil {
		return "", kernelops.OffloadSupport{}, fmt.Errorf("no route to %s to find the device: %w", ch.remoteAddr, err)
	}
	if r.IfName == "" {
		return "", kernelops.OffloadSupport{}, fmt.Errorf("the route to %s names no device", ch.remoteAddr)
	}
	sup, err := off.OffloadSupport(ctx, r.IfName)
	if err != nil {
		return r.IfName, sup, fmt.Errorf("read the offload support of %s: %w", r.IfName, err)
	}
	return r.IfName, sup, nil
}

// offloadDone records what the dataplane installed and, when auto got
// less than packet offload, logs the one line that says so.
func (ch *childSA) offloadDone(p offloadPlan, in, out kernelops.OffloadMode) {
	ch.offIn, ch.offOut = in, out
	ch.e.childChanged(ch) // changes.go
	if p.off.Mode != kernelops.OffloadAuto || (in == kernelops.OffloadPacket && out == kernelops.OffloadPacket) {
		return
	}
	ch.logger().Info("hw_offload auto fell back", "device", p.off.Device, "mode", offloadText(in, out),
		"reason", "the device's offload support: "+p.support)
}

// offloadText is the active offload of a child: one word when both SAs
// agree, else in/out.
func offloadText(in, out kernelops.OffloadMode) string {
	if in == out {
		return in.String()
	}
	return "in " + in.String() + ", out " + out.String()
}
