package vmlab_test

// The lab's self-test: run in the guest by `make vmtest` and
// `make lab-selftest`, it proves the guest is what the other suites assume.
// On the host every test here skips (lab.RequireVM); in the guest a missing
// feature fails.

import (
	"context"
	"crypto/rand"
	"encoding/binary"
	"errors"
	"fmt"
	"maps"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"slices"
	"strconv"
	"strings"
	"testing"
	"time"

	"golang.org/x/sys/unix"

	"github.com/keyplane/keyplane/internal/lab"
	"github.com/keyplane/keyplane/internal/vmlab"
)

// ESP algorithm arguments for `ip xfrm state add` (fixed test keys).
var (
	algGCM = []string{"aead", "rfc4106(gcm(aes))", "0x" + strings.Repeat("11", 20), "128"}
	algCBC = []string{"enc", "cbc(aes)", "0x" + strings.Repeat("22", 16),
		"auth-trunc", "hmac(sha256)", "0x" + strings.Repeat("33", 32), "128"}
	algChaCha = []string{"aead", "rfc7539esp(chacha20,poly1305)", "0x" + strings.Repeat("44", 36), "128"}
)

func TestGuestModulesLoaded(t *testing.T) {
	lab.RequireVM(t, "lab self-test: guest modules")
	data, err := os.ReadFile("/proc/modules")
	if err != nil {
		t.Fatal(err)
	}
	loaded := map[string]bool{}
	for line := range strings.Lines(string(data)) {
		if f := strings.Fields(line); len(f) > 0 {
			loaded[f[0]] = true
		}
	}
	for _, m := range []string{"xfrm_user", "af_key", "esp4", "esp6", "ah4", "ah6", "ipcomp", "ipcomp6",
		"xfrm_interface", "veth", "dummy", "9p", "overlay", "drbg", "gcm", "ghash_generic",
		"chacha20poly1305", "authenc", "seqiv", "echainiv"} {
		if !loaded[m] {
			t.Errorf("module %s not loaded in the guest", m)
		}
	}
	if want := os.Getenv(vmlab.EnvKernel); want != "" {
		var u unix.Utsname
		if err := unix.Uname(&u); err != nil {
			t.Fatal(err)
		}
		if got := unix.ByteSliceToString(u.Release[:]); got != want {
			t.Errorf("guest kernel %s, the host unpacked %s", got, want)
		}
	}
}

func TestGuestEnvironment(t *testing.T) {
	lab.RequireVM(t, "lab self-test: guest filesystems")
	if os.Geteuid() != 0 {
		t.Fatalf("guest runs as uid %d, want root", os.Geteuid())
	}
	var st unix.Statfs_t
	if err := unix.Statfs("/run", &st); err != nil || st.Type != unix.TMPFS_MAGIC {
		t.Errorf("/run is not a fresh tmpfs (type %#x, err %v)", st.Type, err)
	}
	if err := unix.Statfs("/", &st); err != nil || st.Type != unix.OVERLAYFS_SUPER_MAGIC {
		t.Errorf("/ is not the overlay (type %#x, err %v)", st.Type, err)
	}
	if p, err := filepath.EvalSymlinks("/var/run/netns"); err != nil || p != "/run/netns" {
		t.Errorf("/var/run/netns -> %q (%v), want /run/netns", p, err)
	}
	// The root is writable (the overlay's upper layer) and so is /tmp.
	for _, dir := range []string{"/", os.TempDir(), "/dev/shm"} {
		f, err := os.CreateTemp(dir, "keyplane-lab-*")
		if err != nil {
			t.Errorf("%s not writable: %v", dir, err)
			continue
		}
		f.Close()
		os.Remove(f.Name())
	}
	// Host binaries the suites use come through the host root.
	for _, bin := range []string{"ip", "ping", "swanctl", "/usr/lib/ipsec/charon"} {
		if _, err := exec.LookPath(bin); err != nil {
			t.Errorf("%s not available in the guest: %v", bin, err)
		}
	}
	// charon's shared libraries resolve (strongSwan plugins come from the host too).
	if out, err := exec.Command("ldd", "/usr/lib/ipsec/charon").CombinedOutput(); err != nil || strings.Contains(string(out), "not found") {
		t.Errorf("ldd charon: %v\n%s", err, out)
	}
	// The guest's CRNG must be ready: Go's crypto/rand blocks until it is.
	done := make(chan error, 1)
	go func() { _, err := rand.Read(make([]byte, 32)); done <- err }()
	select {
	case err := <-done:
		if err != nil {
			t.Errorf("crypto/rand: %v", err)
		}
	case <-time.After(10 * time.Second):
		t.Error("crypto/rand blocked for 10s: the guest has no entropy")
	}
}

