package main

import (
	"context"
	"fmt"

	"github.com/keyplane/keyplane/ike/control"
)

func init() {
	register(&command{name: "initiate", summary: "bring up a child or connection and wait: 'initiate NAME'", run: runInitiate})
}

func runInitiate(ctx context.Context, e *env, args []string) error {
	return nameCommand(ctx, e, "initiate", args)
}

// nameCommand runs a control command that takes one name.
func nameCommand(ctx context.Context, e *env, cmd string, args []string) error {
	fs := newFlags(e, cmd)
	cf := addCtlFlags(fs)
	if err := fs.Parse(args); err != nil {
		return err
	}
	if fs.NArg() != 1 {
		return usageError{fmt.Sprintf("want 'keyplane %s [-s SOCKET] [-json] NAME' (a child or connection name)", cmd)}
	}
	r, err := cf.client().Do(ctx, control.Request{Cmd: cmd, Name: fs.Arg(0)})
	return cf.report(e, r, err, map[string]any{"name": fs.Arg(0)})
}
