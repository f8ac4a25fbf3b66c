package main

import (
	"bytes"
	"context"
	"encoding/json"
	"fmt"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"
)

// TestControlCommands runs two real daemons in this process (nokernel,
// loopback) and drives them with the CLI's control commands: initiate,
// child list, reload and terminate, in text and -json, failures included.
func TestControlCommands(t *testing.T) {
	dir := t.TempDir()
	ports, err := freeUDPPorts(4)
	if err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(filepath.Join(dir, "demo.psk"), []byte("ctl test secret\n"), 0o600); err != nil {
		t.Fatal(err)
	}
	sock := func(n string) string { return filepath.Join(dir, n+".sock") }
	for _, c := range []struct {
		name, peer, lts, rts string
		lp, lnp, rp, rnp     int
	}{
		{"west", "east", "10.1.0.0/16", "10.2.0.0/16", ports[0], ports[1], ports[2], ports[3]},
		{"east", "west", "10.2.0.0/16", "10.1.0.0/16", ports[2], ports[3], ports[0], ports[1]},
	} {
		text := fmt.Sprintf(demoConf, c.name, sock(c.name), c.lp, c.lnp, c.rp, c.rnp, c.peer, c.lts, c.rts)
		if err := os.WriteFile(filepath.Join(dir, c.name+".conf"), []byte(text), 0o644); err != nil {
			t.Fatal(err)
		}
	}
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan int, 2)
	for _, n := range []string{"west", "east"} {
		go func() {
			var out, errb bytes.Buffer
			done <- run(ctx, &env{stdout: &out, stderr: &errb}, []string{"daemon", "-c", filepath.Join(dir, n+".conf")})
		}()
	}
	defer func() {
		cancel()
		for range 2 {
			if code := <-done; code != 0 {
				t.Errorf("daemon exited %d", code)
			}
		}
	}()
	// Wait for both control sockets.
	for deadline := time.Now().Add(10 * time.Second); ; time.Sleep(20 * time.Millisecond) {
		c1, _, _ := runCLI(t, "child", "list", "-s", sock("west"))
		c2, _, _ := runCLI(t, "child", "list", "-s", sock("east"))
		if c1 == 0 && c2 == 0 {
			break
		}
		if time.Now().After(deadline) {
			t.Fatal("daemons' control sockets did not come up")
		}
	}
	jsonOf := func(s string) map[string]any {
		t.Helper()
		var m map[string]any
		if err := json.Unmarshal([]byte(s), &m); err != nil {
			t.Fatalf("not JSON: %v\n%s", err, s)
		}
		return m
	}

	code, out, errs := runCLI(t, "initiate", "-s", sock("west"), "-json", "west-net")
	if m := jsonOf(out); code != 0 || m["ok"] != true || m["name"] != "west-net" || m["error"] != nil {
		t.Fatalf("initiate -json: exit %d, %v, stderr %s", code, m, errs)
	}
	code, out, _ = runCLI(t, "child", "list", "-s", sock("east"), "-json")
	var chs []map[string]any
	if err := json.Unmarshal([]byte(out), &chs); code != 0 || err != nil || len(chs) != 1 || chs[0]["state"] != "installed" {
		t.Fatalf("child list -json on east: exit %d, %v, %s", code, err, out)
	}
	code, out, errs = runCLI(t, "reload", "-s", sock("east"))
	if code != 0 || strings.TrimSpace(out) == "" {
		t.Errorf("reload: exit %d, stdout %q, stderr %q", code, out, errs)
	}
	code, out, errs = runCLI(t, "terminate", "-s", sock("east"), "-json", "nosuch")
	if m := jsonOf(out); code == 0 || m["ok"] != false || m["name"] != "nosuch" || !strings.Contains(fmt.Sprint(m["error"]), "nosuch") {
		t.Errorf("terminate of an unknown name -json: exit %d, %v, stderr %s", code, m, errs)
	}
	code, _, errs = runCLI(t, "terminate", "-s", sock("east"), "nosuch")
	if code == 0 || !strings.Contains(errs, "nosuch") {
		t.Errorf("terminate of an unknown name: exit %d, stderr %q", code, errs)
	}
	code, out, errs = runCLI(t, "terminate", "-s", sock("east"), "east")
	if code != 0 || strings.TrimSpace(out) == "" {
		t.Fatalf("terminate east: exit %d, stdout %q, stderr %q", code, out, errs)
	}
	for deadline := time.Now().Add(5 * time.Second); ; time.Sleep(20 * time.Millisecond) {
		_, out, _ := runCLI(t, "child", "list", "-s", sock("west"), "-json")
		if strings.TrimSpace(out) == "[]" {
			break
		}
		if time.Now().After(deadline) {
			t.Fatalf("west still lists children after east's terminate: %s", out)
		}
	}
}
