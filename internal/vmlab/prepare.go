package vmlab

import (
	"bufio"
	"bytes"
	"debug/elf"
	"errors"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"sort"
	"strconv"
	"strings"
	"syscall"
)

// ErrCannotRun wraps the reasons the lab cannot run on this machine at all
// (not root and something missing, no qemu to be had). `make test` fails on it
// unless KEYPLANE_SKIP_VM=1.
var ErrCannotRun = errors.New("the VM lab cannot run on this machine")

// Config says where the lab keeps its cache and how it boots the guest.
// Zero values take the defaults (see FromEnv for the environment variables).
type Config struct {
	CacheDir string // default /var/cache/keyplane-lab, or $XDG_CACHE_HOME/keyplane-lab when not root
	Kernel   string // kernel package, e.g. linux-image-6.1.0-56-amd64; default from linux-image-amd64
	Accel    string // "tcg" (default) or "kvm"
	CPU      string // qemu -cpu model; default "max" under TCG, "host" under KVM
	MemoryMB int    // default 2048
	Slots    int    // guests running at once on this machine; default 1 (KEYPLANE_LAB_SLOTS)
	CPUs     int    // default 2
	Logf     func(format string, args ...any)
}

// FromEnv fills a Config from KEYPLANE_LAB_CACHE, KEYPLANE_LAB_KERNEL,
// KEYPLANE_LAB_ACCEL, KEYPLANE_LAB_CPU and KEYPLANE_LAB_SLOTS.
func FromEnv() Config {
	slots, _ := strconv.Atoi(os.Getenv("KEYPLANE_LAB_SLOTS"))
	return Config{
		CacheDir: os.Getenv("KEYPLANE_LAB_CACHE"),
		Kernel:   os.Getenv("KEYPLANE_LAB_KERNEL"),
		Accel:    os.Getenv("KEYPLANE_LAB_ACCEL"),
		CPU:      os.Getenv("KEYPLANE_LAB_CPU"),
		Slots:    slots,
	}
}

func (c *Config) defaults() {
	if c.CacheDir == "" {
		c.CacheDir = "/var/cache/keyplane-lab"
		if os.Geteuid() != 0 {
			if d, err := os.UserCacheDir(); err == nil {
				c.CacheDir = filepath.Join(d, "keyplane-lab")
			}
		}
	}
	if c.Accel == "" {
		c.Accel = "tcg"
	}
	if c.CPU == "" {
		c.CPU = "max"
		if c.Accel == "kvm" {
			c.CPU = "host"
		}
	}
	if c.Slots <= 0 {
		c.Slots = 1
	}
	if c.MemoryMB == 0 {
		c.MemoryMB = 2048
	}
	if c.CPUs == 0 {
		c.CPUs = 2
	}
	if c.Logf == nil {
		c.Logf = func(format string, args ...any) { fmt.Fprintf(os.Stderr, format+"\n", args...) }
	}
}

// Lab is a prepared lab: packages present, kernel unpacked, initramfs built.
type Lab struct {
	cfg       Config
	kernel    *kernel
	initramfs string
	qemu      string
}

// Prepare installs what is missing and returns a lab ready to Run.
func Prepare(cfg Config) (*Lab, error) {
	cfg.defaults()
	if strings.ContainsAny(cfg.CacheDir, " \t\n") {
		return nil, fmt.Errorf("cache directory %q: whitespace is not allowed (it goes on the kernel command line)", cfg.CacheDir)
	}
	if err := InstallPackages(Packages(false), cfg.Logf); err != nil {
		return nil, err
	}
	qemu, err := exec.LookPath("qemu-system-x86_64")
	if err != nil {
		return nil, fmt.Errorf("%w: qemu-system-x86_64 not found after installing qemu-system-x86: %v", ErrCannotRun, err)
	}
	if err := os.MkdirAll(cfg.CacheDir, 0o755); err != nil {
		return nil, fmt.Errorf("%w: cache: %v", ErrCannotRun, err)
	}
	// Two labs preparing the same cache at once would race on the kernel
	// download and the initramfs; the lock serializes them.
	unlock, err := lockDir(cfg.CacheDir)
	if err != nil {
		return nil, err
	}
	defer unlock()
	k, err := ensureKernel(cfg)
	if err != nil {
		return nil, err
	}
	bb, err := findBusybox()
	if err != nil {
		return nil, err
	}
	img, err := initramfs(k, bb, cfg.Logf)
	if err != nil {
		return nil, err
	}
	return &Lab{cfg: cfg, kernel: k, initramfs: img, qemu: qemu}, nil
}

