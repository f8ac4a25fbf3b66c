package main

import (
	"flag"
	"fmt"
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

// report prints the outcome of a control command that returns no data:
// with -json {"ok": ..., "error": ...} plus fields, else the daemon's text.
// It returns err, the command's own error.
func (c *ctlFlags) report(e *env, r *control.Response, err error, fields map[string]any) error {
	if c.json {
		out := map[string]any{"ok": err == nil}
		for k, v := range fields {
			out[k] = v
		}
		if err != nil {
			out["error"] = err.Error()
		}
		if jerr := writeJSON(e.stdout, out); jerr != nil {
			return jerr
		}
		return err
	}
	if err != nil {
		return err
	}
	fmt.Fprintln(e.stdout, r.Text)
	return nil
}
