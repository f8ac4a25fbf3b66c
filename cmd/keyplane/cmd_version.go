package main

import (
	"context"
	"encoding/json"
	"fmt"
	"io"
	"strings"
	"time"

	"github.com/keyplane/keyplane/ike/control"
	"github.com/keyplane/keyplane/internal/buildinfo"
)

func init() {
	register(&command{name: "version", run: runVersion,
		summary: "this binary's version, commit, Go version and backends (--daemon: the running daemon's)",
		help: `Prints the module version ("(devel)" for a build in a checkout, a tag for 'go install ...@vX'),
the VCS commit, the Go version and the dataplane backends compiled in. A binary built with
-buildvcs=false (the Makefile's GOFLAGS) or outside a git checkout carries no commit: it says
"unknown" and why; -ldflags "-X github.com/keyplane/keyplane/internal/buildinfo.commit=..."
sets one. --daemon asks the running daemon instead (it may be an older binary).
With -json one object.`})
}

func runVersion(ctx context.Context, e *env, args []string) error {
	fs := newFlags(e, "version")
	cf := addCtlFlags(e, fs)
	fromDaemon := fs.Bool("daemon", false, "the running daemon's version, with its pid, start time and backend")
	if err := e.parse(fs, args); err != nil {
		return err
	}
	if fs.NArg() != 0 {
		return usageError{fmt.Sprintf("no arguments, got %q", fs.Args())}
	}
	if !*fromDaemon {
		in := buildinfo.Read()
		if cf.json {
			return writeJSON(e.stdout, in)
		}
		printVersion(e.stdout, in)
		return nil
	}
	r, err := cf.client().Do(ctx, control.Request{Cmd: "version"})
	if err != nil {
		return err
	}
	var dv daemonVersion
	if err := json.Unmarshal(r.Data, &dv); err != nil {
		return fmt.Errorf("version reply: %w", err)
	}
	if cf.json {
		return writeJSON(e.stdout, dv)
	}
	printVersion(e.stdout, dv.Info)
	fmt.Fprintf(e.stdout, "daemon    pid %d, running since %s, backend %s, config %s\n", dv.PID,
		dv.Started.Format(time.RFC3339), dv.Backend, dv.Config)
	return nil
}

func printVersion(w io.Writer, in buildinfo.Info) {
	commit := in.Commit
	if in.Modified {
		commit += " (modified)"
	}
	if in.CommitTime != "" {
		commit += " " + in.CommitTime
	}
	if in.Why != "" {
		commit += " (" + in.Why + ")"
	}
	fmt.Fprintf(w, "keyplane  %s\ncommit    %s\ngo        %s\nbackends  %s\n", in.Version, commit, in.GoVersion, strings.Join(in.Backends, " "))
}
