package main

import (
	"context"
	"encoding/json"
	"fmt"
	"time"

	"github.com/keyplane/keyplane/ike"
)

func init() {
	register(&command{name: "events", summary: "stream the daemon's engine and dataplane events until interrupted", run: runEvents})
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

func runEvents(ctx context.Context, e *env, args []string) error {
	fs := newFlags(e, "events")
	cf := addCtlFlags(fs)
	if err := fs.Parse(args); err != nil {
		return err
	}
	return cf.client().Events(ctx, func(raw json.RawMessage) error {
		var r struct {
			Event *json.RawMessage `json:"event"`
		}
		if err := json.Unmarshal(raw, &r); err != nil || r.Event == nil {
			return err
		}
		if cf.json {
			_, err := fmt.Fprintln(e.stdout, string(*r.Event))
			return err
		}
		var ev wireEvent
		if err := json.Unmarshal(*r.Event, &ev); err != nil {
			return err
		}
		ts := ev.Time.Format(time.TimeOnly)
		if ev.Engine != nil {
			x := ev.Engine
			line := fmt.Sprintf("%s %-9s %-10s %s", ts, x.Kind, x.Name, x.State)
			if x.SPIs != "" {
				line += " [" + x.SPIs + "]"
			}
			if x.Reason != "" {
				line += " reason: " + x.Reason
			}
			if x.Detail != "" {
				line += " " + x.Detail
			}
			_, err := fmt.Fprintln(e.stdout, line)
			return err
		}
		_, err := fmt.Fprintf(e.stdout, "%s dataplane %-13s %s\n", ts, ev.Kind, ev.Text)
		return err
	})
}
