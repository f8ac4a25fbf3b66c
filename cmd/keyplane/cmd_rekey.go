package main

import (
	"context"
	"fmt"

	"github.com/keyplane/keyplane/ike/control"
)

func init() {
	register(&command{name: "rekey", usage: "[flags] NAME", run: runRekey,
		summary: "rekey a child's CHILD SAs, or a connection's IKE SAs, now",
		help: `NAME is a child (each of its installed CHILD SAs is rekeyed: CREATE_CHILD_SA with new keys
and SPIs, then the old SAs are deleted) or a connection (each of its established IKE SAs is
rekeyed; the children move to the new IKE SA unchanged), as swanctl --rekey does.
The command returns once the exchanges have started; 'keyplane child list', 'keyplane ike list'
or 'keyplane events' show the outcome. A child already being rekeyed is left alone; an IKE SA
with an exchange in flight rekeys a moment later. Fails when nothing of that name is up.

With -json: {"name": NAME, "result": "rekeying"} on success.`})
}

func runRekey(ctx context.Context, e *env, args []string) error {
	fs := newFlags(e, "rekey")
	cf := addCtlFlags(e, fs)
	if err := e.parse(fs, args); err != nil {
		return err
	}
	if fs.NArg() != 1 {
		return usageError{"want one NAME (a child or a connection)"}
	}
	r, err := cf.client().Do(ctx, control.Request{Cmd: "rekey", Name: fs.Arg(0)})
	if err != nil {
		return err
	}
	if cf.json {
		return writeJSON(e.stdout, map[string]string{"name": fs.Arg(0), "result": "rekeying"})
	}
	fmt.Fprintln(e.stdout, r.Text)
	return nil
}
