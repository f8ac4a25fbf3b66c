package conformance

import (
	"time"

	"github.com/keyplane/keyplane/kernelops"
)

// eventWait bounds how long the suite waits for an event that must come;
// generous, because kernels under emulation are slow.
const eventWait = 20 * time.Second

type events struct {
	t   TB
	sub kernelops.Subscription
}

func subscribe(t TB, h *Harness, kinds kernelops.EventKind, buffer int) *events {
	t.Helper()
	src := facet[kernelops.EventSource](t, h, kernelops.CapEvents)
	sub, err := src.Subscribe(t.Context(), kernelops.SubscribeOptions{Kinds: kinds, Buffer: buffer})
	noErr(t, "subscribe", err)
	t.Cleanup(func() { sub.Close() })
	return &events{t: t, sub: sub}
}

// wait returns the first event satisfying pred, failing after d.
func (e *events) wait(what string, d time.Duration, pred func(kernelops.Event) bool) kernelops.Event {
	e.t.Helper()
	timer := time.NewTimer(d)
	defer timer.Stop()
	for {
		select {
		case ev, ok := <-e.sub.Events():
			if !ok {
				e.t.Fatalf("waiting for %s: subscription closed", what)
			}
			if pred(ev) {
				return ev
			}
		case <-timer.C:
			e.t.Fatalf("no %s within %v", what, d)
			return nil
		}
	}
}

// poll returns events satisfying pred that arrive within d.
func (e *events) poll(d time.Duration, pred func(kernelops.Event) bool) []kernelops.Event {
	var out []kernelops.Event
	timer := time.NewTimer(d)
	defer timer.Stop()
	for {
		select {
		case ev, ok := <-e.sub.Events():
			if !ok {
				return out
			}
			if pred(ev) {
				out = append(out, ev)
			}
		case <-timer.C:
			return out
		}
	}
}

func isExpire(id kernelops.SAID, hard bool) func(kernelops.Event) bool {
	return func(ev kernelops.Event) bool {
		x, ok := ev.(*kernelops.ExpireEvent)
		return ok && x.SA.SPI == id.SPI && x.SA.Dst == id.Dst && x.Hard == hard
	}
}

func isExpireOf(id kernelops.SAID) func(kernelops.Event) bool {
	return func(ev kernelops.Event) bool {
		x, ok := ev.(*kernelops.ExpireEvent)
		return ok && x.SA.SPI == id.SPI && x.SA.Dst == id.Dst
	}
}
