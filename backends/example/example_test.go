package example_test

import (
	"context"
	"errors"
	"net/netip"
	"strings"
	"testing"
	"time"

	"github.com/keyplane/keyplane/backends/example"
	"github.com/keyplane/keyplane/conformance"
	"github.com/keyplane/keyplane/iana"
	"github.com/keyplane/keyplane/kernelops"
	"github.com/keyplane/keyplane/kernelops/clock"
)

// newHarness opens a fresh example backend per case, through the registry
// like the daemon does, on a fake clock the suite advances.
func newHarness(t conformance.TB) *conformance.Harness {
	clk := clock.NewFake(time.Date(2026, 1, 1, 0, 0, 0, 0, time.UTC))
	b, err := kernelops.Open(t.Context(), example.Name, conformance.BackendOptions(kernelops.Options{Clock: clk}))
	if err != nil {
		t.Fatalf("open: %v", err)
	}
	t.Cleanup(func() { b.Close() })
	return &conformance.Harness{Backend: b, Clock: clk}
}

func TestConformance(t *testing.T) { conformance.Run(t, newHarness) }

// TestSkipsFollowCapabilities pins what the suite does with this backend:
// every case it can run passes, and each other one skips for the reason
// the capabilities (or the harness, which has no traffic source and no
// interface) give. A case that starts to skip, or to run, for another
// reason fails here.
func TestSkipsFollowCapabilities(t *testing.T) {
	skipWhy := map[string]string{
		"CountersMoveWithTraffic": "capability counters absent: an in-memory table with no traffic",
		"TrapRaisesAcquire":       "capability trap absent: no traffic",
		"LifetimeUseTime":         "no traffic source",
		"LifetimeBytes":           "capability lifetime-bytes absent",
		"LifetimePackets":         "capability lifetime-packets absent",
		"IdleDetection":           "no traffic source",
		"BatchPartialFailure":     "capability batch absent",
		"AddressRefcounts":        "capability addr-manage absent",
		"AddressSelection":        "capability addr-select absent",
		"IKESockets":              "capability sockets absent",
		"Holes":                   "capability holes absent",
		"Offload":                 "capability offload absent",
		"SyncState":               "capability sync absent",
		"SyncStateOnAdd":          "capability sync absent",
		"Migrate":                 "capability migrate absent",
		"XfrmInterfaces":          "capability xfrm-interfaces absent",
	}
	results := conformance.RunCases(context.Background(), newHarness, "", nil)
	if len(results) != len(conformance.Cases()) {
		t.Fatalf("%d results for %d cases", len(results), len(conformance.Cases()))
	}
	for _, r := range results {
		want, skips := skipWhy[r.Name]
		skips = skips && want != ""
		switch {
		case r.Outcome == conformance.Fail:
			t.Errorf("%s failed: %s", r.Name, strings.Join(r.Log, "; "))
		case r.Outcome == conformance.Skip && !skips:
			t.Errorf("%s skipped (%q) though the backend claims what it needs", r.Name, r.Reason)
		case r.Outcome == conformance.Skip && !strings.Contains(r.Reason, want):
			t.Errorf("%s skipped with %q, want a reason containing %q", r.Name, r.Reason, want)
		case r.Outcome == conformance.Pass && skips:
			t.Errorf("%s ran though it needs %q", r.Name, want)
		}
	}
}

// TestFrontEndChecks shows what the driver never sees: bad input and
// unclaimed capabilities are refused by the front end, with typed errors.
func TestFrontEndChecks(t *testing.T) {
	h := newHarness(t)
	sad, err := kernelops.As[kernelops.SAD](h.Backend)
	if err != nil {
		t.Fatal(err)
	}
	if _, err := kernelops.As[kernelops.Sockets](h.Backend); err == nil {
		t.Errorf("As[Sockets] succeeded on a backend that claims no sockets")
	}
	local, remote := netip.MustParseAddr("192.0.2.1"), netip.MustParseAddr("198.51.100.1")
	sa := &kernelops.SA{ID: kernelops.SAID{Src: local, Dst: remote, SPI: 0x1234, Proto: kernelops.ProtoESP},
		Mode: kernelops.ModeTunnel, Encryption: kernelops.Encryption{ID: iana.EncrAESCBC, KeyBits: 128, Key: make([]byte, 15)},
		Integrity: kernelops.Integrity{ID: iana.IntegHMACSHA256_128, Key: make([]byte, 32)}}
	err = sad.AddSA(t.Context(), sa)
	var ke *kernelops.Error
	if !errors.As(err, &ke) || ke.Backend != example.Name || ke.Op != "add SA" || ke.Field != "Encryption.Key" {
		t.Errorf("short key: %v, want ErrInvalid from the front end naming backend, op and field", err)
	}
	sa.Encryption.Key = make([]byte, 16)
	sa.Lifetime.Hard.Bytes = 1 << 20
	if err := sad.AddSA(t.Context(), sa); !errors.Is(err, kernelops.ErrNotSupported) || !strings.Contains(err.Error(), "lifetime-bytes") {
		t.Errorf("byte lifetime: %v, want ErrNotSupported naming the capability", err)
	}
	h.Backend.Close()
	sa.Lifetime = kernelops.Lifetimes{}
	if err := sad.AddSA(t.Context(), sa); !errors.Is(err, kernelops.ErrClosed) {
		t.Errorf("after Close: %v, want ErrClosed", err)
	}
}