// KernelVersion is the guest kernel's release, e.g. 6.1.0-56-amd64.
func (l *Lab) KernelVersion() string { return l.kernel.release }

// findBusybox returns a statically linked busybox: the initramfs has no
// libc for a dynamic one.
func findBusybox() (string, error) {
	for _, p := range []string{"/bin/busybox", "/usr/bin/busybox"} {
		f, err := elf.Open(p)
		if err != nil {
			continue
		}
		dynamic := false
		for _, prog := range f.Progs {
			if prog.Type == elf.PT_INTERP {
				dynamic = true
			}
		}
		f.Close()
		if dynamic {
			return "", fmt.Errorf("%w: %s is dynamically linked; the initramfs needs busybox-static", ErrCannotRun, p)
		}
		return p, nil
	}
	return "", fmt.Errorf("%w: busybox not found (apt-get install busybox-static)", ErrCannotRun)
}

// kernel is an unpacked kernel package in the cache.
type kernel struct {
	pkg     string // linux-image-6.1.0-56-amd64
	version string // the package version, 6.1.192-2
	release string // uname -r: 6.1.0-56-amd64
	dir     string // cache directory for this kernel
	vmlinuz string
	modDir  string // lib/modules/<release>
}

// kernelPackage finds the kernel package KernelMetaPackage depends on.
func kernelPackage(logf func(string, ...any)) (string, error) {
	if !aptListsPresent() && os.Geteuid() == 0 {
		if err := aptUpdate(logf); err != nil {
			return "", err
		}
	}
	out, err := exec.Command("apt-cache", "depends", KernelMetaPackage).Output()
	if err != nil {
		return "", fmt.Errorf("apt-cache depends %s: %w", KernelMetaPackage, err)
	}
	return parseKernelDepends(string(out))
}

// parseKernelDepends picks linux-image-<release> from `apt-cache depends
// linux-image-amd64`.
func parseKernelDepends(out string) (string, error) {
	for line := range strings.Lines(out) {
		f := strings.Fields(line)
		if len(f) == 2 && strings.TrimPrefix(f[0], "|") == "Depends:" && strings.HasPrefix(f[1], "linux-image-") &&
			f[1] != "linux-image-amd64" && !strings.HasSuffix(f[1], "-unsigned") {
			return f[1], nil
		}
	}
	return "", fmt.Errorf("no linux-image-<version> dependency in `apt-cache depends linux-image-amd64`:\n%s", out)
}

// candidateVersion is the version apt would download for pkg.
func candidateVersion(pkg string) (string, error) {
	out, err := exec.Command("apt-cache", "policy", pkg).Output()
	if err != nil {
		return "", fmt.Errorf("apt-cache policy %s: %w", pkg, err)
	}
	sc := bufio.NewScanner(bytes.NewReader(out))
	for sc.Scan() {
		if v, ok := strings.CutPrefix(strings.TrimSpace(sc.Text()), "Candidate: "); ok && v != "(none)" {
			return v, nil
		}
	}
	return "", fmt.Errorf("no candidate version for %s", pkg)
}

// ensureKernel returns the cached kernel, downloading and unpacking it when
// the cache has no complete copy of the current package version. Other
// kernels in the cache are removed once the new one is in place. Without
// package lists (offline), the newest cached kernel is used.
func ensureKernel(cfg Config) (*kernel, error) {
	k, err := ensureKernelOnce(cfg)
	if err != nil && errors.Is(err, errDownload) && os.Geteuid() == 0 {
		// Stale package lists name a kernel the archive no longer has.
		if uerr := aptUpdate(cfg.Logf); uerr == nil {
			return ensureKernelOnce(cfg)
		}
	}
	return k, err
}

var errDownload = errors.New("download failed")

