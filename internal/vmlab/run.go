package vmlab

import (
	"bufio"
	"context"
	"crypto/rand"
	"encoding/hex"
	"errors"
	"fmt"
	"io"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"sync"
	"syscall"
	"time"
)

// RunOptions describe one boot.
type RunOptions struct {
	// Script is a shell script (run by the host's /bin/sh in the guest) whose
	// exit status is the run's. It starts in Dir with Env exported.
	Script string
	// Dir is the working directory in the guest; default the caller's.
	Dir string
	// Env is KEY=VALUE pairs exported in the guest, besides KEYPLANE_VM=1.
	Env []string
	// Timeout kills the guest; default 10 minutes.
	Timeout time.Duration
	// Console receives the guest's console, line by line; default os.Stdout.
	Console io.Writer
	// OnLine, when set, sees every console line (without the line ending)
	// at the time it arrives.
	OnLine func(line string, at time.Duration)
	// TailLines is how much console is kept for the failure report; default 40.
	TailLines int
	// Interactive connects the caller's stdin to the guest's console and
	// the script's stdin (otherwise /dev/null), for `vmlab shell`.
	Interactive bool
}

// Result is what a boot came to.
type Result struct {
	ExitCode int           // the script's exit status, from the exit marker
	Init     time.Duration // qemu start to the initramfs' first line (kernel boot)
	Modules  time.Duration // loading the modules
	Root     time.Duration // 9p, overlay and switch_root, up to the command
	Command  time.Duration // the command itself
	Total    time.Duration // qemu start to qemu exit
	Tail     []string      // last console lines
}

// GuestError is a run that did not end with the guest's exit marker: a
// timeout, a kernel panic, qemu failing. It carries the console tail.
type GuestError struct {
	Reason string
	Tail   []string
}

func (e *GuestError) Error() string {
	return fmt.Sprintf("vm lab: %s\n--- last %d console lines ---\n%s\n--- end of console ---",
		e.Reason, len(e.Tail), strings.Join(e.Tail, "\n"))
}

// Variables Run exports in the guest besides KEYPLANE_VM=1.
const (
	EnvHostTime = "KEYPLANE_LAB_HOST_TIME"      // host clock at the start of the run, Unix nanoseconds
	EnvKernel   = "KEYPLANE_LAB_KERNEL_RELEASE" // the guest kernel's release, as the host unpacked it
)

// exitMarker and stageMarker are printed by the guest's init scripts.
const (
	exitMarker  = "KEYPLANE-LAB-EXIT "
	stageMarker = "keyplane-lab: stage "
)

// parseExit finds "KEYPLANE-LAB-EXIT <nonce> <code>" in a console line. Only
// the run's nonce counts, so a program that prints a marker-like line cannot
// fake the result.
func parseExit(line, nonce string) (code int, ok bool) {
	i := strings.Index(line, exitMarker+nonce+" ")
	if i < 0 {
		return 0, false
	}
	f := strings.Fields(line[i+len(exitMarker)+len(nonce):])
	if len(f) == 0 {
		return 0, false
	}
	code, err := strconv.Atoi(f[0])
	return code, err == nil
}

func newNonce() string {
	b := make([]byte, 8)
	rand.Read(b)
	return hex.EncodeToString(b)
}

// shellQuote quotes s for sh.
func shellQuote(s string) string {
	if s != "" && strings.Trim(s, "abcdefghijklmnopqrstuvwxyzABCDEFGHIJKLMNOPQRSTUVWXYZ0123456789_-./:=,+@%") == "" {
		return s
	}
	return "'" + strings.ReplaceAll(s, "'", `'\''`) + "'"
}

// ShellJoin quotes args as one sh command line.
func ShellJoin(args []string) string {
	q := make([]string, len(args))
	for i, a := range args {
		q[i] = shellQuote(a)
	}
	return strings.Join(q, " ")
}

