package main

import "context"

func init() {
	register(&command{name: "terminate", summary: "delete a child or a connection's IKE SAs, telling the peer: 'terminate NAME'", run: runTerminate})
}

func runTerminate(ctx context.Context, e *env, args []string) error {
	return nameCommand(ctx, e, "terminate", args)
}
