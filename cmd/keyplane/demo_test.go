package main

import (
	"os"
	"strings"
	"testing"
)

// envAsKeyplane makes the test binary behave as the keyplane binary, so
// commands that re-execute themselves (tunnel-demo starts two daemons)
// run for real under go test.
const envAsKeyplane = "KEYPLANE_TEST_AS_MAIN"

func TestMain(m *testing.M) {
	if os.Getenv(envAsKeyplane) == "1" {
		os.Exit(runMain(os.Args[1:]))
	}
	os.Exit(m.Run())
}

// make run: two daemon processes on loopback build a tunnel, carry
// simulated traffic, tear it down, and exit cleanly.
func TestTunnelDemo(t *testing.T) {
	t.Setenv(envAsKeyplane, "1")
	code, out, errs := runCLI(t, "tunnel-demo")
	if code != 0 {
		t.Fatalf("exit %d\n%s\n%s", code, out, errs)
	}
	for _, want := range []string{"is up", "established  initiator", "established  responder",
		"100 protected", "100 delivered", "60 protected", "60 delivered",
		"120000    100", "0 IKE SAs", "west exited cleanly", "east exited cleanly"} {
		if !strings.Contains(out, want) {
			t.Errorf("demo output lacks %q", want)
		}
	}
	if t.Failed() {
		t.Log(out)
	}
}
