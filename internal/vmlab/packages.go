package vmlab

import (
	"errors"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"slices"
	"strings"
)

// What the project installs on a machine, in one place: the README's "What
// `make test` installs" lists the same (a test compares them), and
// .ci/fresh-check purges these packages to simulate a fresh machine.

// PackageGroup is a set of Debian packages that tests need for one purpose.
type PackageGroup struct {
	For      string   // what needs them
	Host     bool     // host tests need them too, not only the VM lab
	Packages []string // apt-get names
}

// PackageGroups are the Debian packages any test needs, installed with
// apt-get when missing (`make deps`, and the lab's Prepare). Guests use
// the host's binaries: what a test runs in the guest is installed on the
// host. libreswan is not here: it conflicts with strongswan-charon.
var PackageGroups = []PackageGroup{
	{
		For:      "network namespaces, addresses and XFRM state (ip), ping through tunnels; host tests and the guest",
		Host:     true,
		Packages: []string{"iproute2", "iputils-ping"},
	},
	{
		For:  "strongSwan 5.9.8, the IKE interop peer: kernel-libipsec on the host, kernel-netlink in the guest",
		Host: true,
		Packages: []string{"strongswan-charon", "strongswan-swanctl", "libcharon-extra-plugins",
			"libstrongswan-extra-plugins", "libstrongswan-standard-plugins"},
	},
	{
		For:      "etcd 3.4, the store of the HA tests (ha/, ike): started by each test on loopback with a temp data dir (internal/etcdtest)",
		Host:     true,
		Packages: []string{"etcd-server"},
	},
	{
		For:      "the VM lab: qemu (software emulation) and a static busybox for the initramfs",
		Packages: []string{"qemu-system-x86", "busybox-static"},
	},
	{
		For:      "a NAT between namespaces in the guest's NAT-T interop tests: nft masquerade, conntrack -F for a new mapping",
		Packages: []string{"nftables", "conntrack"},
	},
}

// KernelMetaPackage names the guest's kernel: the lab downloads the
// package it depends on (apt-get download, not installed) into its cache.
const KernelMetaPackage = "linux-image-amd64"

// Packages lists the packages of PackageGroups, only those host tests need
// when hostOnly is set.
func Packages(hostOnly bool) []string {
	var pkgs []string
	for _, g := range PackageGroups {
		if g.Host || !hostOnly {
			pkgs = append(pkgs, g.Packages...)
		}
	}
	return pkgs
}

// MissingPackages returns those of pkgs that dpkg does not have installed.
func MissingPackages(pkgs []string) []string {
	have := installed(pkgs)
	var missing []string
	for _, p := range pkgs {
		if !have[p] {
			missing = append(missing, p)
		}
	}
	return missing
}

// installed reports which of pkgs dpkg has installed.
func installed(pkgs []string) map[string]bool {
	have := map[string]bool{}
	args := append([]string{"-W", "-f", "${Package} ${db:Status-Status}\n"}, pkgs...)
	out, _ := exec.Command("dpkg-query", args...).Output() // exits 1 when some are unknown
	for line := range strings.Lines(string(out)) {
		f := strings.Fields(line)
		if len(f) == 2 && f[1] == "installed" {
			have[f[0]] = true
		}
	}
	return have
}

// InstallPackages installs those of pkgs that are missing with apt-get
// (running apt-get update first when there are no package lists, or when
// the install fails on stale ones). It needs root; errors wrap
// ErrCannotRun.
func InstallPackages(pkgs []string, logf func(string, ...any)) error {
	missing := MissingPackages(slices.Compact(slices.Sorted(slices.Values(pkgs))))
	if len(missing) == 0 {
		return nil
	}
	if os.Geteuid() != 0 {
		return fmt.Errorf("%w: packages %s are missing and installing them needs root", ErrCannotRun, strings.Join(missing, " "))
	}
	if _, err := exec.LookPath("apt-get"); err != nil {
		return fmt.Errorf("%w: packages %s are missing and there is no apt-get", ErrCannotRun, strings.Join(missing, " "))
	}
	logf("vmlab: installing %s", strings.Join(missing, " "))
	install := func() error {
		// Wait for another apt or dpkg run (another engineer, unattended upgrades) instead of failing.
		cmd := exec.Command("apt-get", append([]string{"-o", "DPkg::Lock::Timeout=300", "install", "-y", "--no-install-recommends"}, missing...)...)
		cmd.Env = append(os.Environ(), "DEBIAN_FRONTEND=noninteractive")
		out, err := cmd.CombinedOutput()
		if err != nil {
			return fmt.Errorf("apt-get install %s: %w\n%s", strings.Join(missing, " "), err, tail(string(out), 20))
		}
		return nil
	}
	if !aptListsPresent() {
		if err := aptUpdate(logf); err != nil {
			return fmt.Errorf("%w: %v", ErrCannotRun, err)
		}
	}
	if err := install(); err != nil {
		// The lists may be stale (a package version gone from the mirror).
		if uerr := aptUpdate(logf); uerr != nil {
			return fmt.Errorf("%w: %v", ErrCannotRun, errors.Join(err, uerr))
		}
		if err := install(); err != nil {
			return fmt.Errorf("%w: %v", ErrCannotRun, err)
		}
	}
	if still := MissingPackages(missing); len(still) > 0 {
		return fmt.Errorf("%w: apt-get install succeeded but %s are not installed", ErrCannotRun, strings.Join(still, " "))
	}
	return nil
}

func aptListsPresent() bool {
	m, _ := filepath.Glob("/var/lib/apt/lists/*_Packages*")
	return len(m) > 0
}

func aptUpdate(logf func(string, ...any)) error {
	logf("vmlab: apt-get update")
	out, err := exec.Command("apt-get", "-o", "DPkg::Lock::Timeout=300", "update").CombinedOutput()
	if err != nil {
		return fmt.Errorf("apt-get update: %w\n%s", err, tail(string(out), 20))
	}
	return nil
}