func ensureKernelOnce(cfg Config) (*kernel, error) {
	pkg, version := cfg.Kernel, ""
	var lookupErr error
	if pkg == "" {
		pkg, lookupErr = kernelPackage(cfg.Logf)
	}
	if lookupErr == nil {
		version, lookupErr = candidateVersion(pkg)
	}
	if lookupErr != nil {
		if k := newestCachedKernel(cfg.CacheDir); k != nil {
			cfg.Logf("vmlab: %v; using the cached %s %s", lookupErr, k.pkg, k.version)
			return k, nil
		}
		return nil, fmt.Errorf("%w: finding the kernel package: %v", ErrCannotRun, lookupErr)
	}
	dir := filepath.Join(cfg.CacheDir, "kernel", pkg+"_"+version)
	if k, err := loadKernel(dir); err == nil {
		return k, nil
	}
	cfg.Logf("vmlab: downloading %s %s into %s", pkg, version, dir)
	os.RemoveAll(dir)
	tmp := dir + ".partial"
	os.RemoveAll(tmp)
	if err := os.MkdirAll(tmp, 0o755); err != nil {
		return nil, err
	}
	dl := exec.Command("apt-get", "download", pkg+"="+version)
	dl.Dir = tmp
	if out, err := dl.CombinedOutput(); err != nil {
		return nil, fmt.Errorf("%w: %w: apt-get download %s=%s: %v\n%s", ErrCannotRun, errDownload, pkg, version, err, tail(string(out), 10))
	}
	debs, _ := filepath.Glob(filepath.Join(tmp, "*.deb"))
	if len(debs) != 1 {
		return nil, fmt.Errorf("apt-get download %s left %d .deb files in %s", pkg, len(debs), tmp)
	}
	if out, err := exec.Command("dpkg", "-x", debs[0], filepath.Join(tmp, "root")).CombinedOutput(); err != nil {
		return nil, fmt.Errorf("dpkg -x %s: %v\n%s", debs[0], err, out)
	}
	os.Remove(debs[0])
	meta := fmt.Sprintf("pkg=%s\nversion=%s\n", pkg, version)
	if err := os.WriteFile(filepath.Join(tmp, "complete"), []byte(meta), 0o644); err != nil {
		return nil, err
	}
	if err := os.Rename(tmp, dir); err != nil {
		return nil, err
	}
	// A new kernel invalidates the old ones.
	others, _ := filepath.Glob(filepath.Join(cfg.CacheDir, "kernel", "*"))
	for _, o := range others {
		if o != dir {
			cfg.Logf("vmlab: removing old kernel cache %s", o)
			os.RemoveAll(o)
		}
	}
	return loadKernel(dir)
}

func loadKernel(dir string) (*kernel, error) {
	meta, err := os.ReadFile(filepath.Join(dir, "complete"))
	if err != nil {
		return nil, err
	}
	k := &kernel{dir: dir}
	for line := range strings.Lines(string(meta)) {
		key, v, _ := strings.Cut(strings.TrimSpace(line), "=")
		switch key {
		case "pkg":
			k.pkg = v
		case "version":
			k.version = v
		}
	}
	vm, _ := filepath.Glob(filepath.Join(dir, "root", "boot", "vmlinuz-*"))
	if len(vm) != 1 {
		return nil, fmt.Errorf("%s: %d vmlinuz files", dir, len(vm))
	}
	k.vmlinuz = vm[0]
	k.release = strings.TrimPrefix(filepath.Base(vm[0]), "vmlinuz-")
	k.modDir = filepath.Join(dir, "root", "lib", "modules", k.release)
	if _, err := os.Stat(k.modDir); err != nil {
		return nil, err
	}
	return k, nil
}

func newestCachedKernel(cacheDir string) *kernel {
	dirs, _ := filepath.Glob(filepath.Join(cacheDir, "kernel", "*"))
	sort.Sort(sort.Reverse(sort.StringSlice(dirs)))
	for _, d := range dirs {
		if k, err := loadKernel(d); err == nil {
			return k
		}
	}
	return nil
}

// tail returns the last n lines of s.
func tail(s string, n int) string {
	lines := strings.Split(strings.TrimRight(s, "\n"), "\n")
	if len(lines) > n {
		lines = lines[len(lines)-n:]
	}
	return strings.Join(lines, "\n")
}

// lockDir takes an exclusive flock on dir/lock until the returned func runs.
func lockDir(dir string) (func(), error) {
	f, err := os.OpenFile(filepath.Join(dir, "lock"), os.O_CREATE|os.O_RDWR, 0o644)
	if err != nil {
		return nil, err
	}
	if err := syscall.Flock(int(f.Fd()), syscall.LOCK_EX); err != nil {
		f.Close()
		return nil, err
	}
	return func() { f.Close() }, nil
}