func TestGuestClock(t *testing.T) {
	lab.RequireVM(t, "lab self-test: guest clock")
	ns, err := strconv.ParseInt(os.Getenv(vmlab.EnvHostTime), 10, 64)
	if err != nil {
		t.Fatalf("%s: %v", vmlab.EnvHostTime, err)
	}
	host := time.Unix(0, ns)
	// The guest starts from the host's clock (qemu's RTC) and this test runs
	// within minutes of the start; a guest in 1970 or a day off fails here.
	if d := time.Since(host); d < -5*time.Second || d > 30*time.Minute {
		t.Fatalf("guest clock %v is %v from the host's %v at the start of the run", time.Now(), d, host)
	}
	// Wall and monotonic clocks advance at the real rate.
	t0 := time.Now()
	var ts0, ts1 unix.Timespec
	unix.ClockGettime(unix.CLOCK_REALTIME, &ts0)
	time.Sleep(500 * time.Millisecond)
	unix.ClockGettime(unix.CLOCK_REALTIME, &ts1)
	mono, wall := time.Since(t0), time.Duration(ts1.Nano()-ts0.Nano())
	if mono < 450*time.Millisecond || mono > time.Minute || wall < 450*time.Millisecond || wall > time.Minute {
		t.Fatalf("a 500ms sleep took %v (monotonic), %v (wall)", mono, wall)
	}
}

func TestGuestESPStates(t *testing.T) {
	lab.RequireVM(t, "lab self-test: ESP states need esp4/esp6 and the crypto modules")
	ns := lab.NewNS(t)
	for i, tc := range []struct {
		name string
		alg  []string
	}{{"rfc4106(gcm(aes))", algGCM}, {"cbc(aes)+hmac(sha256)", algCBC}, {"rfc7539esp(chacha20,poly1305)", algChaCha}} {
		args := append([]string{"ip", "xfrm", "state", "add", "src", "192.0.2.1", "dst", "192.0.2.2",
			"proto", "esp", "spi", fmt.Sprint(0x100 + i), "mode", "tunnel"}, tc.alg...)
		if _, err := ns.Run(args...); err != nil {
			t.Errorf("ESP state with %s: %v", tc.name, err)
		}
	}
	out := ns.Exec(t, "ip", "xfrm", "state", "list")
	for _, want := range []string{"rfc4106(gcm(aes))", "cbc(aes)", "hmac(sha256)", "rfc7539esp(chacha20,poly1305)"} {
		if !strings.Contains(out, want) {
			t.Errorf("ip xfrm state list lacks %s:\n%s", want, out)
		}
	}
	// AH and IPcomp states install too.
	if _, err := ns.Run("ip", "xfrm", "state", "add", "src", "192.0.2.1", "dst", "192.0.2.2",
		"proto", "ah", "spi", "0x200", "auth", "hmac(sha256)", "0x"+strings.Repeat("55", 32)); err != nil {
		t.Errorf("AH state: %v", err)
	}
	if _, err := ns.Run("ip", "xfrm", "state", "add", "src", "192.0.2.1", "dst", "192.0.2.2",
		"proto", "comp", "spi", "0x300", "comp", "deflate"); err != nil {
		t.Errorf("IPcomp state: %v", err)
	}
}

// sadbMsg is struct sadb_msg (RFC 2367), in host byte order.
type sadbMsg struct {
	Version, Type, Errno, Satype uint8
	Len                          uint16 // in 64-bit words
	Reserved                     uint16
	Seq, Pid                     uint32
}

const (
	pfKeyV2      = 2
	sadbRegister = 7
	sadbFlush    = 9
	sadbDump     = 10
	sadbSatypES  = 3 // SADB_SATYPE_ESP

	sadbExtSupportedAuth    = 14
	sadbExtSupportedEncrypt = 15
)

func pfkeyRequest(fd int, typ, satype uint8, seq uint32) error {
	b, _ := binary.Append(nil, binary.NativeEndian, sadbMsg{Version: pfKeyV2, Type: typ, Satype: satype, Len: 2, Seq: seq, Pid: uint32(os.Getpid())})
	_, err := unix.Write(fd, b)
	return err
}

