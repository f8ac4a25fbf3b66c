// Command keyplane is the IKE daemon, its control client and the
// conformance runner in one binary: `keyplane [-s SOCKET] <command>
// [flags] [args]`. Each command lives in its own file and registers
// itself in init(). docs/cli.md describes every command and the JSON
// convention of their output.
package main

import (
	"context"
	"errors"
	"flag"
	"fmt"
	"io"
	"os"
	"os/signal"
	"slices"
	"strings"
	"syscall"
)

// command is one command, or a group of subcommands (ike list).
type command struct {
	name    string
	summary string // one line, for the command list
	usage   string // the arguments after the command's name, e.g. "[flags] NAME"
	help    string // what it does, in more words (optional)
	run     func(ctx context.Context, e *env, args []string) error
	subs    []*command // a group: run is nil
}

// env is what every command writes to, and what run learned about the
// invocation.
type env struct {
	stdout, stderr io.Writer
	// socket is the global -s, "" when not given.
	socket string
	// json: -json was given; errors are then JSON too.
	json bool
	// cmd and path are the command being run ("ike list").
	cmd  *command
	path string
}

var commands = map[string]*command{}

func register(c *command) {
	if _, dup := commands[c.name]; dup {
		panic("duplicate command " + c.name)
	}
	commands[c.name] = c
}

// usageError makes main print the error and a pointer to the help, and
// exit 2.
type usageError struct{ msg string }

func (e usageError) Error() string { return e.msg }

func main() { os.Exit(runMain(os.Args[1:])) }

// runMain is the process: SIGINT and SIGTERM cancel the command's context,
// so a daemon shuts down cleanly.
func runMain(args []string) int {
	ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt, syscall.SIGTERM)
	defer stop()
	return run(ctx, &env{stdout: os.Stdout, stderr: os.Stderr}, args)
}

// Exit statuses.
const (
	exitOK      = 0
	exitFailure = 1 // the command failed
	exitUsage   = 2 // the command line is wrong
)

func run(ctx context.Context, e *env, args []string) int {
	// Global flags, before the command.
	for len(args) > 0 && strings.HasPrefix(args[0], "-") {
		a := args[0]
		switch {
		case a == "-h" || a == "-help" || a == "--help":
			usage(e.stdout)
			return exitOK
		case a == "-s" || a == "--s":
			if len(args) < 2 {
				fmt.Fprintln(e.stderr, "keyplane: -s needs a socket path")
				return exitUsage
			}
			e.socket, args = args[1], args[2:]
			continue
		case strings.HasPrefix(a, "-s=") || strings.HasPrefix(a, "--s="):
			e.socket, args = a[strings.IndexByte(a, '=')+1:], args[1:]
			continue
		}
		fmt.Fprintf(e.stderr, "keyplane: unknown global flag %s (global flags: -s SOCKET; command flags go after the command)\n\n", a)
		usage(e.stderr)
		return exitUsage
	}
	if len(args) == 0 {
		usage(e.stderr)
		return exitUsage
	}
	if args[0] == "help" {
		return helpCommand(e, args[1:])
	}
	c, ok := commands[args[0]]
	if !ok {
		fmt.Fprintf(e.stderr, "keyplane: unknown command %q\n\n", args[0])
		usage(e.stderr)
		return exitUsage
	}
	e.json = wantsJSON(args[1:])
	err := dispatch(ctx, e, c, c.name, args[1:])
	return e.exit(err)
}

// dispatch runs c, or the subcommand of a group that args name.
func dispatch(ctx context.Context, e *env, c *command, path string, args []string) error {
	e.cmd, e.path = c, path
	if c.subs == nil {
		return c.run(ctx, e, args)
	}
	if len(args) == 0 {
		return usageError{fmt.Sprintf("want a subcommand: %s", subNames(c, path))}
	}
	if isHelp(args[0]) || args[0] == "help" {
		printHelp(e.stdout, c, path, nil)
		return flag.ErrHelp
	}
	for _, s := range c.subs {
		if s.name == args[0] {
			return dispatch(ctx, e, s, path+" "+s.name, args[1:])
		}
	}
	return usageError{fmt.Sprintf("unknown subcommand %q: want %s", args[0], subNames(c, path))}
}

func subNames(c *command, path string) string {
	var out []string
	for _, s := range c.subs {
		out = append(out, "'keyplane "+path+" "+s.name+"'")
	}
	return strings.Join(out, ", ")
}

// exit reports err as the convention says (docs/cli.md) and returns the
// exit status.
func (e *env) exit(err error) int {
	var ue usageError
	switch {
	case err == nil, errors.Is(err, flag.ErrHelp):
		return exitOK
	case errors.As(err, &ue):
		if e.json {
			e.jsonError(err)
		} else {
			fmt.Fprintf(e.stderr, "keyplane %s: %s\nRun 'keyplane %s -h' for help.\n", e.path, ue.msg, e.path)
		}
		return exitUsage
	}
	if e.json {
		e.jsonError(err)
	} else {
		fmt.Fprintf(e.stderr, "keyplane %s: %v\n", e.path, err)
	}
	return exitFailure
}

