//go:build vpp && linux

package main

import (
	"strings"
	"testing"

	"github.com/keyplane/keyplane/backends/vpp/vppharness"
	"github.com/keyplane/keyplane/backends/vpp/vpptest"
)

// keyplane conformance --backend vpp --vpp-socket PATH, against the VPP
// test double listening on a real unix socket (no real VPP exists here).
func TestConformanceCommandVPPSocket(t *testing.T) {
	dir := t.TempDir()
	srv := vpptest.New(vppharness.DoubleConfig(dir))
	if err := srv.Start(); err != nil {
		t.Fatal(err)
	}
	defer srv.Close()
	code, out, errs := runCLI(t, "conformance", "--backend", "vpp",
		"--vpp-socket", dir+"/api.sock", "--vpp-stats-socket", dir+"/stats.sock",
		"--param", "interfaces=eth0", "--run", "Policy")
	if code != 0 {
		t.Fatalf("exit %d\n%s\n%s", code, out, errs)
	}
	if !strings.Contains(out, "pass PolicyLifecycle") {
		t.Errorf("unexpected report:\n%s", out)
	}
}