// pfkeyNext reads the next PF_KEY message addressed to this process.
func pfkeyNext(t *testing.T, fd int) sadbMsg {
	m, _ := pfkeyNextRaw(t, fd)
	return m
}

// pfkeyNextRaw is pfkeyNext with the whole message.
func pfkeyNextRaw(t *testing.T, fd int) (sadbMsg, []byte) {
	t.Helper()
	buf := make([]byte, 1<<16)
	deadline := time.Now().Add(5 * time.Second)
	for time.Now().Before(deadline) {
		n, err := unix.Read(fd, buf)
		if errors.Is(err, unix.EAGAIN) || errors.Is(err, unix.EINTR) {
			time.Sleep(10 * time.Millisecond)
			continue
		}
		if err != nil {
			t.Fatalf("read PF_KEY: %v", err)
		}
		var m sadbMsg
		if _, err := binary.Decode(buf[:n], binary.NativeEndian, &m); err != nil {
			t.Fatalf("short PF_KEY message (%d bytes): %v", n, err)
		}
		if m.Pid == uint32(os.Getpid()) {
			return m, append([]byte(nil), buf[:n]...)
		}
	}
	t.Fatal("no PF_KEY reply within 5s")
	return sadbMsg{}, nil
}

// supportedAlgs decodes the SADB_EXT_SUPPORTED_AUTH and _ENCRYPT extensions
// of a SADB_REGISTER reply into algorithm ids.
func supportedAlgs(t *testing.T, msg []byte) (auth, enc map[uint8]bool) {
	auth, enc = map[uint8]bool{}, map[uint8]bool{}
	for off := 16; off+4 <= len(msg); {
		extLen := int(binary.NativeEndian.Uint16(msg[off:])) * 8
		typ := binary.NativeEndian.Uint16(msg[off+2:])
		if extLen < 8 || off+extLen > len(msg) {
			t.Fatalf("bad extension at %d: len %d", off, extLen)
		}
		if typ == sadbExtSupportedAuth || typ == sadbExtSupportedEncrypt {
			set := auth
			if typ == sadbExtSupportedEncrypt {
				set = enc
			}
			for a := off + 8; a+8 <= off+extLen; a += 8 { // struct sadb_alg, 8 bytes
				set[msg[a]] = true
			}
		}
		off += extLen
	}
	return auth, enc
}

func TestGuestPFKey(t *testing.T) {
	lab.RequireVM(t, "lab self-test: PF_KEY needs af_key")
	ns := lab.NewNS(t)
	// Two SAs added over netlink must be visible through PF_KEY.
	for i, dst := range []string{"192.0.2.2", "192.0.2.3"} {
		args := append([]string{"ip", "xfrm", "state", "add", "src", "192.0.2.1", "dst", dst,
			"proto", "esp", "spi", fmt.Sprint(0x400 + i), "mode", "tunnel"}, algCBC...)
		ns.Exec(t, args...)
	}
	var fd int
	err := ns.Do(func() (err error) {
		fd, err = unix.Socket(unix.AF_KEY, unix.SOCK_RAW|unix.SOCK_NONBLOCK|unix.SOCK_CLOEXEC, pfKeyV2)
		return err
	})
	if err != nil {
		t.Fatalf("PF_KEY socket: %v", err)
	}
	defer unix.Close(fd)

	// SADB_REGISTER lists what the kernel can do: every algorithm XFRM can
	// reach over PF_KEY must be loaded in the guest (no modprobe there).
	if err := pfkeyRequest(fd, sadbRegister, sadbSatypES, 3); err != nil {
		t.Fatalf("SADB_REGISTER: %v", err)
	}
	m, raw := pfkeyNextRaw(t, fd)
	if m.Type != sadbRegister || m.Errno != 0 {
		t.Fatalf("SADB_REGISTER reply: %+v", m)
	}
	auth, enc := supportedAlgs(t, raw)
	t.Logf("SADB_REGISTER: auth %v, encrypt %v", slices.Sorted(maps.Keys(auth)), slices.Sorted(maps.Keys(enc)))
	for name, id := range map[string]uint8{"hmac(md5)": 2, "hmac(sha1)": 3, "hmac(sha256)": 5, "hmac(sha384)": 6,
		"hmac(sha512)": 7, "hmac(rmd160)": 8, "xcbc(aes)": 9} {
		if !auth[id] {
			t.Errorf("SADB_REGISTER lacks auth %s (%d)", name, id)
		}
	}
	for name, id := range map[string]uint8{"cbc(des)": 2, "cbc(des3_ede)": 3, "cbc(cast5)": 6, "cbc(blowfish)": 7,
		"ecb(cipher_null)": 11, "cbc(aes)": 12, "rfc3686(ctr(aes))": 13, "cbc(camellia)": 22,
		"cbc(serpent)": 252, "cbc(twofish)": 253} {
		if !enc[id] {
			t.Errorf("SADB_REGISTER lacks encryption %s (%d)", name, id)
		}
	}

	if err := pfkeyRequest(fd, sadbDump, sadbSatypES, 1); err != nil {
		t.Fatalf("SADB_DUMP: %v", err)
	}
	// Linux numbers dump messages count+1 and ends the dump with seq 0.
	dumped := 0
	for {
		m := pfkeyNext(t, fd)
		if m.Type != sadbDump || m.Errno != 0 {
			t.Fatalf("SADB_DUMP reply type %d errno %d", m.Type, m.Errno)
		}
		dumped++
		if m.Seq == 0 || dumped > 10 {
			break
		}
	}
	if dumped != 2 {
		t.Errorf("SADB_DUMP returned %d SAs, want the 2 added over netlink", dumped)
	}

	if err := pfkeyRequest(fd, sadbFlush, 0, 2); err != nil {
		t.Fatalf("SADB_FLUSH: %v", err)
	}
	if m := pfkeyNext(t, fd); m.Type != sadbFlush || m.Errno != 0 || m.Seq != 2 {
		t.Fatalf("SADB_FLUSH reply: %+v", m)
	}
	if out := ns.Exec(t, "ip", "xfrm", "state", "list"); strings.TrimSpace(out) != "" {
		t.Errorf("SAs left after SADB_FLUSH:\n%s", out)
	}
}

