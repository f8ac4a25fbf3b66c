package main

import (
	"bytes"
	"context"
	"encoding/json"
	"strings"
	"testing"
)

// runCLI runs the keyplane CLI in-process and returns its exit code and output.
func runCLI(t *testing.T, args ...string) (int, string, string) {
	t.Helper()
	var out, errb bytes.Buffer
	code := run(context.Background(), &env{stdout: &out, stderr: &errb}, args)
	return code, out.String(), errb.String()
}

func TestUsageAndUnknownCommand(t *testing.T) {
	if code, _, errs := runCLI(t); code != 2 || !strings.Contains(errs, "commands:") {
		t.Errorf("no args: code %d, stderr %q", code, errs)
	}
	if code, _, errs := runCLI(t, "frobnicate"); code != 2 || !strings.Contains(errs, `unknown command "frobnicate"`) {
		t.Errorf("unknown command: code %d, stderr %q", code, errs)
	}
	if code, _, errs := runCLI(t, "sa"); code != 2 || !strings.Contains(errs, "keyplane sa list") {
		t.Errorf("sa without list: code %d, stderr %q", code, errs)
	}
	if code, _, errs := runCLI(t, "caps", "--backend", "nosuch"); code != 1 || !strings.Contains(errs, "unknown backend") {
		t.Errorf("unknown backend: code %d, stderr %q", code, errs)
	}
	if code, _, errs := runCLI(t, "caps", "--param", "bogus=1"); code != 1 || !strings.Contains(errs, "Params.bogus") {
		t.Errorf("unknown param: code %d, stderr %q", code, errs)
	}
}

func TestBackendsAndCaps(t *testing.T) {
	code, out, _ := runCLI(t, "backends", "--json")
	var names []string
	if code != 0 || json.Unmarshal([]byte(out), &names) != nil || len(names) == 0 {
		t.Fatalf("backends --json: code %d, %q", code, out)
	}
	code, out, _ = runCLI(t, "caps", "--json")
	var caps struct {
		Backend string
		Caps    []struct {
			Name    string
			Present bool
		}
	}
	if code != 0 || json.Unmarshal([]byte(out), &caps) != nil || caps.Backend != "nokernel" || len(caps.Caps) == 0 {
		t.Fatalf("caps --json: code %d, %q", code, out)
	}
	// A fresh nokernel model is not the daemon's: refused (see
	// TestProcessLocalBackendRefused).
	if code, _, errs := runCLI(t, "sa", "list"); code != 1 || !strings.Contains(errs, "keyplane child list") {
		t.Errorf("sa list on nokernel: code %d, %q", code, errs)
	}
}

// The same suite `go test` runs, through the command-line runner.
func TestConformanceCommandNokernel(t *testing.T) {
	code, out, errs := runCLI(t, "conformance", "--backend", "nokernel")
	if code != 0 {
		t.Fatalf("exit %d\n%s\n%s", code, out, errs)
	}
	if !strings.Contains(out, "pass SALifecycle") || !strings.Contains(out, " 0 fail, 0 skip") {
		t.Errorf("unexpected report:\n%s", out)
	}
}

func TestDemo(t *testing.T) {
	code, out, errs := runCLI(t, "demo", "--soft", "300ms")
	if code != 0 {
		t.Fatalf("exit %d: %s", code, errs)
	}
	for _, want := range []string{"2 SAs", "3 policies", "soft esp", "hard esp", "0 SAs"} {
		if !strings.Contains(out, want) {
			t.Errorf("demo output lacks %q:\n%s", want, out)
		}
	}
}
