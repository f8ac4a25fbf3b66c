package main

import (
	"context"
	"errors"
	"fmt"
	"os"
	"path/filepath"

	"github.com/keyplane/keyplane/ike/config"
)

func init() {
	register(&command{name: "config", summary: "check a configuration file, or import a swanctl.conf", subs: []*command{{
		name: "check", usage: "[flags] FILE", run: runConfigCheck,
		summary: "check a configuration file as the daemon would, reporting every error",
		help: `Reads FILE (and its pre-shared key files) as 'keyplane daemon -c FILE' and a reload do, and
reports every error in one pass (at most 100), one per line with the file, line, connection,
child and setting, then the warnings. Exit status 0 when the file is valid (warnings or not),
1 when it has errors.
With -json one object on stdout: {"file", "valid", "connections", "children", "errors": [...],
"warnings": [...]}, each error {"line", "connection", "child", "setting", "message", "text"};
an invalid file also gets the usual error object on stderr.`,
	}, {
		name: "import", usage: "[flags] SWANCTL.CONF", run: runConfigImport,
		summary: "convert a swanctl.conf to keyplane's format, listing what cannot be converted",
		help: `Writes the keyplane configuration to stdout (or -o FILE): the connections and children with
the settings whose meaning is the same, everything else left as '# not converted' comments.
Then, on stderr, what was not converted and why, the pre-shared key files to write (keys are
never copied: each connection gets psk_file = NAME.psk) and what 'keyplane config check' will
still refuse. Exit status 0 when the file could be read, even with settings left out.
With -json one object on stdout: {"config", "connections", "children", "skipped": [{"line",
"setting", "why"}], "todo": [...], "errors": [...]}.`,
	}}})
}

// configError is config.Error in JSON.
type configError struct {
	Line    int    `json:"line,omitempty"`
	Conn    string `json:"connection,omitempty"`
	Child   string `json:"child,omitempty"`
	Setting string `json:"setting,omitempty"`
	Message string `json:"message"`
	Text    string `json:"text"`
}

func configErrors(es []*config.Error) []configError {
	out := []configError{}
	for _, e := range es {
		out = append(out, configError{Line: e.Line, Conn: e.Conn, Child: e.Child, Setting: e.Field, Message: e.Msg, Text: e.Error()})
	}
	return out
}

func runConfigCheck(ctx context.Context, e *env, args []string) error {
	fs := newFlags(e, "config check")
	asJSON := fs.Bool("json", false, "print JSON (docs/cli.md)")
	if err := e.parse(fs, args); err != nil {
		return err
	}
	if fs.NArg() != 1 {
		return usageError{"want one FILE"}
	}
	file := fs.Arg(0)
	cfg, err := config.Load(file)
	var es config.Errors
	if err != nil && !errors.As(err, &es) {
		return err // unreadable: no line to name
	}
	res := struct {
		File        string        `json:"file"`
		Valid       bool          `json:"valid"`
		Connections int           `json:"connections"`
		Children    int           `json:"children"`
		Errors      []configError `json:"errors"`
		Warnings    []configError `json:"warnings"`
	}{File: file, Valid: err == nil, Errors: configErrors(es), Warnings: []configError{}}
	if cfg != nil {
		defer cfg.Wipe()
		res.Connections = len(cfg.Connections)
		for _, c := range cfg.Connections {
			res.Children += len(c.Children)
		}
		res.Warnings = configErrors(cfg.Warnings)
	}
	if *asJSON {
		if werr := writeJSON(e.stdout, res); werr != nil {
			return werr
		}
	} else {
		for _, x := range res.Errors {
			fmt.Fprintln(e.stdout, x.Text)
		}
		for _, x := range res.Warnings {
			fmt.Fprintln(e.stdout, "warning: "+x.Text)
		}
		if res.Valid {
			fmt.Fprintf(e.stdout, "%s: valid: %d connections, %d children, %d warnings\n", file, res.Connections, res.Children, len(res.Warnings))
		}
	}
	if !res.Valid {
		return fmt.Errorf("%s: %d errors", file, len(res.Errors))
	}
	return nil
}

func runConfigImport(ctx context.Context, e *env, args []string) error {
	fs := newFlags(e, "config import")
	asJSON := fs.Bool("json", false, "print JSON (docs/cli.md)")
	out := fs.String("o", "", "write the configuration to this file (mode 0644; it holds no keys) instead of stdout")
	if err := e.parse(fs, args); err != nil {
		return err
	}
	if fs.NArg() != 1 {
		return usageError{"want one SWANCTL.CONF"}
	}
	src, err := os.ReadFile(fs.Arg(0))
	if err != nil {
		return err
	}
	im, err := config.ImportSwanctl(filepath.Base(fs.Arg(0)), src)
	if err != nil {
		return err
	}
	if *out != "" {
		if err := os.WriteFile(*out, []byte(im.Text), 0o644); err != nil {
			return err
		}
	}
	if *asJSON {
		skipped := im.Skipped
		if skipped == nil {
			skipped = []config.Skipped{}
		}
		todo := im.Todo
		if todo == nil {
			todo = []string{}
		}
		return writeJSON(e.stdout, map[string]any{"config": im.Text, "connections": im.Connections, "children": im.Children,
			"skipped": skipped, "todo": todo, "errors": configErrors(im.Errors)})
	}
	if *out == "" {
		fmt.Fprint(e.stdout, im.Text)
	}
	w := e.stderr
	fmt.Fprintf(w, "converted %d connections, %d children; %d settings not converted\n", im.Connections, im.Children, len(im.Skipped))
	for _, s := range im.Skipped {
		fmt.Fprintf(w, "  line %d: %s: %s\n", s.Line, s.Setting, s.Why)
	}
	if len(im.Todo) > 0 {
		fmt.Fprintln(w, "to do:")
		for _, t := range im.Todo {
			fmt.Fprintln(w, "  "+t)
		}
	}
	if len(im.Errors) > 0 {
		fmt.Fprintln(w, "'keyplane config check' will still refuse:")
		for _, x := range im.Errors {
			fmt.Fprintln(w, "  "+x.Error())
		}
	}
	return nil
}
