package vmlab

import (
	"context"
	"fmt"
	"io"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"sync"
	"time"
)

// TestPackage is a Go package whose test binary runs in the guest.
type TestPackage struct {
	ImportPath string
	Dir        string
	Race       bool
	Binary     string // built test binary; empty until built
	BuildErr   error  // the package exists but its test binary did not build
	Build      time.Duration
}

// Skipped is a pattern that named no package with tests; not an error, so
// VM_PKGS can list packages that do not exist yet.
type Skipped struct {
	Pattern, Reason string
}

// ListTestPackages expands patterns with `go list` in dir. Packages with
// test files are returned; patterns that match nothing, or packages without
// tests, are returned as skipped. A package that exists but does not load
// (syntax error, bad import) is returned with BuildErr set: that is a failure.
func ListTestPackages(ctx context.Context, dir string, patterns []string) ([]*TestPackage, []Skipped, error) {
	if len(patterns) == 0 {
		return nil, nil, nil
	}
	args := append([]string{"list", "-e", "-f",
		"{{.ImportPath}}\t{{.Dir}}\t{{len .TestGoFiles}}\t{{len .XTestGoFiles}}\t{{if .Error}}{{.Error}}{{end}}"}, patterns...)
	cmd := exec.CommandContext(ctx, "go", args...)
	cmd.Dir = dir
	var stderr strings.Builder
	cmd.Stderr = &stderr
	out, err := cmd.Output()
	if err != nil {
		return nil, nil, fmt.Errorf("go list: %w\n%s", err, stderr.String())
	}
	pkgs, skipped := parseGoList(string(out))
	// `go list` reports a pattern with "..." that matches nothing only on stderr.
	for line := range strings.Lines(stderr.String()) {
		if strings.Contains(line, "matched no packages") {
			skipped = append(skipped, Skipped{Pattern: strings.TrimSpace(line), Reason: "no packages"})
		}
	}
	return pkgs, skipped, nil
}

func parseGoList(out string) ([]*TestPackage, []Skipped) {
	var pkgs []*TestPackage
	var skipped []Skipped
	seen := map[string]bool{}
	for line := range strings.Lines(out) {
		f := strings.SplitN(strings.TrimRight(line, "\n"), "\t", 5)
		if len(f) != 5 || seen[f[0]] {
			continue
		}
		seen[f[0]] = true
		path, dir, nTest, nXTest, loadErr := f[0], f[1], f[2], f[3], f[4]
		switch {
		case loadErr != "" && (dir == "" || strings.Contains(loadErr, "directory not found") ||
			strings.Contains(loadErr, "no such file or directory") || strings.Contains(loadErr, "no Go files")):
			skipped = append(skipped, Skipped{Pattern: path, Reason: "no such package yet"})
		case loadErr != "":
			pkgs = append(pkgs, &TestPackage{ImportPath: path, Dir: dir, BuildErr: fmt.Errorf("%s", loadErr)})
		case nTest == "0" && nXTest == "0":
			skipped = append(skipped, Skipped{Pattern: path, Reason: "no test files"})
		default:
			pkgs = append(pkgs, &TestPackage{ImportPath: path, Dir: dir})
		}
	}
	return pkgs, skipped
}

// binaryName turns an import path into a file name.
func binaryName(importPath string) string {
	return strings.NewReplacer("/", "_", ".", "_").Replace(importPath) + ".test"
}

// BuildTests builds each package's test binary into outDir (`go test -c`,
// with -race when p.Race). A build failure is recorded in p.BuildErr and
// the others are still built.
func BuildTests(ctx context.Context, dir, outDir string, pkgs []*TestPackage, log io.Writer) error {
	if err := os.MkdirAll(outDir, 0o755); err != nil {
		return err
	}
	for _, p := range pkgs {
		if p.BuildErr != nil {
			continue
		}
		bin, err := filepath.Abs(filepath.Join(outDir, binaryName(p.ImportPath)))
		if err != nil {
			return err
		}
		args := []string{"test", "-c", "-o", bin}
		if p.Race {
			args = append(args, "-race")
		}
		args = append(args, p.ImportPath)
		t0 := time.Now()
		cmd := exec.CommandContext(ctx, "go", args...)
		cmd.Dir = dir
		out, err := cmd.CombinedOutput()
		p.Build = time.Since(t0)
		if err != nil {
			p.BuildErr = fmt.Errorf("go %s: %w\n%s", strings.Join(args, " "), err, out)
			fmt.Fprintf(log, "vmtest: build FAILED %s\n%s", p.ImportPath, out)
			continue
		}
		p.Binary = bin
		fmt.Fprintf(log, "vmtest: built %s%s in %.1fs\n", p.ImportPath, raceTag(p.Race), p.Build.Seconds())
	}
	return nil
}

func raceTag(race bool) string {
	if race {
		return " (-race)"
	}
	return ""
}

// TestOptions configure RunTests.
type TestOptions struct {
	TestFlags   []string      // passed to every test binary, e.g. -test.v -test.run=X
	TestTimeout time.Duration // -test.timeout per binary; default 25m (ike/interop alone runs over 10m under TCG and -race)
	Timeout     time.Duration // the whole boot; default 30m
	Env         []string
	Console     io.Writer
}

// PackageResult is one test binary's outcome in the guest.
type PackageResult struct {
	*TestPackage
	Ran      bool
	ExitCode int
	Duration time.Duration
}

