package vmlab

import (
	"bufio"
	"debug/elf"
	"fmt"
	"io/fs"
	"os"
	"path/filepath"
	"strings"
)

// Modules are the kernel modules the guest loads, in this order, each after
// its dependencies. depends= only names modules whose symbols a module uses;
// crypto algorithms and templates are found at run time through
// request_module, which has no modprobe and no modules.dep in the guest, so
// every algorithm an SA may name is listed here. A name ending in "?" is
// optional: absent from the kernel, it is left out without an error. A name
// built into the kernel (modules.builtin) needs no loading and is skipped.
var Modules = []string{
	// Boot: the host's filesystem over virtio-9p with a tmpfs overlay, and
	// entropy for the guest's CRNG (Go's crypto/rand blocks until it is ready).
	"virtio_pci", "9pnet_virtio", "9p", "overlay", "virtio_rng",

	// Crypto, primitives before the templates and RNGs that use them at
	// registration (their self-tests allocate them): drbg tests ctr(aes) and
	// hmac(sha512), gcm needs ghash and ctr, rfc7539 needs chacha20 and
	// poly1305. drbg is the default RNG seqiv and echainiv need; without it
	// ESP fails with "Kernel was unable to initialize cryptographic
	// operations". jitterentropy_rng is left out: its health test fails under
	// emulation (insmod errors) and drbg runs without it.
	// AES, CBC, HMAC, SHA-1/256, MD5 and deflate are built into Debian's kernel.
	"aes_generic", "cbc", "hmac", "sha1_generic", "sha256_generic", "md5", "deflate",
	"sha512_generic", "ctr", "ecb", "gf128mul", "ghash_generic",
	"chacha_generic", "poly1305_generic", "des_generic", "crypto_null", "cmac", "xcbc",
	"drbg", "seqiv", "echainiv", "authenc", "authencesn", "gcm", "ccm", "chacha20poly1305",
	"crypto_user?",
	// The rest of what XFRM's algorithm tables name, so that what the guest
	// offers (af_key's SADB_REGISTER reply, netlink SAs) matches a Debian
	// system where modprobe would load them on demand.
	"rmd160?", "cast5_generic?", "blowfish_generic?", "serpent_generic?",
	"camellia_generic?", "twofish_generic?", "sm3_generic?", "sm4_generic?",

	// XFRM netlink and PF_KEY v2.
	"xfrm_user", "af_key",

	// IPsec protocols and tunnel handlers (IPcomp uses them for small packets).
	"esp4", "esp6", "ah4", "ah6", "ipcomp", "ipcomp6", "xfrm4_tunnel", "xfrm6_tunnel",
	"tunnel4", "tunnel6",

	// Links the tests build.
	"veth", "dummy", "tun", "xfrm_interface", "ip_vti", "ip6_vti",
	// One segment for the HA failover test's two gateways and their peer.
	"bridge",

	// A NAT between two namespaces (nft masquerade) and conntrack -F
	// (ctnetlink), for the NAT-T interop tests. libcrc32c (nf_nat's)
	// asks for the crc32c algorithm at load, by a softdep on an alias:
	// crc32c_generic provides it.
	"crc32c_generic", "nf_tables", "nft_chain_nat", "nft_nat", "nft_masq", "nft_ct", "nf_conntrack_netlink",
}

// modName normalizes a module name as the kernel does: '-' and '_' are the same.
func modName(s string) string { return strings.ReplaceAll(s, "-", "_") }

// modinfo is what the lab reads from a module's .modinfo section.
type modinfo struct {
	name    string
	depends []string // hard dependencies (depends=)
	softpre []string // softdep=pre: modules, loaded first when present
}

// parseModinfo decodes a .modinfo section: NUL-separated key=value strings.
func parseModinfo(data []byte) modinfo {
	var mi modinfo
	for kv := range strings.SplitSeq(string(data), "\x00") {
		k, v, ok := strings.Cut(kv, "=")
		if !ok {
			continue
		}
		switch k {
		case "name":
			mi.name = modName(v)
		case "depends":
			for d := range strings.SplitSeq(v, ",") {
				if d = strings.TrimSpace(d); d != "" {
					mi.depends = append(mi.depends, modName(d))
				}
			}
		case "softdep":
			// "pre: a b post: c"
			pre := false
			for f := range strings.FieldsSeq(v) {
				switch f {
				case "pre:":
					pre = true
				case "post:":
					pre = false
				default:
					if pre {
						mi.softpre = append(mi.softpre, modName(f))
					}
				}
			}
		}
	}
	return mi
}

