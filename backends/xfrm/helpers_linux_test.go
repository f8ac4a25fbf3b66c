package xfrm

import (
	"context"
	"errors"
	"fmt"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/keyplane/keyplane/internal/lab"
	"github.com/keyplane/keyplane/kernelops"
)

// openIn opens a backend in namespace ns and closes it at cleanup.
func openIn(t testing.TB, ns *lab.NS, opts kernelops.Options) *Backend {
	t.Helper()
	params := map[string]string{ParamNetns: ns.Name}
	for k, v := range opts.Params {
		params[k] = v
	}
	opts.Params = params
	b, err := Open(context.Background(), opts)
	if err != nil {
		t.Fatalf("open in %s: %v", ns.Name, err)
	}
	t.Cleanup(func() { b.Close() })
	return b
}

// fresh opens a backend in a new namespace.
func fresh(t testing.TB, opts kernelops.Options) (*Backend, *lab.NS) {
	t.Helper()
	ns := lab.NewNS(t)
	return openIn(t, ns, opts), ns
}

func needESP(t testing.TB, b *Backend) {
	t.Helper()
	if !b.d.k.ESP {
		lab.RequireVM(t, "host kernel lacks ESP")
		t.Fatalf("the VM kernel has no ESP: %s", b.d.k.ESPErr)
	}
}

func wantIs(t testing.TB, what string, err, target error) {
	t.Helper()
	if !errors.Is(err, target) {
		t.Fatalf("%s: error %v, want %v", what, err, target)
	}
	var ke *kernelops.Error
	if !errors.As(err, &ke) {
		t.Fatalf("%s: %T is not a *kernelops.Error", what, err)
	}
}

func must(t testing.TB, what string, err error) {
	t.Helper()
	if err != nil {
		t.Fatalf("%s: %v", what, err)
	}
}

// subscribeAll opens a subscription with a deep queue.
func subscribeAll(t testing.TB, b *Backend, kinds kernelops.EventKind) kernelops.Subscription {
	t.Helper()
	sub, err := b.Subscribe(context.Background(), kernelops.SubscribeOptions{Kinds: kinds, Buffer: 1 << 16})
	must(t, "subscribe", err)
	t.Cleanup(func() { sub.Close() })
	return sub
}

// waitEvent returns the first event satisfying pred within d; a failure
// lists the events it passed over (up to 20).
func waitEvent[E kernelops.Event](t testing.TB, sub kernelops.Subscription, d time.Duration, pred func(E) bool) E {
	t.Helper()
	timer := time.NewTimer(d)
	defer timer.Stop()
	var zero E
	var skipped []string
	for {
		select {
		case ev, ok := <-sub.Events():
			if !ok {
				t.Fatalf("subscription closed while waiting for %T; passed over: %q", zero, skipped)
			}
			if e, ok := ev.(E); ok && pred(e) {
				return e
			}
			if len(skipped) < 20 {
				skipped = append(skipped, fmt.Sprintf("%T %+v", ev, ev))
			}
		case <-timer.C:
			t.Fatalf("no matching %T within %v; passed over: %q", zero, d, skipped)
			return zero
		}
	}
}

// noEvent fails if an event satisfying pred arrives within d.
func noEvent[E kernelops.Event](t testing.TB, sub kernelops.Subscription, d time.Duration, pred func(E) bool) {
	t.Helper()
	timer := time.NewTimer(d)
	defer timer.Stop()
	for {
		select {
		case ev := <-sub.Events():
			if e, ok := ev.(E); ok && pred(e) {
				t.Fatalf("unexpected event %+v", e)
			}
		case <-timer.C:
			return
		}
	}
}

// ipOut runs `ip ARGS` in ns.
func ipOut(t testing.TB, ns *lab.NS, args ...string) string {
	t.Helper()
	return ns.Exec(t, append([]string{"ip"}, args...)...)
}

func errnoOf(err error) syscall.Errno {
	var ke *kernelops.Error
	if errors.As(err, &ke) {
		return ke.Errno
	}
	return 0
}

func hexKey(n int) string { return "0x" + strings.Repeat("ab", n) }

func fmtSPI(spi uint32) string { return fmt.Sprintf("0x%08x", spi) }
