package vmlab

import (
	"bytes"
	"context"
	"errors"
	"os"
	"os/exec"
	"path/filepath"
	"reflect"
	"slices"
	"strconv"
	"strings"
	"testing"
	"time"
)

func TestParseModinfo(t *testing.T) {
	data := []byte("license=GPL\x00depends=xfrm_algo,ip-tunnel\x00softdep=pre: crypto-gcm ghash post: foo\x00retpoline=Y\x00name=esp4\x00vermagic=6.1.0 SMP\x00")
	mi := parseModinfo(data)
	if mi.name != "esp4" {
		t.Errorf("name = %q", mi.name)
	}
	if want := []string{"xfrm_algo", "ip_tunnel"}; !reflect.DeepEqual(mi.depends, want) {
		t.Errorf("depends = %q, want %q", mi.depends, want)
	}
	if want := []string{"crypto_gcm", "ghash"}; !reflect.DeepEqual(mi.softpre, want) {
		t.Errorf("softdep pre = %q, want %q", mi.softpre, want)
	}
	if mi := parseModinfo([]byte("depends=\x00name=veth\x00")); len(mi.depends) != 0 {
		t.Errorf("empty depends= gave %q", mi.depends)
	}
}

func TestLoadOrder(t *testing.T) {
	graph := map[string][]string{
		"esp4":       {"xfrm_algo"},
		"xfrm_user":  {"xfrm_algo"},
		"xfrm_algo":  nil,
		"9p":         {"9pnet", "netfs", "fscache"},
		"fscache":    {"netfs"},
		"netfs":      nil,
		"9pnet":      nil,
		"cbc":        nil, // built in
		"loop_a":     {"loop_b"},
		"loop_b":     {"loop_a"},
		"needs_gone": {"gone"},
	}
	builtin := map[string]bool{"cbc": true}
	deps := func(n string) ([]string, bool, error) {
		d, ok := graph[n]
		if !ok {
			return nil, false, errNoModule
		}
		return d, builtin[n], nil
	}
	got, err := loadOrder([]string{"9p", "esp4", "xfrm-user", "cbc", "absent?"}, deps)
	if err != nil {
		t.Fatal(err)
	}
	want := []string{"9pnet", "netfs", "fscache", "9p", "xfrm_algo", "esp4", "xfrm_user"}
	if !reflect.DeepEqual(got, want) {
		t.Errorf("order = %q, want %q", got, want)
	}
	if _, err := loadOrder([]string{"loop_a"}, deps); err == nil || !strings.Contains(err.Error(), "cycle") {
		t.Errorf("cycle: err = %v", err)
	}
	if _, err := loadOrder([]string{"absent"}, deps); !errors.Is(err, errNoModule) {
		t.Errorf("missing root: err = %v", err)
	}
	_, err = loadOrder([]string{"needs_gone"}, deps)
	if !errors.Is(err, errNoModule) || !strings.Contains(err.Error(), "needed by needs_gone") {
		t.Errorf("missing dependency: err = %v", err)
	}
}

// readCpio decodes a newc archive (the test's own reader, independent of
// the writer's code).
type cpioEntry struct {
	mode, rdevMajor, rdevMinor uint64
	data                       string
}

func readCpio(t *testing.T, b []byte) (map[string]cpioEntry, []string) {
	t.Helper()
	entries := map[string]cpioEntry{}
	var order []string
	off := 0
	align := func() { off = (off + 3) &^ 3 }
	for {
		if off+110 > len(b) || string(b[off:off+6]) != "070701" {
			t.Fatalf("bad cpio header at %d", off)
		}
		field := func(i int) uint64 {
			v, err := strconv.ParseUint(string(b[off+6+8*i:off+14+8*i]), 16, 32)
			if err != nil {
				t.Fatalf("cpio field %d at %d: %v", i, off, err)
			}
			return v
		}
		mode, size, rmaj, rmin, nameSize := field(1), field(6), field(9), field(10), field(11)
		name := string(b[off+110 : off+110+int(nameSize)-1])
		if b[off+110+int(nameSize)-1] != 0 {
			t.Fatalf("name %q not NUL-terminated", name)
		}
		off += 110 + int(nameSize)
		align()
		data := string(b[off : off+int(size)])
		off += int(size)
		align()
		if name == "TRAILER!!!" {
			if off != len(b) {
				t.Fatalf("%d bytes after the trailer", len(b)-off)
			}
			return entries, order
		}
		entries[name] = cpioEntry{mode, rmaj, rmin, data}
		order = append(order, name)
	}
}

