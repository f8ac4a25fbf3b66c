package main

import (
	"context"
	"fmt"
)

func init() {
	register(&command{name: "rekey", usage: "[flags] NAME | --ike-id N | --child-id N", run: runRekey,
		summary: "rekey a child's CHILD SAs, or a connection's IKE SAs, now",
		help: `NAME is a child (each of its installed CHILD SAs is rekeyed: CREATE_CHILD_SA with new keys
and SPIs, then the old SAs are deleted) or a connection (each of its established IKE SAs is
rekeyed; the children move to the new IKE SA unchanged), as swanctl --rekey does.
The command returns once the exchanges have started; 'keyplane child list', 'keyplane ike list'
or 'keyplane events' show the outcome. A child already being rekeyed is left alone; an IKE SA
with an exchange in flight rekeys a moment later. Fails when nothing of that name is up.
--ike-id N or --child-id N instead of NAME: that one established IKE SA or installed CHILD SA,
by the unique ID 'ike list' and 'child list' show (the new SA gets a new ID).

With -json: {"name": NAME, "result": "rekeying"} on success ({"ike_id": N, ...} or
{"child_id": N, ...} by ID).`})
}

func runRekey(ctx context.Context, e *env, args []string) error {
	fs := newFlags(e, "rekey")
	cf := addCtlFlags(e, fs)
	ref := addSARefFlags(fs)
	if err := e.parse(fs, args); err != nil {
		return err
	}
	req, result, err := ref.request("rekey", fs)
	if err != nil {
		return err
	}
	r, err := cf.client().Do(ctx, req)
	if err != nil {
		return err
	}
	if cf.json {
		result["result"] = "rekeying"
		return writeJSON(e.stdout, result)
	}
	fmt.Fprintln(e.stdout, r.Text)
	return nil
}
