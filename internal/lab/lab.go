// Package lab is what tests import to cooperate with keyplane's VM lab.
//
// The host kernel on the project's machines has XFRM but no ESP, AH, IPcomp,
// af_key or xfrm interfaces, so tests that need a real dataplane run inside a
// qemu guest booted on Debian's kernel (see internal/vmlab and docs/lab.md).
// The lab sets KEYPLANE_VM=1 in the guest. A test that needs the real kernel
// calls RequireVM: on the host it skips and says why; in the guest it returns
// and every missing feature after that is a failure, not a skip.
//
// The package also creates network namespaces and veth pairs for tests, with
// unique names so that test binaries running in parallel do not collide, and
// removes them in t.Cleanup even when the test fails.
package lab

import (
	"fmt"
	"os"
)

// EnvVM is set to "1" by the lab inside the guest.
const EnvVM = "KEYPLANE_VM"

// HostLacks names what the project's host kernel is known to lack; it is part
// of the reason RequireVM gives when it skips.
const HostLacks = "ESP, AH, IPcomp, af_key (PF_KEY), xfrm interfaces and dummy links"

// InVM reports whether the test runs inside the lab's guest.
func InVM() bool { return os.Getenv(EnvVM) == "1" }

// RequireVM skips t on the host, with a reason that names why the test needs
// the guest, what the host kernel lacks and that `make vmtest` runs it. Inside
// the guest it returns normally: from then on a missing kernel feature must
// fail the test (see Need and SkipOrFail).
func RequireVM(t TB, why string) {
	t.Helper()
	if InVM() {
		return
	}
	if why == "" {
		why = "needs the real kernel"
	}
	t.Skipf("%s: not in the VM lab (%s=1 unset); the host kernel lacks %s; `make vmtest` runs this test in the guest", why, EnvVM, HostLacks)
}

// RequireRoot skips t with a reason when the process is not root (host tests
// that need network namespaces). In the guest the lab always runs as root, so
// there it fails instead of skipping.
func RequireRoot(t TB) {
	t.Helper()
	if os.Geteuid() == 0 {
		return
	}
	SkipOrFail(t, "needs root (network namespaces, netlink writes); running as uid %d", os.Geteuid())
}

// SkipOrFail skips t on the host and fails it in the guest. Use it where a
// test probes a kernel feature: absent on the host it is expected, absent in
// the guest it is a bug in the lab or the code under test.
func SkipOrFail(t TB, format string, args ...any) {
	t.Helper()
	msg := fmt.Sprintf(format, args...)
	if InVM() {
		t.Fatalf("%s (in the VM lab a missing feature is a failure)", msg)
	}
	t.Skipf("%s (host; `make vmtest` runs this in the guest)", msg)
}

// Need is SkipOrFail for an error: it does nothing when err is nil, and
// otherwise skips on the host or fails in the guest, naming feature and err.
//
//	lab.Need(t, "ESP state (rfc4106(gcm(aes)))", err)
func Need(t TB, feature string, err error) {
	t.Helper()
	if err == nil {
		return
	}
	SkipOrFail(t, "kernel feature %s unavailable: %v", feature, err)
}

// TB is the part of testing.TB the lab uses. *testing.T satisfies it, and
// so does the conformance suite's TB, so the command-line conformance
// runner builds its namespaces with the same code as the tests.
type TB interface {
	Helper()
	Logf(format string, args ...any)
	Fatalf(format string, args ...any)
	Skipf(format string, args ...any)
	Cleanup(func())
}