func TestBuildInitramfs(t *testing.T) {
	dir := t.TempDir()
	var mods []string
	for _, m := range []string{"virtio.ko", "9p.ko", "esp4.ko"} {
		p := dir + "/" + m
		if err := os.WriteFile(p, []byte("ELF "+m), 0o644); err != nil {
			t.Fatal(err)
		}
		mods = append(mods, p)
	}
	var buf bytes.Buffer
	if err := buildInitramfs(&buf, []byte("busybox!"), mods); err != nil {
		t.Fatal(err)
	}
	if buf.Len()%4 != 0 {
		t.Errorf("archive length %d not 4-aligned", buf.Len())
	}
	ents, order := readCpio(t, buf.Bytes())
	for name, want := range map[string]cpioEntry{
		"init":                               {mode: 0o100755, data: string(initScript)},
		"bin/busybox":                        {mode: 0o100755, data: "busybox!"},
		"dev/console":                        {mode: 0o020600, rdevMajor: 5, rdevMinor: 1},
		"lib/keyplane-lab/modules/001-9p.ko": {mode: 0o100644, data: "ELF 9p.ko"},
		"lib/keyplane-lab/modules.order":     {mode: 0o100644, data: "000-virtio.ko\n001-9p.ko\n002-esp4.ko\n"},
		"lib/keyplane-lab/stage2":            {mode: 0o100755, data: string(stage2Script)},
	} {
		if got, ok := ents[name]; !ok || got != want {
			t.Errorf("%s = %+v (present %v), want %+v", name, got, ok, want)
		}
	}
	// Directories come before what they hold.
	if i, j := slices.Index(order, "lib/keyplane-lab/modules"), slices.Index(order, "lib/keyplane-lab/modules/000-virtio.ko"); i < 0 || i > j {
		t.Errorf("directory after its files: %q", order)
	}
	// The same input gives the same bytes (the cache key is a hash of them).
	var again bytes.Buffer
	buildInitramfs(&again, []byte("busybox!"), mods)
	if !bytes.Equal(buf.Bytes(), again.Bytes()) {
		t.Error("initramfs not reproducible")
	}
}

func TestParseExit(t *testing.T) {
	for _, tc := range []struct {
		line string
		code int
		ok   bool
	}{
		{"KEYPLANE-LAB-EXIT abc 0", 0, true},
		{"[  1.0] noise KEYPLANE-LAB-EXIT abc 42", 42, true},
		{"KEYPLANE-LAB-EXIT abd 0", 0, false}, // another nonce: a fake
		{"KEYPLANE-LAB-EXIT abc", 0, false},
		{"KEYPLANE-LAB-EXIT abc x", 0, false},
		{"echo KEYPLANE-LAB-EXIT", 0, false},
	} {
		code, ok := parseExit(tc.line, "abc")
		if code != tc.code || ok != tc.ok {
			t.Errorf("parseExit(%q) = %d, %v; want %d, %v", tc.line, code, ok, tc.code, tc.ok)
		}
	}
}