// readModinfo reads the .modinfo section of a .ko file.
func readModinfo(path string) (modinfo, error) {
	f, err := elf.Open(path)
	if err != nil {
		return modinfo{}, err
	}
	defer f.Close()
	s := f.Section(".modinfo")
	if s == nil {
		return modinfo{}, fmt.Errorf("%s: no .modinfo section", path)
	}
	data, err := s.Data()
	if err != nil {
		return modinfo{}, fmt.Errorf("%s: .modinfo: %w", path, err)
	}
	return parseModinfo(data), nil
}

// moduleTree indexes an unpacked lib/modules/<version> directory.
type moduleTree struct {
	dir     string
	paths   map[string]string // module name -> .ko path
	builtin map[string]bool   // module names built into the kernel
	info    map[string]modinfo
}

func openModuleTree(dir string) (*moduleTree, error) {
	mt := &moduleTree{dir: dir, paths: map[string]string{}, builtin: map[string]bool{}, info: map[string]modinfo{}}
	err := filepath.WalkDir(filepath.Join(dir, "kernel"), func(p string, d fs.DirEntry, err error) error {
		if err != nil {
			return err
		}
		if !d.IsDir() && strings.HasSuffix(p, ".ko") {
			mt.paths[modName(strings.TrimSuffix(d.Name(), ".ko"))] = p
		}
		return nil
	})
	if err != nil {
		return nil, fmt.Errorf("index modules: %w", err)
	}
	if len(mt.paths) == 0 {
		return nil, fmt.Errorf("no .ko files under %s (compressed modules are not supported)", dir)
	}
	f, err := os.Open(filepath.Join(dir, "modules.builtin"))
	if err != nil {
		return nil, err
	}
	defer f.Close()
	sc := bufio.NewScanner(f)
	for sc.Scan() {
		// kernel/crypto/cbc.ko
		base := filepath.Base(strings.TrimSpace(sc.Text()))
		mt.builtin[modName(strings.TrimSuffix(base, ".ko"))] = true
	}
	return mt, sc.Err()
}

func (mt *moduleTree) modinfo(name string) (modinfo, error) {
	if mi, ok := mt.info[name]; ok {
		return mi, nil
	}
	mi, err := readModinfo(mt.paths[name])
	if err != nil {
		return mi, err
	}
	if mi.name != "" && mi.name != name {
		return mi, fmt.Errorf("module file %s says name=%s", mt.paths[name], mi.name)
	}
	mt.info[name] = mi
	return mi, nil
}

// resolve returns the .ko paths to insmod, in load order, for roots.
func (mt *moduleTree) resolve(roots []string) ([]string, error) {
	names, err := loadOrder(roots, func(name string) (deps []string, builtin bool, err error) {
		if mt.builtin[name] {
			return nil, true, nil
		}
		if _, ok := mt.paths[name]; !ok {
			return nil, false, errNoModule
		}
		mi, err := mt.modinfo(name)
		if err != nil {
			return nil, false, err
		}
		// Soft pre-dependencies that exist are loaded first; missing ones
		// are not an error (the kernel treats them the same way).
		for _, s := range mi.softpre {
			if _, ok := mt.paths[s]; ok || mt.builtin[s] {
				deps = append(deps, s)
			}
		}
		return append(deps, mi.depends...), false, nil
	})
	if err != nil {
		return nil, err
	}
	paths := make([]string, len(names))
	for i, n := range names {
		paths[i] = mt.paths[n]
	}
	return paths, nil
}

var errNoModule = fmt.Errorf("no such module")

// loadOrder orders the closure of roots under deps so that every module
// comes after its dependencies, keeping the roots' order otherwise. deps
// reports a module's dependencies, whether it is built in (then it is left
// out), or errNoModule. Roots ending in "?" may be missing.
func loadOrder(roots []string, deps func(string) ([]string, bool, error)) ([]string, error) {
	const (
		visiting = 1
		done     = 2
	)
	state := map[string]int{}
	var order []string
	var visit func(name string, path []string) error
	visit = func(name string, path []string) error {
		switch state[name] {
		case done:
			return nil
		case visiting:
			return fmt.Errorf("module dependency cycle: %s -> %s", strings.Join(path, " -> "), name)
		}
		state[name] = visiting
		ds, builtin, err := deps(name)
		if err != nil {
			if len(path) > 0 {
				return fmt.Errorf("module %s (needed by %s): %w", name, path[len(path)-1], err)
			}
			return fmt.Errorf("module %s: %w", name, err)
		}
		for _, d := range ds {
			if err := visit(d, append(path, name)); err != nil {
				return err
			}
		}
		state[name] = done
		if !builtin {
			order = append(order, name)
		}
		return nil
	}
	for _, r := range roots {
		name, optional := strings.CutSuffix(r, "?")
		name = modName(name)
		if optional {
			if _, _, err := deps(name); err == errNoModule {
				continue
			}
		}
		if err := visit(name, nil); err != nil {
			return nil, err
		}
	}
	return order, nil
}
