package config

import (
	"errors"
	"fmt"
	"io/fs"
	"os"
	"path/filepath"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/keyplane/keyplane/internal/secretfile"
)

// A configuration whose psk_file (line 4) is given; read from the real
// file system, as the daemon does.
func loadWithPSK(t *testing.T, pskPath string) (*Config, error) {
	t.Helper()
	dir := t.TempDir()
	src := fmt.Sprintf("connections {\n c1 {\n  local_addrs = 127.0.0.1\n  psk_file = %s\n  children {\n   ch1 {\n   }\n  }\n }\n}\n", pskPath)
	conf := filepath.Join(dir, "kp.conf")
	if err := os.WriteFile(conf, []byte(src), 0o600); err != nil {
		t.Fatal(err)
	}
	type result struct {
		cfg *Config
		err error
	}
	done := make(chan result, 1)
	go func() {
		cfg, err := Load(conf)
		done <- result{cfg, err}
	}()
	select {
	case r := <-done:
		return r.cfg, r.err
	case <-time.After(10 * time.Second):
		t.Fatalf("loading a configuration with psk_file = %s does not return", pskPath)
		return nil, nil
	}
}

func pskFile(t *testing.T, data string, mode fs.FileMode) string {
	t.Helper()
	p := filepath.Join(t.TempDir(), "k.psk")
	if err := os.WriteFile(p, []byte(data), 0o600); err != nil {
		t.Fatal(err)
	}
	if err := os.Chmod(p, mode); err != nil {
		t.Fatal(err)
	}
	return p
}

// The probes of issue 14: psk_file = /dev/urandom (the daemon grew to
// 24 GB), a FIFO, a world-readable file, an oversized one: each refused
// with the file, line and setting, and the reason.
func TestPSKFileRefused(t *testing.T) {
	fifo := filepath.Join(t.TempDir(), "fifo")
	if err := syscall.Mkfifo(fifo, 0o600); err != nil {
		t.Fatal(err)
	}
	for _, c := range []struct {
		name, path string
		want       error
		msg        string
	}{
		{"/dev/urandom", "/dev/urandom", secretfile.ErrNotRegular, "character device"},
		{"a FIFO", fifo, secretfile.ErrNotRegular, "named pipe"},
		{"a directory", t.TempDir(), secretfile.ErrNotRegular, "directory"},
		{"mode 0666", pskFile(t, "a-long-enough-secret-key", 0o666), secretfile.ErrPermissive, "mode 0666"},
		{"mode 0644", pskFile(t, "a-long-enough-secret-key", 0o644), secretfile.ErrPermissive, "mode 0644"},
		{"mode 0640", pskFile(t, "a-long-enough-secret-key", 0o640), secretfile.ErrPermissive, "mode 0640"},
		{"1 MiB", pskFile(t, strings.Repeat("k", 1<<20), 0o600), secretfile.ErrTooLarge, "1048576 bytes"},
	} {
		t.Run(c.name, func(t *testing.T) {
			cfg, err := loadWithPSK(t, c.path)
			if cfg != nil || !errors.Is(err, c.want) {
				t.Fatalf("Load = %v, %v; want %v", cfg != nil, err, c.want)
			}
			var ce *Error
			if !errors.As(err, &ce) || ce.Line != 4 || ce.Field != "psk_file" || ce.Conn != "c1" {
				t.Errorf("error %v does not name line 4, c1, psk_file", err)
			}
			if !strings.Contains(err.Error(), c.path) || !strings.Contains(err.Error(), c.msg) {
				t.Errorf("error %q lacks the path or %q", err, c.msg)
			}
		})
	}
}

func TestShortPSKWarns(t *testing.T) {
	cfg, err := loadWithPSK(t, pskFile(t, "x\n", 0o600))
	if err != nil {
		t.Fatal(err)
	}
	if string(cfg.Connections[0].PSK) != "x" {
		t.Errorf("PSK %q", []byte(cfg.Connections[0].PSK))
	}
	if len(cfg.Warnings) != 1 || cfg.Warnings[0].Line != 4 || cfg.Warnings[0].Field != "psk_file" ||
		!strings.Contains(cfg.Warnings[0].Msg, "1 bytes, shorter than 16") {
		t.Errorf("warnings %v", cfg.Warnings)
	}
	cfg, err = loadWithPSK(t, pskFile(t, "0123456789abcdef\n", 0o400))
	if err != nil || len(cfg.Warnings) != 0 {
		t.Errorf("16-byte key in a 0400 file: %v, warnings %v", err, cfg.Warnings)
	}
	// psk_env too: a short key is short wherever it comes from.
	src := "connections {\n c1 {\n  local_addrs = 127.0.0.1\n  psk_env = K\n  children {\n   ch1 {\n   }\n  }\n }\n}\n"
	cfg, err = Parse("kp.conf", []byte(src), Options{Getenv: func(string) (string, bool) { return "short", true }})
	if err != nil || len(cfg.Warnings) != 1 || cfg.Warnings[0].Field != "psk_env" {
		t.Errorf("short psk_env: %v, warnings %v", err, cfg.Warnings)
	}
}

func TestWipe(t *testing.T) {
	cfg, err := loadWithPSK(t, pskFile(t, "0123456789abcdef0123\n", 0o600))
	if err != nil {
		t.Fatal(err)
	}
	k := cfg.Connections[0].PSK
	cfg.Wipe()
	for i, b := range k {
		if b != 0 {
			t.Fatalf("byte %d of the PSK is %#x after Wipe", i, b)
		}
	}
}
