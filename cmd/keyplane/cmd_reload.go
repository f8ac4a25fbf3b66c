package main

import (
	"context"
	"fmt"
	"io"
	"strings"

	"github.com/keyplane/keyplane/ike/config"
	"github.com/keyplane/keyplane/ike/control"
)

func init() {
	register(&command{name: "reload", run: runReload,
		summary: "make the daemon re-read its configuration file, and say what changed",
		help: `All or nothing: a file with an error, a change the engine cannot apply (an IKE port it
cannot bind) or a backend change (backend.name, backend.params: they need a restart) is
refused with exit status 1, and the running configuration stays as it was.
An applied reload says what it added, removed and changed (connections and children), which
start_action = start children it started, the settings that need a restart (kept as they
are), the file's warnings, and each IKE SA it closed with why. Removed connections are torn
down, new trap children trapped; an IKE SA whose authentication settings changed (pre-shared
key, local.id, a remote.id its peer no longer matches) is closed, its start children
initiated again.
With -json the same as one object: {"added", "removed", "changed": {"connections",
"children"}, "settings", "connections", "started", "warnings", "closed": [{"name", "spis",
"remote", "state", "reason"}], "log_level", "log_level_from"}.`})
}

func runReload(ctx context.Context, e *env, args []string) error {
	fs := newFlags(e, "reload")
	cf := addCtlFlags(e, fs)
	if err := e.parse(fs, args); err != nil {
		return err
	}
	if fs.NArg() != 0 {
		return usageError{fmt.Sprintf("no arguments, got %q", fs.Args())}
	}
	r, err := cf.client().Do(ctx, control.Request{Cmd: "reload"})
	if err != nil {
		return err
	}
	if r.Reload == nil {
		return fmt.Errorf("the daemon's reply has no report: %s", r.Text)
	}
	if cf.json {
		return writeJSON(e.stdout, r.Reload)
	}
	printReload(e.stdout, r.Reload)
	return nil
}

func printReload(w io.Writer, r *control.ReloadReport) {
	fmt.Fprintf(w, "configuration reloaded: %d connections; log level %s (from %s)\n", r.Connections, r.LogLevel, r.LogLevelFrom)
	names := func(n config.Names) string {
		var parts []string
		if len(n.Connections) > 0 {
			parts = append(parts, "connections "+strings.Join(n.Connections, ", "))
		}
		if len(n.Children) > 0 {
			parts = append(parts, "children "+strings.Join(n.Children, ", "))
		}
		if len(parts) == 0 {
			return "-"
		}
		return strings.Join(parts, "; ")
	}
	fmt.Fprintf(w, "added:    %s\nremoved:  %s\nchanged:  %s\n", names(r.Added), names(r.Removed), names(r.Changed))
	if len(r.Settings) > 0 {
		fmt.Fprintf(w, "settings: %s\n", strings.Join(r.Settings, ", "))
	}
	if len(r.Started) > 0 {
		fmt.Fprintf(w, "started:  %s\n", strings.Join(r.Started, ", "))
	}
	if len(r.Closed) == 0 {
		fmt.Fprintf(w, "closed:   -\n")
	}
	for _, c := range r.Closed {
		fmt.Fprintf(w, "closed:   %s\n", c)
	}
	for _, x := range r.Warnings {
		fmt.Fprintf(w, "warning:  %s\n", x)
	}
}
