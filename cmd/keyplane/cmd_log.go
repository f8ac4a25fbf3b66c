package main

import (
	"context"
	"encoding/json"
	"fmt"

	"github.com/keyplane/keyplane/ike/control"
	"github.com/keyplane/keyplane/internal/logging"
)

func init() {
	register(&command{name: "log", usage: "[flags]", run: runLog,
		summary: "follow the daemon's log",
		help: `Prints the daemon's log lines as it writes them (its log_format, at its log levels), from now
until interrupted. The daemon never waits for this command: when it falls behind, the lines its
queue cannot hold (1,024) are dropped, and the next line says how many.

With -json: one object per line, {"line": "...", "dropped": N} ("dropped" only when lines were).`})
}

// logSource serves the daemon's log stream to the control socket.
type logSource struct{ s *logging.Stream }

func (l logSource) SubscribeLog() control.LogFollower { return l.s.Subscribe() }

func runLog(ctx context.Context, e *env, args []string) error {
	fs := newFlags(e, "log")
	cf := addCtlFlags(e, fs)
	if err := e.parse(fs, args); err != nil {
		return err
	}
	if fs.NArg() != 0 {
		return usageError{fmt.Sprintf("no arguments, got %q", fs.Args())}
	}
	enc := json.NewEncoder(e.stdout)
	return cf.client().FollowLog(ctx, func(l control.LogLine) error {
		if cf.json {
			return enc.Encode(l)
		}
		if l.Dropped > 0 {
			if _, err := fmt.Fprintf(e.stdout, "-- %d log lines dropped: this command fell behind\n", l.Dropped); err != nil {
				return err
			}
		}
		_, err := fmt.Fprintln(e.stdout, l.Line)
		return err
	})
}