func helpCommand(e *env, args []string) int {
	if len(args) == 0 {
		usage(e.stdout)
		return exitOK
	}
	c, ok := commands[args[0]]
	path := args[0]
	for _, a := range args[1:] {
		if !ok || c.subs == nil {
			break
		}
		ok = false
		for _, s := range c.subs {
			if s.name == a {
				c, ok, path = s, true, path+" "+a
			}
		}
	}
	if !ok {
		fmt.Fprintf(e.stderr, "keyplane help: no command %q\n", strings.Join(args, " "))
		return exitUsage
	}
	if c.subs != nil {
		printHelp(e.stdout, c, path, nil)
		return exitOK
	}
	// A leaf's flags exist only once it builds its FlagSet: run it with
	// -h, which prints the help and returns before doing anything.
	var discard strings.Builder
	_ = dispatch(context.Background(), &env{stdout: e.stdout, stderr: &discard}, c, path, []string{"-h"})
	return exitOK
}

func usage(w io.Writer) {
	fmt.Fprintf(w, "usage: keyplane [-s SOCKET] <command> [flags] [arguments]\n\ncommands:\n")
	names := make([]string, 0, len(commands))
	for n := range commands {
		names = append(names, n)
	}
	slices.Sort(names)
	for _, n := range names {
		fmt.Fprintf(w, "  %-14s %s\n", n, commands[n].summary)
	}
	fmt.Fprintf(w, "\nFlags may come before or after the arguments. -s SOCKET (or $KEYPLANE_CONTROL) is the\n"+
		"daemon's control socket, default %s. -json prints JSON (docs/cli.md).\n"+
		"Run 'keyplane <command> -h' (or 'keyplane help <command>') for a command's help.\n", defaultSocket())
}

// printHelp writes a command's help: usage line, description, and its
// flags (fs) or subcommands.
func printHelp(w io.Writer, c *command, path string, fs *flag.FlagSet) {
	if c.subs != nil {
		fmt.Fprintf(w, "usage: keyplane %s <subcommand> [flags]\n\n%s\n", path, c.summary)
		if c.help != "" {
			fmt.Fprintf(w, "\n%s\n", strings.TrimSpace(c.help))
		}
		fmt.Fprintf(w, "\nsubcommands:\n")
		for _, s := range c.subs {
			fmt.Fprintf(w, "  %-10s %s\n", s.name, s.summary)
		}
		fmt.Fprintf(w, "\nRun 'keyplane %s <subcommand> -h' for its flags.\n", path)
		return
	}
	u := c.usage
	if u == "" {
		u = "[flags]"
	}
	fmt.Fprintf(w, "usage: keyplane %s %s\n\n%s\n", path, u, c.summary)
	if c.help != "" {
		fmt.Fprintf(w, "\n%s\n", strings.TrimSpace(c.help))
	}
	if fs != nil {
		n := 0
		fs.VisitAll(func(*flag.Flag) { n++ })
		if n > 0 {
			fmt.Fprintf(w, "\nflags:\n")
			out := fs.Output()
			fs.SetOutput(w)
			fs.PrintDefaults()
			fs.SetOutput(out)
		}
	}
}

// newFlags returns a FlagSet that reports errors instead of exiting.
func newFlags(e *env, name string) *flag.FlagSet {
	fs := flag.NewFlagSet("keyplane "+name, flag.ContinueOnError)
	fs.SetOutput(io.Discard) // errors are reported by exit, help by parse
	return fs
}

// isHelp is a help flag (a bare "help" may be a connection's name).
func isHelp(a string) bool { return a == "-h" || a == "-help" || a == "--help" }

// parse parses args with flags before, between or after the positional
// arguments (which fs.Args() then returns, in order); "--" ends the
// flags. -h prints the command's help to stdout and returns
// flag.ErrHelp.
func (e *env) parse(fs *flag.FlagSet, args []string) error {
	var flags, pos []string
	for i := 0; i < len(args); i++ {
		a := args[i]
		if a == "--" {
			pos = append(pos, args[i+1:]...)
			break
		}
		if isHelp(a) {
			printHelp(e.stdout, e.cmd, e.path, fs)
			return flag.ErrHelp
		}
		if len(a) < 2 || a[0] != '-' {
			pos = append(pos, a)
			continue
		}
		flags = append(flags, a)
		name := strings.TrimLeft(a, "-")
		if strings.Contains(name, "=") {
			continue
		}
		// A flag that takes a value takes the next argument.
		if f := fs.Lookup(name); f != nil && !isBool(f) && i+1 < len(args) {
			i++
			flags = append(flags, args[i])
		}
	}
	if err := fs.Parse(append(append(flags, "--"), pos...)); err != nil {
		return usageError{err.Error()}
	}
	return nil
}

func isBool(f *flag.Flag) bool {
	b, ok := f.Value.(interface{ IsBoolFlag() bool })
	return ok && b.IsBoolFlag()
}

// wantsJSON reports whether args ask for JSON output, before parsing:
// even a usage error is then reported as JSON.
func wantsJSON(args []string) bool {
	for _, a := range args {
		switch a {
		case "--":
			return false
		case "-json", "--json", "-json=true", "--json=true":
			return true
		}
	}
	return false
}

// paramFlag collects repeated -param key=value flags.
type paramFlag map[string]string

func (p paramFlag) String() string {
	var parts []string
	for k, v := range p {
		parts = append(parts, k+"="+v)
	}
	slices.Sort(parts)
	return strings.Join(parts, ",")
}

func (p paramFlag) Set(s string) error {
	k, v, ok := strings.Cut(s, "=")
	if !ok || k == "" {
		return fmt.Errorf("want key=value, got %q", s)
	}
	p[k] = v
	return nil
}
