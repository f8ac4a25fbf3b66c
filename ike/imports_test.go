package ike

import (
	"os/exec"
	"strings"
	"testing"
)

// TestImportsNoBackend enforces the design rule: the engine and its
// configuration reach dataplanes only through kernelops, never by
// importing a backend.
func TestImportsNoBackend(t *testing.T) {
	gocmd, err := exec.LookPath("go")
	if err != nil {
		t.Skip("go command not in PATH")
	}
	out, err := exec.Command(gocmd, "list", "-deps", "github.com/keyplane/keyplane/ike", "github.com/keyplane/keyplane/ike/config", "github.com/keyplane/keyplane/ike/control").CombinedOutput()
	if err != nil {
		t.Fatalf("go list: %v\n%s", err, out)
	}
	n := 0
	for dep := range strings.FieldsSeq(string(out)) {
		n++
		if strings.HasPrefix(dep, "github.com/keyplane/keyplane/backends/") {
			t.Errorf("ike depends on backend package %s", dep)
		}
	}
	if n < 10 || !strings.Contains(string(out), "github.com/keyplane/keyplane/kernelops\n") {
		t.Fatalf("implausible dependency list:\n%s", out)
	}
}