// xfrmCounters parses `ip -s xfrm state` output: bytes and packets per
// "src X dst Y" block (one SA each).
var countersRE = regexp.MustCompile(`(\d+)\(bytes\), (\d+)\(packets\)`)

func xfrmCounters(out string) map[string][2]uint64 {
	res := map[string][2]uint64{}
	var cur string
	lifetime := false
	for line := range strings.Lines(out) {
		if strings.HasPrefix(line, "src ") {
			cur, lifetime = strings.TrimSpace(line), false
			continue
		}
		if strings.Contains(line, "lifetime current:") {
			lifetime = true
			continue
		}
		if m := countersRE.FindStringSubmatch(line); lifetime && m != nil && cur != "" {
			b, _ := strconv.ParseUint(m[1], 10, 64)
			p, _ := strconv.ParseUint(m[2], 10, 64)
			res[cur] = [2]uint64{b, p}
			lifetime = false
		}
	}
	return res
}

func TestGuestTunnelPing(t *testing.T) {
	lab.RequireVM(t, "lab self-test: ping through a tunnel-mode ESP SA pair")
	p := lab.NewPair(t)
	for _, tc := range []struct {
		name       string
		a, b, mask string
		alg        []string
		ping       string
	}{
		{"ipv4-gcm", p.A4.String(), p.B4.String(), "32", algGCM, "-4"},
		{"ipv6-cbc-hmac", p.A6.String(), p.B6.String(), "128", algCBC, "-6"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			// Both namespaces hold both SAs; each has out and in policies.
			for _, side := range []struct {
				ns       *lab.NS
				src, dst string
			}{{p.A, tc.a, tc.b}, {p.B, tc.b, tc.a}} {
				for _, sa := range [][2]string{{tc.a, tc.b}, {tc.b, tc.a}} {
					spi := "0x1001"
					if sa[0] == tc.b {
						spi = "0x1002"
					}
					side.ns.Exec(t, append([]string{"ip", "xfrm", "state", "add", "src", sa[0], "dst", sa[1],
						"proto", "esp", "spi", spi, "reqid", "7", "mode", "tunnel"}, tc.alg...)...)
				}
				for _, pol := range []struct{ dir, src, dst string }{{"out", side.src, side.dst}, {"in", side.dst, side.src}} {
					side.ns.Exec(t, "ip", "xfrm", "policy", "add", "src", pol.src+"/"+tc.mask, "dst", pol.dst+"/"+tc.mask,
						"dir", pol.dir, "tmpl", "src", pol.src, "dst", pol.dst, "proto", "esp", "reqid", "7", "mode", "tunnel")
				}
			}
			out := p.A.Exec(t, "ping", tc.ping, "-c", "3", "-i", "0.2", "-W", "5", tc.b)
			t.Logf("%s", out)
			for _, side := range []*lab.NS{p.A, p.B} {
				st := side.Exec(t, "ip", "-s", "xfrm", "state")
				counters := xfrmCounters(st)
				for _, key := range []string{"src " + tc.a + " dst " + tc.b, "src " + tc.b + " dst " + tc.a} {
					c, ok := counters[key]
					if !ok {
						t.Fatalf("%s: no SA %q in ip -s xfrm state:\n%s", side.Name, key, st)
					}
					if c[0] == 0 || c[1] < 3 {
						t.Errorf("%s: SA %s counted %d bytes, %d packets; want >0 bytes, >=3 packets\n%s", side.Name, key, c[0], c[1], st)
					}
				}
			}
			// Clean for the next family.
			for _, side := range []*lab.NS{p.A, p.B} {
				side.Exec(t, "ip", "xfrm", "policy", "flush")
				side.Exec(t, "ip", "xfrm", "state", "flush")
			}
		})
	}
}

