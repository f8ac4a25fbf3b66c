// Command vmlab runs commands and test binaries inside keyplane's VM lab: a
// qemu guest on Debian's kernel with the host's filesystem as its root.
//
//	vmlab deps [-host]                install the Debian packages tests need (-host: only those host tests need)
//	vmlab packages [-host]            list those packages, one a line
//	vmlab prepare                     install what is missing, fetch the kernel, build the initramfs
//	vmlab run [flags] -- CMD [ARG...] run one command in the guest; exit with its status
//	vmlab test [flags] PKG...         build PKG's test binaries on the host and run them in one boot
//	vmlab shell [-timeout D]          an interactive shell in the guest (exit or ^D ends it)
//
// Environment: KEYPLANE_LAB_CACHE (cache directory, default
// /var/cache/keyplane-lab), KEYPLANE_LAB_KERNEL (kernel package, default the
// one linux-image-amd64 depends on), KEYPLANE_LAB_ACCEL=kvm (try KVM instead
// of software emulation). See docs/lab.md.
package main

import (
	"context"
	"errors"
	"flag"
	"fmt"
	"os"
	"os/signal"
	"strings"
	"syscall"
	"time"

	"github.com/keyplane/keyplane/internal/vmlab"
)

const usage = `usage:
  vmlab deps [-host]
  vmlab packages [-host]
  vmlab prepare
  vmlab run [-timeout D] [-e KEY=VALUE]... -- CMD [ARG...]
  vmlab shell [-timeout D]
  vmlab test [-timeout D] [-race=all|none|PKG,...] [-testflags FLAGS] [-e KEY=VALUE]... PKG...
`

// envList collects -e KEY=VALUE flags.
type envList []string

func (e *envList) String() string     { return strings.Join(*e, " ") }
func (e *envList) Set(s string) error { *e = append(*e, s); return nil }

// forwardedEnv is the part of environ (the caller's environment) the
// guest gets: keyplane's settings, the Go runtime's, and the go command's
// caches and settings, so that a go command in the guest (lab-shell) uses
// the modules and builds the host has, wherever they live (.ci/fresh-check
// points them at new directories).
func forwardedEnv(environ []string) []string {
	var env []string
	for _, kv := range environ {
		k, _, _ := strings.Cut(kv, "=")
		switch k {
		case "KEYPLANE_VM": // the guest sets its own
		case "GOTRACEBACK", "GODEBUG", "GORACE", "TERM",
			"GOPATH", "GOMODCACHE", "GOCACHE", "GOFLAGS", "GOTOOLCHAIN", "GOPROXY", "GONOSUMDB", "GOPRIVATE":
			env = append(env, kv)
		default:
			if strings.HasPrefix(k, "KEYPLANE_") && !strings.HasPrefix(k, "KEYPLANE_LAB_") { // the lab's own settings stay on the host
				env = append(env, kv)
			}
		}
	}
	return env
}

func main() {
	if len(os.Args) < 2 {
		fmt.Fprint(os.Stderr, usage)
		os.Exit(2)
	}
	ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt, syscall.SIGTERM)
	defer stop()
	cmd, args := os.Args[1], os.Args[2:]
	var code int
	switch cmd {
	case "deps":
		code = deps(args)
	case "packages":
		code = packages(args)
	case "prepare":
		code = prepare()
	case "run":
		code = run(ctx, args)
	case "test":
		code = test(ctx, args)
	case "shell":
		code = shell(ctx, args)
	default:
		fmt.Fprint(os.Stderr, usage)
		code = 2
	}
	os.Exit(code)
}

// prepareLab prepares the lab, and on failure explains loudly what that
// means for `make test`.
func prepareLab() (*vmlab.Lab, bool) {
	t0 := time.Now()
	lab, err := vmlab.Prepare(vmlab.FromEnv())
	if err != nil {
		fmt.Fprintf(os.Stderr, "vmlab: %v\n", err)
		if errors.Is(err, vmlab.ErrCannotRun) {
			fmt.Fprint(os.Stderr, cannotRunBanner)
		}
		return nil, false
	}
	fmt.Fprintf(os.Stderr, "vmlab: lab ready in %.1fs (kernel %s)\n", time.Since(t0).Seconds(), lab.KernelVersion())
	return lab, true
}

const cannotRunBanner = `
########################################################################
#  THE VM LAB CANNOT RUN ON THIS MACHINE.                              #
#  The kernel backends (XFRM with real ESP, PF_KEY on af_key) and the  #
#  IKE interop tests were NOT run. They run only in the lab's guest.   #
#  Fix the cause above (the lab needs root to install qemu and the     #
#  kernel), or run 'make test KEYPLANE_SKIP_VM=1' to knowingly skip    #
#  them.                                                               #
########################################################################
`

// deps installs the Debian packages tests need. Not as root, missing
// packages are reported but do not fail: the tests that need them skip
// when not root, and say so.
func deps(args []string) int {
	fs := flag.NewFlagSet("deps", flag.ExitOnError)
	host := fs.Bool("host", false, "only the packages host tests need (KEYPLANE_SKIP_VM=1)")
	fs.Parse(args)
	pkgs := vmlab.Packages(*host)
	if missing := vmlab.MissingPackages(pkgs); len(missing) > 0 && os.Geteuid() != 0 {
		fmt.Fprintf(os.Stderr, "vmlab: not root, so not installing %s; tests that need them skip\n", strings.Join(missing, " "))
		return 0
	}
	if err := vmlab.InstallPackages(pkgs, func(f string, a ...any) { fmt.Fprintf(os.Stderr, f+"\n", a...) }); err != nil {
		fmt.Fprintf(os.Stderr, "vmlab: %v\n", err)
		return 1
	}
	return 0
}