// qemuArgs builds the qemu command line.
func (l *Lab) qemuArgs(nonce, runScript string, interactive bool) []string {
	stdin := "null"
	if interactive {
		stdin = "console"
	}
	args := []string{
		"-nodefaults", "-no-user-config", "-display", "none", "-no-reboot",
		"-m", strconv.Itoa(l.cfg.MemoryMB), "-smp", strconv.Itoa(l.cfg.CPUs),
		"-rtc", "base=utc,clock=host",
		"-kernel", l.kernel.vmlinuz, "-initrd", l.initramfs,
		"-append", strings.Join([]string{
			"console=ttyS0", "loglevel=4", "panic=-1", "oops=panic",
			// No Spectre/Meltdown mitigations: page-table isolation and
			// retpolines cost a lot under emulation and guard nothing here.
			"mitigations=off",
			"random.trust_cpu=on", "8250.nr_uarts=1",
			"keyplane.nonce=" + nonce, "keyplane.run=" + runScript, "keyplane.stdin=" + stdin,
			os.Getenv("KEYPLANE_LAB_KERNEL_ARGS"), // e.g. loglevel=7 to debug a boot
		}, " "),
		"-serial", "stdio",
		"-virtfs", "local,path=/,mount_tag=hostroot,security_model=none,readonly=on,multidevs=remap",
		"-device", "virtio-rng-pci",
	}
	if l.cfg.Accel == "kvm" {
		args = append(args, "-accel", "kvm")
	} else {
		args = append(args, "-accel", "tcg,thread=multi")
	}
	args = append(args, "-cpu", l.cfg.CPU)
	return args
}

// Run boots the guest, runs opts.Script in it, streams the console and
// returns the script's exit status in Result.ExitCode. A guest that ends
// without the exit marker (timeout, panic) returns a *GuestError.
func (l *Lab) Run(ctx context.Context, opts RunOptions) (*Result, error) {
	if opts.Timeout == 0 {
		opts.Timeout = 10 * time.Minute
	}
	if opts.Console == nil {
		opts.Console = os.Stdout
	}
	if opts.TailLines == 0 {
		opts.TailLines = 40
	}
	if opts.Dir == "" {
		wd, err := os.Getwd()
		if err != nil {
			return nil, err
		}
		opts.Dir = wd
	}

	// The script reaches the guest through the host root: the guest sees
	// the cache directory at the same path, read-only.
	nonce := newNonce()
	runDir := filepath.Join(l.cfg.CacheDir, "runs", nonce)
	if err := os.MkdirAll(runDir, 0o755); err != nil {
		return nil, err
	}
	defer os.RemoveAll(runDir)
	var sb strings.Builder
	sb.WriteString("# written by keyplane's vmlab for one guest run\n")
	fmt.Fprintf(&sb, "cd %s || exit 126\n", shellQuote(opts.Dir))
	// The host's clock at the start, for the self-test's clock check.
	fmt.Fprintf(&sb, "export %s=%d\n", EnvHostTime, time.Now().UnixNano())
	fmt.Fprintf(&sb, "export %s=%s\n", EnvKernel, shellQuote(l.kernel.release))
	for _, kv := range opts.Env {
		k, v, ok := strings.Cut(kv, "=")
		if !ok || k == "" || strings.ContainsAny(k, " \t\n='\"$") {
			return nil, fmt.Errorf("bad environment entry %q", kv)
		}
		fmt.Fprintf(&sb, "export %s=%s\n", k, shellQuote(v))
	}
	sb.WriteString(opts.Script)
	sb.WriteString("\n")
	runScript := filepath.Join(runDir, "run.sh")
	if err := os.WriteFile(runScript, []byte(sb.String()), 0o644); err != nil {
		return nil, err
	}

	if !opts.Interactive {
		release, err := l.acquireSlot(ctx, opts.Console)
		if err != nil {
			return nil, err
		}
		defer release()
	}

	ctx, cancel := context.WithTimeout(ctx, opts.Timeout)
	defer cancel()
	cmd := exec.CommandContext(ctx, l.qemu, l.qemuArgs(nonce, runScript, opts.Interactive)...)
	if opts.Interactive {
		cmd.Stdin = os.Stdin // qemu puts a terminal in raw mode: ^C goes to the guest
	} else {
		cmd.SysProcAttr = &syscall.SysProcAttr{Setpgid: true} // a terminal's ^C reaches us, not qemu
	}
	cmd.Cancel = func() error { return cmd.Process.Kill() }
	cmd.WaitDelay = 5 * time.Second
	pr, pw := io.Pipe()
	cmd.Stdout, cmd.Stderr = pw, pw

	start := time.Now()
	if err := cmd.Start(); err != nil {
		return nil, fmt.Errorf("start qemu: %w", err)
	}
	res := &Result{ExitCode: -1}
	var (
		mu      sync.Mutex
		tailBuf []string
		gotExit bool
		stages  = map[string]time.Duration{}
	)
	readDone := make(chan struct{})
	go func() {
		defer close(readDone)
		br := bufio.NewReaderSize(pr, 64<<10)
		for {
			line, err := br.ReadString('\n')
			if line != "" {
				line = strings.TrimRight(line, "\r\n")
				at := time.Since(start)
				io.WriteString(opts.Console, line+"\n")
				mu.Lock()
				tailBuf = append(tailBuf, line)
				if len(tailBuf) > opts.TailLines {
					tailBuf = tailBuf[len(tailBuf)-opts.TailLines:]
				}
				if code, ok := parseExit(line, nonce); ok && !gotExit {
					gotExit, res.ExitCode = true, code
					// The guest powers off next; give it a moment, then stop it.
					time.AfterFunc(15*time.Second, cancel)
				}
				if i := strings.Index(line, stageMarker); i >= 0 {
					if f := strings.Fields(line[i+len(stageMarker):]); len(f) > 0 {
						if _, seen := stages[f[0]]; !seen {
							stages[f[0]] = at
						}
					}
				}
				mu.Unlock()
				if opts.OnLine != nil {
					opts.OnLine(line, at)
				}
			}
			if err != nil {
				return
			}
		}
	}()
	waitErr := cmd.Wait()
	pw.Close()
	<-readDone
	res.Total = time.Since(start)

	mu.Lock()
	defer mu.Unlock()
	res.Tail = tailBuf
	res.Init = stages["init"]
	if m, ok := stages["modules"]; ok {
		res.Modules = m - stages["init"]
		if c, ok := stages["command"]; ok {
			res.Root = c - m
			res.Command = res.Total - c
		}
	}
	if gotExit {
		return res, nil
	}
	var reason string
	switch {
	case errors.Is(ctx.Err(), context.DeadlineExceeded):
		reason = fmt.Sprintf("guest killed after the %v timeout (hung?)", opts.Timeout)
	case ctx.Err() != nil:
		reason = "run interrupted"
	case waitErr != nil:
		reason = fmt.Sprintf("qemu failed: %v", waitErr)
	default:
		reason = "guest ended without an exit marker (kernel panic or init failure)"
	}
	return res, &GuestError{Reason: reason, Tail: tailBuf}
}

