package main

import (
	"context"
	"fmt"
)

func init() {
	register(&command{name: "terminate", usage: "[flags] NAME | --ike-id N | --child-id N", run: runTerminate,
		summary: "delete a child, or a connection's IKE SAs, telling the peer",
		help: `NAME is a child (its CHILD SAs are deleted) or a connection (its IKE SAs and their children).
--ike-id N or --child-id N instead of NAME: that one SA only, by the unique ID 'ike list' and
'child list' show (two CHILD SAs of one name, e.g. a peer's children narrowed onto one of ours,
are told apart this way; by NAME both go). A CHILD SA must be installed.
The command waits until the peer has answered the deletes (or the daemon gave up on it).

With -json: {"name": NAME, "result": "terminated"} on success ({"ike_id": N, ...} or
{"child_id": N, ...} by ID).`})
}

func runTerminate(ctx context.Context, e *env, args []string) error {
	fs := newFlags(e, "terminate")
	cf := addCtlFlags(e, fs)
	ref := addSARefFlags(fs)
	if err := e.parse(fs, args); err != nil {
		return err
	}
	req, result, err := ref.request("terminate", fs)
	if err != nil {
		return err
	}
	r, err := cf.client().Do(ctx, req)
	if err != nil {
		return err
	}
	if cf.json {
		result["result"] = "terminated"
		return writeJSON(e.stdout, result)
	}
	fmt.Fprintln(e.stdout, r.Text)
	return nil
}