// packages lists the packages deps installs (for .ci/fresh-check).
func packages(args []string) int {
	fs := flag.NewFlagSet("packages", flag.ExitOnError)
	host := fs.Bool("host", false, "only the packages host tests need")
	fs.Parse(args)
	for _, p := range vmlab.Packages(*host) {
		fmt.Println(p)
	}
	return 0
}

func prepare() int {
	if _, ok := prepareLab(); !ok {
		return 1
	}
	return 0
}

func run(ctx context.Context, args []string) int {
	fs := flag.NewFlagSet("run", flag.ExitOnError)
	timeout := fs.Duration("timeout", 10*time.Minute, "kill the guest after this long")
	var env envList
	fs.Var(&env, "e", "KEY=VALUE to export in the guest (repeatable)")
	fs.Parse(args)
	if fs.NArg() == 0 {
		fmt.Fprint(os.Stderr, usage)
		return 2
	}
	lab, ok := prepareLab()
	if !ok {
		return 1
	}
	res, err := lab.Run(ctx, vmlab.RunOptions{
		Script:  vmlab.ShellJoin(fs.Args()),
		Env:     append(forwardedEnv(os.Environ()), env...),
		Timeout: *timeout,
	})
	if err != nil {
		fmt.Fprintln(os.Stderr, err)
		return 1
	}
	fmt.Fprintf(os.Stderr, "vmlab: exit %d; kernel boot %.1fs, modules %.1fs, root %.1fs, command %.1fs, total %.1fs\n",
		res.ExitCode, res.Init.Seconds(), res.Modules.Seconds(), res.Root.Seconds(), res.Command.Seconds(), res.Total.Seconds())
	return res.ExitCode
}

// shell boots the guest with an interactive bash on its serial console.
func shell(ctx context.Context, args []string) int {
	fs := flag.NewFlagSet("shell", flag.ExitOnError)
	timeout := fs.Duration("timeout", 2*time.Hour, "kill the guest after this long")
	fs.Parse(args)
	lab, ok := prepareLab()
	if !ok {
		return 1
	}
	fmt.Fprintln(os.Stderr, "vmlab: shell in the guest; 'exit' or ^D powers it off")
	res, err := lab.Run(ctx, vmlab.RunOptions{
		// setsid -c makes the serial line the shell's controlling terminal,
		// so ^C reaches the foreground command in the guest.
		Script:      "exec setsid -c -w bash -i </dev/ttyS0 >/dev/ttyS0 2>&1",
		Env:         forwardedEnv(os.Environ()),
		Timeout:     *timeout,
		Interactive: true,
	})
	if err != nil {
		fmt.Fprintln(os.Stderr, err)
		return 1
	}
	return res.ExitCode
}

// matches reports whether pkg is named by one of list's entries, given as
// import paths or ./relative directories.
func matches(pkg *vmlab.TestPackage, list []string) bool {
	for _, e := range list {
		e = strings.TrimSuffix(strings.TrimPrefix(e, "./"), "/")
		if e != "" && (pkg.ImportPath == e || strings.HasSuffix(pkg.ImportPath, "/"+e)) {
			return true
		}
	}
	return false
}

func test(ctx context.Context, args []string) int {
	fs := flag.NewFlagSet("test", flag.ExitOnError)
	timeout := fs.Duration("timeout", 30*time.Minute, "kill the guest after this long")
	testTimeout := fs.Duration("test.timeout", 25*time.Minute, "-test.timeout for each test binary")
	race := fs.Bool("race", true, "build test binaries with -race")
	norace := fs.String("norace", "", "packages (space or comma separated) built without -race")
	testflags := fs.String("testflags", "", "flags for every test binary, e.g. '-test.v -test.run=TestX'")
	outDir := fs.String("o", "", "keep the test binaries in this directory (default: a fresh directory under out/vmtest, removed afterwards)")
	var env envList
	fs.Var(&env, "e", "KEY=VALUE to export in the guest (repeatable)")
	fs.Parse(args)

	wd, err := os.Getwd()
	if err != nil {
		fmt.Fprintln(os.Stderr, err)
		return 1
	}
	pkgs, skipped, err := vmlab.ListTestPackages(ctx, wd, fs.Args())
	if err != nil {
		fmt.Fprintf(os.Stderr, "vmtest: %v\n", err)
		return 1
	}
	noRace := strings.FieldsFunc(*norace, func(r rune) bool { return r == ',' || r == ' ' })
	for _, p := range pkgs {
		p.Race = *race && !matches(p, noRace)
	}
	lab, ok := prepareLab()
	if !ok {
		return 1
	}
	// Each run builds into its own directory: two runs in one checkout must
	// not overwrite the binaries the other's guest is running.
	dir := *outDir
	if dir == "" {
		if err := os.MkdirAll("out/vmtest", 0o755); err != nil {
			fmt.Fprintf(os.Stderr, "vmtest: %v\n", err)
			return 1
		}
		if dir, err = os.MkdirTemp("out/vmtest", "run-"); err != nil {
			fmt.Fprintf(os.Stderr, "vmtest: %v\n", err)
			return 1
		}
		defer os.RemoveAll(dir)
	}
	if err := vmlab.BuildTests(ctx, wd, dir, pkgs, os.Stderr); err != nil {
		fmt.Fprintf(os.Stderr, "vmtest: %v\n", err)
		return 1
	}
	rep := lab.RunTests(ctx, pkgs, vmlab.TestOptions{
		TestFlags:   strings.Fields(*testflags),
		TestTimeout: *testTimeout,
		Timeout:     *timeout,
		Env:         append(forwardedEnv(os.Environ()), env...),
	})
	rep.Print(os.Stdout, skipped, lab.KernelVersion())
	if rep.Failed() > 0 || rep.BootErr != nil {
		return 1
	}
	return 0
}
