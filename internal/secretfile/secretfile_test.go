package secretfile

import (
	"errors"
	"io/fs"
	"os"
	"path/filepath"
	"strings"
	"syscall"
	"testing"
	"time"
)

func TestCheck(t *testing.T) {
	for _, c := range []struct {
		name string
		mode fs.FileMode
		size int64
		want error
	}{
		{"0600", 0o600, 10, nil},
		{"0400", 0o400, 10, nil},
		{"0700 owner exec", 0o700, 10, nil},
		{"at the cap", 0o600, 100, nil},
		{"0640 group-readable", 0o640, 10, ErrPermissive},
		{"0604 world-readable", 0o604, 10, ErrPermissive},
		{"0620 group-writable", 0o620, 10, ErrPermissive},
		{"0601 world-exec", 0o601, 10, ErrPermissive},
		{"0666", 0o666, 10, ErrPermissive},
		{"over the cap", 0o600, 101, ErrTooLarge},
		{"char device", fs.ModeDevice | fs.ModeCharDevice | 0o600, 0, ErrNotRegular},
		{"block device", fs.ModeDevice | 0o600, 0, ErrNotRegular},
		{"fifo", fs.ModeNamedPipe | 0o600, 0, ErrNotRegular},
		{"dir", fs.ModeDir | 0o700, 0, ErrNotRegular},
		{"socket", fs.ModeSocket | 0o600, 0, ErrNotRegular},
		{"not regular beats permissive", fs.ModeNamedPipe | 0o666, 0, ErrNotRegular},
	} {
		if got := Check(c.mode, c.size, 100); got != c.want {
			t.Errorf("%s: Check(%v, %d) = %v, want %v", c.name, c.mode, c.size, got, c.want)
		}
	}
}

func write(t *testing.T, name string, data []byte, mode fs.FileMode) string {
	t.Helper()
	p := filepath.Join(t.TempDir(), name)
	if err := os.WriteFile(p, data, 0o600); err != nil {
		t.Fatal(err)
	}
	if err := os.Chmod(p, mode); err != nil { // WriteFile's mode passes the umask
		t.Fatal(err)
	}
	return p
}

func TestRead(t *testing.T) {
	good := write(t, "good.psk", []byte("a secret\n"), 0o600)
	link := filepath.Join(t.TempDir(), "link.psk")
	if err := os.Symlink(good, link); err != nil {
		t.Fatal(err)
	}
	fifo := filepath.Join(t.TempDir(), "fifo")
	if err := syscall.Mkfifo(fifo, 0o600); err != nil {
		t.Fatal(err)
	}
	for _, c := range []struct {
		name, path string
		want       error
		detail     string
	}{
		{"regular 0600", good, nil, ""},
		{"symlink to a 0600 file", link, nil, ""},
		{"0400", write(t, "ro.psk", []byte("x"), 0o400), nil, ""},
		{"0644", write(t, "wide.psk", []byte("x"), 0o644), ErrPermissive, "mode 0644"},
		{"0666", write(t, "world.psk", []byte("x"), 0o666), ErrPermissive, "mode 0666"},
		{"0640", write(t, "group.psk", []byte("x"), 0o640), ErrPermissive, "chmod go="},
		{"/dev/urandom", "/dev/urandom", ErrNotRegular, "character device"},
		{"/dev/zero", "/dev/zero", ErrNotRegular, "character device"},
		{"a FIFO with no writer", fifo, ErrNotRegular, "named pipe"},
		{"a directory", t.TempDir(), ErrNotRegular, "directory"},
		{"over the cap", write(t, "big.psk", make([]byte, DefaultMaxSize+1), 0o600), ErrTooLarge, "65537 bytes"},
		{"missing", filepath.Join(t.TempDir(), "nope"), fs.ErrNotExist, ""},
	} {
		t.Run(c.name, func(t *testing.T) {
			done := make(chan struct{})
			var data []byte
			var err error
			go func() { defer close(done); data, err = Read(c.path, Options{}) }()
			select {
			case <-done:
			case <-time.After(5 * time.Second):
				t.Fatalf("Read(%s) blocks", c.path)
			}
			if c.want == nil {
				if err != nil || len(data) == 0 {
					t.Fatalf("Read = %q, %v", data, err)
				}
				return
			}
			if !errors.Is(err, c.want) {
				t.Fatalf("Read = %d bytes, %v; want %v", len(data), err, c.want)
			}
			var se *Error
			if !errors.As(err, &se) || se.Path != c.path || !strings.Contains(err.Error(), c.path) {
				t.Errorf("error %v does not name the path %s", err, c.path)
			}
			if !strings.Contains(err.Error(), c.detail) {
				t.Errorf("error %q lacks %q", err, c.detail)
			}
			if data != nil {
				t.Errorf("refused, yet %d bytes returned", len(data))
			}
		})
	}
}

func TestReadCap(t *testing.T) {
	p := write(t, "k", []byte("0123456789"), 0o600)
	if _, err := Read(p, Options{MaxSize: 10}); err != nil {
		t.Errorf("10 bytes at a cap of 10: %v", err)
	}
	if _, err := Read(p, Options{MaxSize: 9}); !errors.Is(err, ErrTooLarge) {
		t.Errorf("10 bytes at a cap of 9: %v", err)
	}
}
