package control

import (
	"context"
	"encoding/json"
	"net"
	"time"

	"github.com/keyplane/keyplane/kernelops"
)

// laggedSource is the kernelops overrun source of a subscriber that fell
// behind (as opposed to a dataplane that lost events itself).
const laggedSource = "subscriber queue"

// streamEvents sends the engine's and the dataplane's events until the
// client leaves or falls behind. Neither source ever waits for a client:
// both drop what a full queue cannot take and say so with an overrun. A
// client whose queue overran, or that does not take an event within the
// write timeout, gets the overrun event (when it can still be written)
// and an error, and is disconnected: it re-reads state if it cares.
func (s *Server) streamEvents(ctx context.Context, c net.Conn, enc *json.Encoder) {
	sub := s.Engine.Subscribe()
	defer sub.Close()
	var dp <-chan kernelops.Event
	if src, err := kernelops.As[kernelops.EventSource](s.Engine.Backend()); err == nil {
		if ds, err := src.Subscribe(ctx, kernelops.SubscribeOptions{}); err == nil {
			defer ds.Close()
			dp = ds.Events()
		}
	}
	if err := s.send(c, enc, Response{OK: true, Text: "streaming events"}); err != nil {
		return
	}
	for {
		var se StreamEvent
		lagged := false
		select {
		case <-ctx.Done():
			return
		case ev, ok := <-sub.C:
			if !ok {
				return
			}
			se = StreamEvent{Time: ev.Time, Source: "engine", Engine: &ev, Kind: ev.Kind.String()}
			lagged = ev.Kind == "overrun"
		case ev, ok := <-dp:
			if !ok {
				dp = nil
				continue
			}
			se = StreamEvent{Time: time.Now(), Source: "dataplane", Kind: ev.Kind().String(), Dataplane: ev}
			if s.Describe != nil {
				se.Text = s.Describe(ev)
			}
			if o, ok := ev.(*kernelops.OverrunEvent); ok && o.Source == laggedSource {
				lagged = true
			}
		}
		if err := s.send(c, enc, Response{OK: true, Event: &se}); err != nil {
			s.Log.Warn("control socket: events subscriber dropped: it does not read", "err", err)
			return
		}
		if lagged {
			s.Log.Warn("control socket: events subscriber dropped: it fell behind and lost events")
			_ = s.send(c, enc, Response{Error: "events lost: this subscriber fell behind and is disconnected; re-read the state and subscribe again"})
			return
		}
	}
}
