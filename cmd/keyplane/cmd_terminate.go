package main

import (
	"context"
	"fmt"

	"github.com/keyplane/keyplane/ike/control"
)

func init() {
	register(&command{name: "terminate", usage: "[flags] NAME", run: runTerminate,
		summary: "delete a child, or a connection's IKE SAs, telling the peer",
		help: `NAME is a child (its CHILD SAs are deleted) or a connection (its IKE SAs and their children).
The command waits until the peer has answered the deletes (or the daemon gave up on it).

With -json: {"name": NAME, "result": "terminated"} on success.`})
}

func runTerminate(ctx context.Context, e *env, args []string) error {
	fs := newFlags(e, "terminate")
	cf := addCtlFlags(e, fs)
	if err := e.parse(fs, args); err != nil {
		return err
	}
	if fs.NArg() != 1 {
		return usageError{"want one NAME (a child or a connection)"}
	}
	r, err := cf.client().Do(ctx, control.Request{Cmd: "terminate", Name: fs.Arg(0)})
	if err != nil {
		return err
	}
	if cf.json {
		return writeJSON(e.stdout, map[string]string{"name": fs.Arg(0), "result": "terminated"})
	}
	fmt.Fprintln(e.stdout, r.Text)
	return nil
}
