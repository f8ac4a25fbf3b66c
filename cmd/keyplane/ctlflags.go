package main

import (
	"flag"
	"os"

	"github.com/keyplane/keyplane/ike/config"
	"github.com/keyplane/keyplane/ike/control"
)

// ctlFlags are the flags of the commands that talk to a running daemon.
type ctlFlags struct {
	socket string
	json   bool
}

// defaultSocket is the control socket without -s: $KEYPLANE_CONTROL, or
// the daemon's default.
func defaultSocket() string {
	if s := os.Getenv("KEYPLANE_CONTROL"); s != "" {
		return s
	}
	return config.DefaultControl
}

func addCtlFlags(e *env, fs *flag.FlagSet) *ctlFlags {
	c := &ctlFlags{}
	def := e.socket // the global -s
	if def == "" {
		def = defaultSocket()
	}
	fs.StringVar(&c.socket, "s", def, "the daemon's control socket (also a global flag; env KEYPLANE_CONTROL)")
	fs.BoolVar(&c.json, "json", false, "print JSON (docs/cli.md)")
	return c
}

func (c *ctlFlags) client() *control.Client { return &control.Client{Path: c.socket} }

// listFlags are ctlFlags plus --stream, for the commands that list.
type listFlags struct {
	*ctlFlags
	stream bool
}

func addListFlags(e *env, fs *flag.FlagSet) *listFlags {
	l := &listFlags{ctlFlags: addCtlFlags(e, fs)}
	fs.BoolVar(&l.stream, "stream", false, "with -json: one JSON object per line instead of an array")
	return l
}
