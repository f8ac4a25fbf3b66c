package main

import (
	"context"
	"fmt"

	"github.com/keyplane/keyplane/ike/control"
)

func init() {
	register(&command{name: "reload", summary: "make the daemon re-read its configuration file", run: runReload})
}

func runReload(ctx context.Context, e *env, args []string) error {
	fs := newFlags(e, "reload")
	cf := addCtlFlags(fs)
	if err := fs.Parse(args); err != nil {
		return err
	}
	r, err := cf.client().Do(ctx, control.Request{Cmd: "reload"})
	if cf.json {
		out := map[string]any{"ok": err == nil}
		if err != nil {
			out["error"] = err.Error()
		}
		if jerr := writeJSON(e.stdout, out); jerr != nil {
			return jerr
		}
		return err
	}
	if err != nil {
		return err
	}
	fmt.Fprintln(e.stdout, r.Text)
	return nil
}