func TestParseKernelDepends(t *testing.T) {
	out := "linux-image-amd64\n  Depends: linux-image-6.1.0-56-amd64\n"
	if got, err := parseKernelDepends(out); err != nil || got != "linux-image-6.1.0-56-amd64" {
		t.Errorf("got %q, %v", got, err)
	}
	out = "linux-image-amd64\n |Depends: linux-image-6.12.9-amd64\n  Depends: linux-image-6.12.9-amd64-unsigned\n"
	if got, err := parseKernelDepends(out); err != nil || got != "linux-image-6.12.9-amd64" {
		t.Errorf("alternatives: got %q, %v", got, err)
	}
	if _, err := parseKernelDepends("linux-image-amd64\n"); err == nil {
		t.Error("no dependency: want an error")
	}
}

func TestParseGoList(t *testing.T) {
	out := strings.Join([]string{
		"m/internal/lab\t/r/internal/lab\t1\t0\t",
		"m/internal/lab\t/r/internal/lab\t1\t0\t", // a second pattern naming it again
		"m/kernelops\t/r/kernelops\t0\t2\t",
		"m/cmd/x\t/r/cmd/x\t0\t0\t",
		"./backends/xfrm\t\t0\t0\tstat /r/backends/xfrm: directory not found",
		"m/broken\t/r/broken\t1\t0\t/r/broken/a.go:1:1: expected 'package', found foo",
	}, "\n") + "\n"
	pkgs, skipped := parseGoList(out)
	var got []string
	for _, p := range pkgs {
		got = append(got, p.ImportPath+" err="+strconv.FormatBool(p.BuildErr != nil))
	}
	if want := []string{"m/internal/lab err=false", "m/kernelops err=false", "m/broken err=true"}; !reflect.DeepEqual(got, want) {
		t.Errorf("packages = %q, want %q", got, want)
	}
	if len(skipped) != 2 || skipped[0].Pattern != "m/cmd/x" || skipped[1].Pattern != "./backends/xfrm" {
		t.Errorf("skipped = %+v", skipped)
	}
}

func TestShellJoin(t *testing.T) {
	args := []string{"printf", "%s|", "plain", "two words", "it's", `$HOME "q" \`, "", "a=b,c"}
	out, err := exec.Command("sh", "-c", ShellJoin(args)).Output()
	if err != nil {
		t.Fatal(err)
	}
	if want := `plain|two words|it's|$HOME "q" \||a=b,c|`; string(out) != want {
		t.Errorf("sh ran %q, want %q", out, want)
	}
}

// TestTestScript runs the guest script on the host with fake binaries: each
// binary runs in its package directory, results are reported per package,
// and the script's status says whether any failed.
func TestTestScript(t *testing.T) {
	dir := t.TempDir()
	mk := func(name, body string) string {
		p := dir + "/" + name
		if err := os.WriteFile(p, []byte("#!/bin/sh\n"+body+"\n"), 0o755); err != nil {
			t.Fatal(err)
		}
		return p
	}
	pkgs := []*TestPackage{
		{ImportPath: "m/a", Dir: dir, Binary: mk("a.test", `pwd; echo "args $*"; exit 0`)},
		{ImportPath: "m/b", Dir: "/", Binary: mk("b.test", "exit 3")},
		{ImportPath: "m/broken", Dir: dir, BuildErr: errors.New("no build")},
	}
	cmd := exec.Command("sh", "-c", testScript("N", pkgs, []string{"-test.v", "-test.run=X Y"}))
	out, err := cmd.Output()
	var ee *exec.ExitError
	if !errors.As(err, &ee) || ee.ExitCode() != 1 {
		t.Fatalf("script exit: %v, want status 1\n%s", err, out)
	}
	want := "KEYPLANE-LAB-BEGIN N m/a\n" + dir + "\nargs -test.v -test.run=X Y\nKEYPLANE-LAB-RESULT N m/a 0\n" +
		"KEYPLANE-LAB-BEGIN N m/b\nKEYPLANE-LAB-RESULT N m/b 3\n"
	if string(out) != want {
		t.Errorf("script output:\n%s\nwant:\n%s", out, want)
	}
}

