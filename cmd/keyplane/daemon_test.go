package main

import (
	"fmt"
	"os"
	"path/filepath"
	"strings"
	"testing"
)

// The probe "control = an existing regular file": the daemon deleted it.
// Now it refuses to start and the file stays.
func TestDaemonRefusesControlPathThatIsNotASocket(t *testing.T) {
	dir := t.TempDir()
	precious := filepath.Join(dir, "precious.txt")
	if err := os.WriteFile(precious, []byte("keep me"), 0o644); err != nil {
		t.Fatal(err)
	}
	conf := filepath.Join(dir, "kp.conf")
	if err := os.WriteFile(conf, []byte(fmt.Sprintf("daemon {\n\tcontrol = %s\n}\n", precious)), 0o644); err != nil {
		t.Fatal(err)
	}
	code, _, errs := runCLI(t, "daemon", "-c", conf)
	if code != 1 || !strings.Contains(errs, precious) || !strings.Contains(errs, "exists and is not a socket") || !strings.Contains(errs, "regular file") {
		t.Errorf("exit %d, stderr:\n%s", code, errs)
	}
	if b, err := os.ReadFile(precious); err != nil || string(b) != "keep me" {
		t.Errorf("the file at the control path: %q, %v", b, err)
	}
}
