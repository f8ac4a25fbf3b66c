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

func addCtlFlags(fs *flag.FlagSet) *ctlFlags {
	c := &ctlFlags{}
	def := os.Getenv("KEYPLANE_CONTROL")
	if def == "" {
		def = config.DefaultControl
	}
	fs.StringVar(&c.socket, "s", def, "the daemon's control socket (env KEYPLANE_CONTROL)")
	fs.BoolVar(&c.json, "json", false, "print JSON")
	return c
}

func (c *ctlFlags) client() *control.Client { return &control.Client{Path: c.socket} }
