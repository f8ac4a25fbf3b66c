package main

import (
	"context"
	"flag"

	"github.com/keyplane/keyplane/kernelops"
)

// backendFlags are the flags every command that opens a dataplane takes.
type backendFlags struct {
	name   string
	params paramFlag
	json   bool
	stream bool
}

func addBackendFlags(fs *flag.FlagSet) *backendFlags {
	b := &backendFlags{params: paramFlag{}}
	fs.StringVar(&b.name, "backend", defaultBackend, "dataplane backend (see 'keyplane backends')")
	fs.Var(b.params, "param", "backend parameter key=value (repeatable), e.g. netns=NAME for xfrm, socket=PATH for vpp")
	fs.BoolVar(&b.json, "json", false, "print JSON instead of a table (docs/cli.md)")
	for _, hook := range backendFlagHooks {
		hook(fs, b)
	}
	return b
}

// backendFlagHooks let a backend's build-tagged file add its own flags
// (e.g. --vpp-socket) that fill in backend parameters.
var backendFlagHooks []func(fs *flag.FlagSet, b *backendFlags)

// defaultBackend is the embedded default: the in-memory model, which
// needs no root and no kernel features.
const defaultBackend = "nokernel"

// processLocal are the backends whose state lives only in the process
// that opened them: opened by a command, they are a fresh, empty model,
// never the daemon's.
var processLocal = map[string]bool{"nokernel": true}

func (b *backendFlags) open(ctx context.Context) (kernelops.Backend, error) {
	opts := kernelops.Options{}
	if len(b.params) > 0 {
		opts.Params = map[string]string(b.params)
	}
	return kernelops.Open(ctx, b.name, opts)
}