// acquireSlot waits for one of the machine's guest slots (Config.Slots, a
// flock each in the cache directory). Emulated guests share the host's
// cores: two at once on two cores each run at a third of the speed, and
// their timing-sensitive tests and timeouts suffer, so by default guests
// run one at a time and a second run waits for the first. The timeout
// starts once the slot is held.
func (l *Lab) acquireSlot(ctx context.Context, console io.Writer) (release func(), err error) {
	var files []*os.File
	defer func() {
		for _, f := range files {
			f.Close()
		}
	}()
	for i := range l.cfg.Slots {
		f, err := os.OpenFile(filepath.Join(l.cfg.CacheDir, fmt.Sprintf("slot-%d", i)), os.O_CREATE|os.O_RDWR, 0o644)
		if err != nil {
			return nil, err
		}
		files = append(files, f)
	}
	waiting := false
	t0 := time.Now()
	for {
		for i, f := range files {
			if syscall.Flock(int(f.Fd()), syscall.LOCK_EX|syscall.LOCK_NB) == nil {
				files = append(files[:i], files[i+1:]...) // keep it open; close the others
				if waiting {
					fmt.Fprintf(console, "vmlab: got a guest slot after %.0fs\n", time.Since(t0).Seconds())
				}
				return func() { f.Close() }, nil
			}
		}
		if !waiting {
			waiting = true
			fmt.Fprintf(console, "vmlab: %d guest(s) already running on this machine (KEYPLANE_LAB_SLOTS=%d); waiting for one to finish\n",
				l.cfg.Slots, l.cfg.Slots)
		}
		select {
		case <-ctx.Done():
			return nil, ctx.Err()
		case <-time.After(time.Second):
		}
	}
}
