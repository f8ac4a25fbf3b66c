package vmlab

import (
	"bytes"
	"crypto/sha256"
	_ "embed"
	"encoding/hex"
	"fmt"
	"io"
	"os"
	"path/filepath"
	"strings"
	"time"
)

//go:embed guest/init.sh
var initScript []byte

//go:embed guest/stage2.sh
var stage2Script []byte

// cpioWriter writes a "newc" cpio archive, the format the kernel unpacks as
// an initramfs. Entries are written with uid/gid 0 and mtime 0, so the same
// input gives the same bytes.
type cpioWriter struct {
	w   io.Writer
	ino uint32
	n   int64
	err error
}

const (
	modeDir  = 0o040000
	modeFile = 0o100000
	modeLink = 0o120000
	modeChar = 0o020000
)

func (c *cpioWriter) write(p []byte) {
	if c.err != nil {
		return
	}
	n, err := c.w.Write(p)
	c.n += int64(n)
	c.err = err
}

func (c *cpioWriter) pad() {
	if r := c.n % 4; r != 0 {
		c.write(make([]byte, 4-r))
	}
}

func (c *cpioWriter) entry(name string, mode uint32, rdevMajor, rdevMinor uint32, data []byte) {
	c.ino++
	nlink := uint32(1)
	if mode&0o170000 == modeDir {
		nlink = 2
	}
	hdr := fmt.Sprintf("070701%08x%08x%08x%08x%08x%08x%08x%08x%08x%08x%08x%08x%08x",
		c.ino, mode, 0, 0, nlink, 0, len(data), 0, 0, rdevMajor, rdevMinor, len(name)+1, 0)
	c.write([]byte(hdr))
	c.write([]byte(name))
	c.write([]byte{0})
	c.pad()
	c.write(data)
	c.pad()
}

func (c *cpioWriter) Dir(name string) { c.entry(name, modeDir|0o755, 0, 0, nil) }
func (c *cpioWriter) File(name string, perm uint32, data []byte) {
	c.entry(name, modeFile|perm, 0, 0, data)
}
func (c *cpioWriter) Symlink(name, target string) {
	c.entry(name, modeLink|0o777, 0, 0, []byte(target))
}
func (c *cpioWriter) CharDev(name string, perm, major, minor uint32) {
	c.entry(name, modeChar|perm, major, minor, nil)
}

// Close writes the trailer.
func (c *cpioWriter) Close() error {
	c.ino = 0
	c.entry("TRAILER!!!", 0, 0, 0, nil)
	return c.err
}

// buildInitramfs writes the lab's initramfs: busybox, the modules (in load
// order, listed in modules.order) and the two init stages.
func buildInitramfs(w io.Writer, busybox []byte, modules []string) error {
	c := &cpioWriter{w: w}
	for _, d := range []string{"bin", "dev", "proc", "sys", "mnt", "lib", "lib/keyplane-lab", "lib/keyplane-lab/modules"} {
		c.Dir(d)
	}
	c.CharDev("dev/console", 0o600, 5, 1)
	c.CharDev("dev/null", 0o666, 1, 3)
	c.File("bin/busybox", 0o755, busybox)
	c.File("init", 0o755, initScript)
	c.File("lib/keyplane-lab/stage2", 0o755, stage2Script)
	var order strings.Builder
	for i, path := range modules {
		data, err := os.ReadFile(path)
		if err != nil {
			return err
		}
		name := fmt.Sprintf("%03d-%s", i, filepath.Base(path))
		c.File("lib/keyplane-lab/modules/"+name, 0o644, data)
		order.WriteString(name + "\n")
	}
	c.File("lib/keyplane-lab/modules.order", 0o644, []byte(order.String()))
	return c.Close()
}

// initramfs returns the path of the cached initramfs for the kernel at k,
// building it when its inputs (busybox, module list and contents, the init
// scripts) changed.
func initramfs(k *kernel, busyboxPath string, logf func(string, ...any)) (string, error) {
	busybox, err := os.ReadFile(busyboxPath)
	if err != nil {
		return "", fmt.Errorf("busybox: %w", err)
	}
	mt, err := openModuleTree(k.modDir)
	if err != nil {
		return "", err
	}
	mods, err := mt.resolve(Modules)
	if err != nil {
		return "", err
	}
	var buf bytes.Buffer
	if err := buildInitramfs(&buf, busybox, mods); err != nil {
		return "", err
	}
	sum := sha256.Sum256(buf.Bytes())
	path := filepath.Join(k.dir, "initramfs-"+hex.EncodeToString(sum[:8])+".cpio")
	now := time.Now()
	if _, err := os.Stat(path); err == nil {
		os.Chtimes(path, now, now) // in use: see removeStaleImages
		return path, nil
	}
	removeStaleImages(k.dir, now)
	if err := writeFileAtomic(path, buf.Bytes()); err != nil {
		return "", err
	}
	names := make([]string, len(mods))
	for i, m := range mods {
		names[i] = strings.TrimSuffix(filepath.Base(m), ".ko")
	}
	logf("vmlab: initramfs %s: %d modules: %s", filepath.Base(path), len(mods), strings.Join(names, " "))
	return path, nil
}

// staleImage is how long an initramfs image built from other inputs is
// kept after its last use. Images are not removed at once: another
// checkout of the project (another branch, its own module list) may have
// prepared one and be waiting for a guest slot to boot it.
const staleImage = 24 * time.Hour

// removeStaleImages removes the images in dir not used for staleImage.
func removeStaleImages(dir string, now time.Time) {
	old, _ := filepath.Glob(filepath.Join(dir, "initramfs-*.cpio"))
	for _, o := range old {
		if fi, err := os.Stat(o); err == nil && now.Sub(fi.ModTime()) > staleImage {
			os.Remove(o)
		}
	}
}

func writeFileAtomic(path string, data []byte) error {
	tmp := fmt.Sprintf("%s.tmp%d", path, os.Getpid())
	if err := os.WriteFile(tmp, data, 0o644); err != nil {
		return err
	}
	return os.Rename(tmp, path)
}
