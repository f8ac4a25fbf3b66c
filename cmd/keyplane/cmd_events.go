package main

import (
	"context"
	"encoding/json"
	"fmt"
	"time"

	"github.com/keyplane/keyplane/ike"
)

func init() {
	register(&command{name: "events", run: runEvents,
		summary: "stream the daemon's engine and dataplane events until interrupted",
		help: `One line per event: IKE and CHILD SA state changes (with SPIs and the reason of a failure),
link and address changes, and the dataplane's events (acquires, expiries, overruns).
With -json one object per line: {"time", "source": "engine"|"dataplane", "kind", and for the
engine "name", "state", "reason", "spis", "detail", for the dataplane "text" and "event"}.
A subscriber that falls behind is disconnected with an error (exit status 1).`})
}

// wireEvent is control.StreamEvent as read back (the dataplane event
// stays raw JSON: its Go type does not travel).
type wireEvent struct {
	Time      time.Time       `json:"time"`
	Source    string          `json:"source"`
	Engine    *ike.Event      `json:"engine"`
	Kind      string          `json:"kind"`
	Text      string          `json:"text"`
	Dataplane json.RawMessage `json:"dataplane"`
}

// eventView is an event as `keyplane events -json` prints it.
type eventView struct {
	Time   time.Time `json:"time"`
	Source string    `json:"source"`
	Kind   string    `json:"kind"`
	Name   string    `json:"name,omitempty"`
	State  string    `json:"state,omitempty"`
	Reason string    `json:"reason,omitempty"`
	SPIs   string    `json:"spis,omitempty"`
	Detail string    `json:"detail,omitempty"`
	// The SA's unique IDs (engine events about an SA).
	IKEID   uint32 `json:"ike_id,omitempty"`
	ChildID uint32 `json:"child_id,omitempty"`
	Text    string `json:"text,omitempty"`
	Event   any    `json:"event,omitempty"`
}

func runEvents(ctx context.Context, e *env, args []string) error {
	fs := newFlags(e, "events")
	cf := addCtlFlags(e, fs)
	if err := e.parse(fs, args); err != nil {
		return err
	}
	if fs.NArg() != 0 {
		return usageError{fmt.Sprintf("no arguments, got %q", fs.Args())}
	}
	enc := json.NewEncoder(e.stdout)
	return cf.client().Events(ctx, func(raw json.RawMessage) error {
		var r struct {
			Event *wireEvent `json:"event"`
		}
		if err := json.Unmarshal(raw, &r); err != nil || r.Event == nil {
			return err
		}
		ev := *r.Event
		if cf.json {
			v := eventView{Time: ev.Time, Source: ev.Source, Kind: ev.Kind, Text: ev.Text}
			if x := ev.Engine; x != nil {
				v.Kind, v.Name, v.State, v.Reason, v.SPIs, v.Detail = x.Kind.String(), x.Name, x.State, x.Reason, spisText(x.SPIs.String()), x.Detail
				v.IKEID, v.ChildID = x.IKEID, x.ChildID
			}
			if len(ev.Dataplane) > 0 && string(ev.Dataplane) != "null" {
				v.Event = rawIDs(ev.Dataplane)
			}
			return enc.Encode(v)
		}
		if ev.Engine != nil {
			_, err := fmt.Fprintln(e.stdout, engineLine(ev))
			return err
		}
		_, err := fmt.Fprintf(e.stdout, "%s dataplane %-13s %s\n", ev.Time.Format(time.TimeOnly), ev.Kind, ev.Text)
		return err
	})
}