// TestReport is RunTests' outcome.
type TestReport struct {
	Results []*PackageResult
	Boot    *Result
	BootErr error // the guest did not finish (timeout, panic)
}

// Failed counts packages that did not pass: build failures, non-zero exits
// and binaries that never reported (the guest died before).
func (r *TestReport) Failed() int {
	n := 0
	for _, p := range r.Results {
		if p.BuildErr != nil || !p.Ran || p.ExitCode != 0 {
			n++
		}
	}
	return n
}

// testMarker lines frame each binary's run in the console.
const (
	beginMarker  = "KEYPLANE-LAB-BEGIN "
	resultMarker = "KEYPLANE-LAB-RESULT "
)

// testScript is the guest script that runs the built binaries in sequence,
// each in its package directory as `go test` would, and reports each one.
func testScript(nonce string, pkgs []*TestPackage, flags []string) string {
	var sb strings.Builder
	sb.WriteString("failed=0\n")
	for _, p := range pkgs {
		if p.Binary == "" {
			continue
		}
		fmt.Fprintf(&sb, "echo %s\n", shellQuote(beginMarker+nonce+" "+p.ImportPath))
		fmt.Fprintf(&sb, "(cd %s && exec %s %s)\n", shellQuote(p.Dir), shellQuote(p.Binary), ShellJoin(flags))
		fmt.Fprintf(&sb, "rc=$?\necho %s\"$rc\"\n", shellQuote(resultMarker+nonce+" "+p.ImportPath+" "))
		sb.WriteString("[ $rc -eq 0 ] || failed=1\n")
	}
	sb.WriteString("exit $failed\n")
	return sb.String()
}

// RunTests runs the built test binaries of pkgs in one boot with
// KEYPLANE_VM=1 and reports per-package results.
func (l *Lab) RunTests(ctx context.Context, pkgs []*TestPackage, opts TestOptions) *TestReport {
	if opts.TestTimeout == 0 {
		opts.TestTimeout = 25 * time.Minute
	}
	if opts.Timeout == 0 {
		opts.Timeout = 30 * time.Minute
	}
	rep := &TestReport{}
	byPath := map[string]*PackageResult{}
	runnable := 0
	for _, p := range pkgs {
		pr := &PackageResult{TestPackage: p, ExitCode: -1}
		rep.Results = append(rep.Results, pr)
		byPath[p.ImportPath] = pr
		if p.Binary != "" {
			runnable++
		}
	}
	if runnable == 0 {
		return rep
	}
	nonce := newNonce()
	flags := append([]string{"-test.timeout=" + opts.TestTimeout.String()}, opts.TestFlags...)
	var mu sync.Mutex
	begun := map[string]time.Duration{}
	res, err := l.Run(ctx, RunOptions{
		Script:  testScript(nonce, pkgs, flags),
		Env:     opts.Env,
		Timeout: opts.Timeout,
		Console: opts.Console,
		OnLine: func(line string, at time.Duration) {
			mu.Lock()
			defer mu.Unlock()
			if i := strings.Index(line, beginMarker+nonce+" "); i >= 0 {
				begun[strings.TrimSpace(line[i+len(beginMarker)+len(nonce)+1:])] = at
			}
			if i := strings.Index(line, resultMarker+nonce+" "); i >= 0 {
				f := strings.Fields(line[i+len(resultMarker)+len(nonce)+1:])
				if len(f) == 2 {
					if pr := byPath[f[0]]; pr != nil {
						pr.Ran = true
						fmt.Sscan(f[1], &pr.ExitCode)
						pr.Duration = at - begun[f[0]]
					}
				}
			}
		},
	})
	rep.Boot, rep.BootErr = res, err
	return rep
}

// Print writes the per-package summary and the closing count line.
func (r *TestReport) Print(w io.Writer, skipped []Skipped, kernel string) {
	fmt.Fprintf(w, "\nvmtest: results in the guest (kernel %s)\n", kernel)
	passed := 0
	for _, p := range r.Results {
		status, detail := "ok", fmt.Sprintf("%.1fs%s", p.Duration.Seconds(), raceTag(p.Race))
		switch {
		case p.BuildErr != nil:
			status, detail = "FAIL", "build failed"
		case !p.Ran:
			status, detail = "FAIL", "no result: the guest ended before it ran"
		case p.ExitCode != 0:
			status, detail = "FAIL", fmt.Sprintf("exit %d after %s", p.ExitCode, detail)
		default:
			passed++
		}
		fmt.Fprintf(w, "  %-4s  %-50s %s\n", status, p.ImportPath, detail)
	}
	for _, s := range skipped {
		fmt.Fprintf(w, "  --    %-50s %s\n", s.Pattern, s.Reason)
	}
	if b := r.Boot; b != nil {
		fmt.Fprintf(w, "vmtest: kernel boot %.1fs, modules %.1fs, root %.1fs, tests %.1fs, total %.1fs\n",
			b.Init.Seconds(), b.Modules.Seconds(), b.Root.Seconds(), b.Command.Seconds(), b.Total.Seconds())
	}
	if r.BootErr != nil {
		fmt.Fprintf(w, "vmtest: %v\n", r.BootErr)
	}
	fmt.Fprintf(w, "vmtest: %d passed, %d failed\n", passed, len(r.Results)-passed)
}
