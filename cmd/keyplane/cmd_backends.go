package main

import (
	"context"
	"fmt"

	"github.com/keyplane/keyplane/kernelops"
)

func init() {
	register(&command{name: "backends", summary: "list the dataplane backends this binary carries", run: runBackends})
}

func runBackends(ctx context.Context, e *env, args []string) error {
	fs := newFlags(e, "backends")
	asJSON := fs.Bool("json", false, "print JSON: an array of names")
	if err := e.parse(fs, args); err != nil {
		return err
	}
	names := kernelops.Backends()
	if *asJSON {
		if names == nil {
			names = []string{}
		}
		return writeJSON(e.stdout, names)
	}
	for _, n := range names {
		def := ""
		if n == defaultBackend {
			def = "  (default)"
		}
		fmt.Fprintf(e.stdout, "%s%s\n", n, def)
	}
	return nil
}
