package main

import (
	"context"

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
	return cf.report(e, r, err, nil)
}