func TestGuestLinks(t *testing.T) {
	lab.RequireVM(t, "lab self-test: dummy and xfrm interfaces")
	ns := lab.NewNS(t)
	ns.Exec(t, "ip", "link", "add", "dummy0", "type", "dummy")
	ns.Exec(t, "ip", "link", "add", "ipsec7", "type", "xfrm", "dev", "dummy0", "if_id", "7")
	out := ns.Exec(t, "ip", "-d", "link", "show", "ipsec7")
	if !strings.Contains(out, "if_id 0x7") {
		t.Errorf("xfrm interface without if_id 7:\n%s", out)
	}
	// Tests time out, never hang the lab: the context is only a guard here.
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	if err := exec.CommandContext(ctx, "ip", "netns", "exec", ns.Name, "ip", "link", "set", "ipsec7", "up").Run(); err != nil {
		t.Errorf("set xfrm interface up: %v", err)
	}
}

// TestGuestCharon starts strongSwan's charon in a namespace, as the IKE
// interop tests do (own mount namespace with a fresh /run for its fixed pid
// file, own vici socket), and asks it for its plugins over vici.
func TestGuestCharon(t *testing.T) {
	lab.RequireVM(t, "lab self-test: strongSwan's charon on the guest kernel")
	ns := lab.NewNS(t)
	dir := t.TempDir()
	sock := filepath.Join(dir, "charon.vici")
	conf := filepath.Join(dir, "strongswan.conf")
	if err := os.WriteFile(conf, []byte(`charon {
	load_modular = yes
	install_routes = no
	plugins {
		include /etc/strongswan.d/charon/*.conf
		vici {
			socket = unix://`+sock+`
		}
	}
}
`), 0o644); err != nil {
		t.Fatal(err)
	}
	cmd := ns.Command("unshare", "-m", "sh", "-c", "mount -t tmpfs tmpfs /run && exec /usr/lib/ipsec/charon")
	cmd.Env = append(os.Environ(), "STRONGSWAN_CONF="+conf)
	var out strings.Builder
	cmd.Stdout, cmd.Stderr = &out, &out
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() {
		cmd.Process.Signal(unix.SIGTERM)
		cmd.Wait()
	})
	deadline := time.Now().Add(60 * time.Second)
	for {
		if _, err := os.Stat(sock); err == nil {
			break
		}
		if time.Now().After(deadline) {
			t.Fatalf("charon's vici socket %s did not appear within 60s; charon said:\n%s", sock, out.String())
		}
		time.Sleep(100 * time.Millisecond)
	}
	var stats []byte
	var err error
	for range 50 { // the socket exists slightly before charon accepts on it
		if stats, err = exec.Command("swanctl", "--stats", "--uri", "unix://"+sock).CombinedOutput(); err == nil {
			break
		}
		time.Sleep(100 * time.Millisecond)
	}
	if err != nil {
		t.Fatalf("swanctl --stats: %v\n%s\ncharon said:\n%s", err, stats, out.String())
	}
	for _, plugin := range []string{"kernel-netlink", "vici", "socket-default"} {
		if !strings.Contains(string(stats), plugin) {
			t.Errorf("charon lacks plugin %s:\n%s", plugin, stats)
		}
	}
}