// Boot tests start real guests: about 10s each under emulation. They run
// when KEYPLANE_LAB_BOOT=1 (make lab-selftest and make vmtest set it).
func bootLab(t *testing.T) *Lab {
	t.Helper()
	if os.Getenv("KEYPLANE_VM") == "1" {
		t.Skip("boots a qemu guest: not from inside the guest")
	}
	if os.Getenv("KEYPLANE_LAB_BOOT") != "1" {
		t.Skip("boots a qemu guest; KEYPLANE_LAB_BOOT=1 (set by make vmtest and make lab-selftest) runs it")
	}
	l, err := Prepare(FromEnv())
	if err != nil {
		t.Fatal(err)
	}
	return l
}

func TestBootExitStatus(t *testing.T) {
	l := bootLab(t)
	var console bytes.Buffer
	// A fake marker (wrong nonce) printed by the command must not count.
	res, err := l.Run(context.Background(), RunOptions{
		Script:  `echo "KEYPLANE-LAB-EXIT 0000 0"; echo "in=$KEYPLANE_VM dir=$(pwd) x=$X"; exit 7`,
		Dir:     "/usr/share",
		Env:     []string{"X=it's here"},
		Timeout: 3 * time.Minute,
		Console: &console,
	})
	if err != nil {
		t.Fatal(err)
	}
	if res.ExitCode != 7 {
		t.Errorf("exit code %d, want 7", res.ExitCode)
	}
	if !strings.Contains(console.String(), "in=1 dir=/usr/share x=it's here") {
		t.Errorf("console lacks the command's output:\n%s", console.String())
	}
	t.Logf("kernel boot %v, modules %v, root %v, command %v, total %v", res.Init, res.Modules, res.Root, res.Command, res.Total)
	if res.Init == 0 || res.Modules == 0 {
		t.Errorf("stage times missing: %+v", res)
	}
}

func TestBootTimeout(t *testing.T) {
	l := bootLab(t)
	var console bytes.Buffer
	const timeout = 30 * time.Second
	res, err := l.Run(context.Background(), RunOptions{
		Script:  "echo about to hang; sleep 600",
		Timeout: timeout,
		Console: &console,
	})
	var ge *GuestError
	if !errors.As(err, &ge) {
		t.Fatalf("err = %v, want a *GuestError", err)
	}
	// From qemu's start: the wait for a guest slot, while another run on
	// the machine holds it, does not count against the timeout.
	if res.Total > timeout+30*time.Second {
		t.Errorf("hung guest killed after %v, timeout %v", res.Total, timeout)
	}
	if !strings.Contains(ge.Reason, "timeout") || len(ge.Tail) == 0 {
		t.Errorf("report lacks the reason or the console tail:\n%v", err)
	}
	// On a loaded machine the boot may not reach the command in time; when
	// it did, its last words are in the report.
	if strings.Contains(console.String(), "about to hang") && !slices.Contains(ge.Tail, "about to hang") {
		t.Errorf("console tail lacks the command's output:\n%v", err)
	}
}

// TestRemoveStaleImages: an image another checkout prepared recently stays
// (it may be waiting for a guest slot to boot it); one unused for a day goes.
func TestRemoveStaleImages(t *testing.T) {
	dir := t.TempDir()
	now := time.Now()
	recent := filepath.Join(dir, "initramfs-recent.cpio")
	stale := filepath.Join(dir, "initramfs-stale.cpio")
	for _, p := range []string{recent, stale} {
		if err := os.WriteFile(p, []byte("x"), 0o644); err != nil {
			t.Fatal(err)
		}
	}
	old := now.Add(-staleImage - time.Minute)
	if err := os.Chtimes(stale, old, old); err != nil {
		t.Fatal(err)
	}
	removeStaleImages(dir, now)
	if _, err := os.Stat(recent); err != nil {
		t.Errorf("recent image removed: %v", err)
	}
	if _, err := os.Stat(stale); !os.IsNotExist(err) {
		t.Errorf("stale image kept: %v", err)
	}
}
