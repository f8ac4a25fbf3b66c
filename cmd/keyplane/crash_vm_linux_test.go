//go:build linux && !no_xfrm

package main

import (
	"context"
	"fmt"
	"os"
	"path/filepath"
	"regexp"
	"sort"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"

	"github.com/keyplane/keyplane/internal/lab"
	"github.com/keyplane/keyplane/internal/swan"
)

// crashTunnels is how many tunnels (IKE SAs of one child each) the
// crash test holds.
const crashTunnels = 100

const crashPSK = "keyplane crash and restart test key"

// crashConf is keyplane's side: one connection per tunnel, each its own
// identity and /32 selectors, started at once.
func crashConf(p *lab.Pair, sock, pskFile string) string {
	var b strings.Builder
	fmt.Fprintf(&b, "daemon {\n\tcontrol = %s\n\tretransmit_timeout = 2s\n\tretransmit_tries = 4\n}\n", sock)
	fmt.Fprintf(&b, "backend {\n\tname = xfrm\n\tparams {\n\t\tnetns = %s\n\t}\n}\nconnections {\n", p.A.Name)
	for i := 1; i <= crashTunnels; i++ {
		fmt.Fprintf(&b, `	k%[1]d {
		local_addrs = %[2]s
		remote_addrs = %[3]s
		proposals = aes128gcm16-prfsha256-x25519
		psk_file = %[4]s
		local {
			id = k%[1]d.keyplane.test
		}
		remote {
			id = b.keyplane.test
		}
		children {
			t%[1]d {
				local_ts = 10.10.1.%[1]d/32
				remote_ts = 10.10.2.%[1]d/32
				esp_proposals = aes128gcm16
				start_action = start
			}
		}
	}
`, i, p.A4, p.B4, pskFile)
	}
	b.WriteString("}\n")
	return b.String()
}

// crashCharonConns: charon's side, unique = replace on each (an IKE SA
// authenticated for the same identities replaces the older one).
func crashCharonConns(p *lab.Pair) []swan.Conn {
	var cs []swan.Conn
	for i := 1; i <= crashTunnels; i++ {
		cs = append(cs, swan.Conn{Name: fmt.Sprintf("kp%d", i), PSK: crashPSK,
			IKEProposal: "aes128gcm16-prfsha256-x25519", ESPProposal: "aes128gcm16",
			LocalID: "b.keyplane.test", RemoteID: fmt.Sprintf("k%d.keyplane.test", i),
			Local: p.B4.String(), Remote: p.A4.String(),
			LocalTS: []string{fmt.Sprintf("10.10.2.%d/32", i)}, RemoteTS: []string{fmt.Sprintf("10.10.1.%d/32", i)},
			Extra: map[string]string{"unique": "replace"}})
	}
	return cs
}

var espSPIRe = regexp.MustCompile(`proto esp spi 0x([0-9a-f]+)`)

// kernelSPIs lists the ESP SAs' SPIs in ns, and counts its SPD entries
// (not the IKE sockets' per-socket policies, which `ip xfrm policy` lists
// too).
func kernelSPIs(t *testing.T, ns *lab.NS) (spis map[string]bool, policies int) {
	spis = map[string]bool{}
	for _, m := range espSPIRe.FindAllStringSubmatch(ns.Exec(t, "ip", "xfrm", "state"), -1) {
		spis[strings.TrimLeft(m[1], "0")] = true
	}
	for _, block := range strings.Split("\n"+ns.Exec(t, "ip", "xfrm", "policy"), "\nsrc ") {
		if b := strings.TrimSpace(block); b != "" && !strings.Contains(b, "\tsocket ") && !strings.Contains(b, " socket in ") && !strings.Contains(b, " socket out ") {
			policies++
		}
	}
	return spis, policies
}

// tunnels is both sides' view: the children keyplane has installed and
// the child SPIs of charon's established IKE SAs, by tunnel number.
type tunnels struct {
	k, c         map[int][2]string // SPI in, SPI out (keyplane's in is charon's out)
	charonIKESAs int               // charon's IKE SAs in any state
}

func (x tunnels) matching() int {
	n := 0
	for i, k := range x.k {
		if c, ok := x.c[i]; ok && c[0] == k[1] && c[1] == k[0] {
			n++
		}
	}
	return n
}

// spis is every SPI the tunnels use now.
func (x tunnels) spis() map[string]bool {
	out := map[string]bool{}
	for _, k := range x.k {
		out[k[0]], out[k[1]] = true, true
	}
	return out
}

func readTunnels(t *testing.T, ctx context.Context, d *procDaemon, c *swan.Charon) tunnels {
	x := tunnels{k: map[int][2]string{}, c: map[int][2]string{}}
	if r, err := d.do(10*time.Second, "ike-list"); err == nil {
		for _, sa := range r.IKESAs {
			if sa.State != "established" {
				continue
			}
			for _, ch := range sa.Children {
				var i int
				if _, err := fmt.Sscanf(ch.Name, "t%d", &i); err == nil && ch.State == "installed" {
					x.k[i] = [2]string{spiKey(ch.SPIIn), spiKey(ch.SPIOut)}
				}
			}
		}
	}
	sas, err := c.ListSAs(ctx)
	if err != nil {
		t.Logf("charon list-sas: %v", err)
		return x
	}
	x.charonIKESAs = len(sas)
	for _, sa := range sas {
		var i int
		if _, err := fmt.Sscanf(sa.Name, "kp%d", &i); err != nil || sa.State != "ESTABLISHED" {
			continue
		}
		for _, ch := range sa.Children {
			if ch.State == "INSTALLED" {
				x.c[i] = [2]string{spiKey(ch.SPIIn), spiKey(ch.SPIOut)}
			}
		}
	}
	return x
}

func spiKey(s string) string { return strings.TrimLeft(strings.ToLower(s), "0") }

// stale counts kernel SAs in ns that no current tunnel uses.
func stale(spis, current map[string]bool) int {
	n := 0
	for s := range spis {
		if !current[s] {
			n++
		}
	}
	return n
}

// pingAll sends one ping through every tunnel from keyplane's side and
// returns those that got no answer.
func pingAll(p *lab.Pair) []int {
	var mu sync.Mutex
	var failed []int
	var wg sync.WaitGroup
	sem := make(chan struct{}, 8)
	for i := 1; i <= crashTunnels; i++ {
		wg.Go(func() {
			sem <- struct{}{}
			defer func() { <-sem }()
			if _, err := p.A.Run("ping", "-c", "1", "-W", "5", "-I", fmt.Sprintf("10.10.1.%d", i), fmt.Sprintf("10.10.2.%d", i)); err != nil {
				mu.Lock()
				failed = append(failed, i)
				mu.Unlock()
			}
		})
	}
	wg.Wait()
	sort.Ints(failed)
	return failed
}

// The probe "kill -9 of a responder with SAs, restart: peers still show
// established, the restarted side drops their messages silently, xfrm
// cleanup defaults to none so a crash leaves kernel SAs and policies; no
// test kills and restarts the real daemon". Here the real daemon, on
// XFRM with real ESP, holds crashTunnels tunnels to charon; it is killed
// with SIGKILL and started again on the same file. The default cleanup
// (owned) removes what the killed one left before anything is installed;
// start_action = start brings every tunnel back, and charon drops its side
// of the old ones when the new IKE SA for the same identities
// authenticates (unique = replace, and the INITIAL_CONTACT keyplane sends
// on its first IKE SA with a peer). The
// test waits for every tunnel back on both sides with matching SPIs and
// no stale SA or policy in either kernel, pings through each, and logs
// the times.
func TestVMCrashRestart(t *testing.T) {
	lab.RequireVM(t, "kernel ESP for keyplane's XFRM backend and charon's kernel-netlink")
	if err := swan.Available(); err != nil {
		t.Fatalf("the VM lab has strongSwan (make lab-prepare): %v", err)
	}
	ctx, cancel := context.WithTimeout(context.Background(), 15*time.Minute)
	defer cancel()
	p := lab.NewPair(t)
	for i := 1; i <= crashTunnels; i++ {
		p.A.Exec(t, "ip", "addr", "add", fmt.Sprintf("10.10.1.%d/32", i), "dev", "lo")
		p.B.Exec(t, "ip", "addr", "add", fmt.Sprintf("10.10.2.%d/32", i), "dev", "lo")
	}
	p.A.Exec(t, "ip", "route", "add", "10.10.2.0/24", "via", p.B4.String())
	c := swan.Start(t, swan.Options{NS: p.B, Mode: swan.KernelNetlink, LogLevel: 1, Conns: crashCharonConns(p),
		// keyplane starts crashTunnels IKE SAs from one address at once:
		// charon's per-address limits (block_threshold 5,
		// cookie_threshold_ip 3) would drop or COOKIE most of them.
		Settings: map[string]string{"block_threshold": "10000", "cookie_threshold": "10000", "cookie_threshold_ip": "10000",
			"ikesa_table_size": "128"}})
	dir := t.TempDir()
	pskFile := filepath.Join(dir, "k.psk")
	if err := os.WriteFile(pskFile, []byte(crashPSK), 0o600); err != nil {
		t.Fatal(err)
	}
	sock := filepath.Join(dir, "kp.sock")
	conf := filepath.Join(dir, "kp.conf")
	if err := os.WriteFile(conf, []byte(crashConf(p, sock, pskFile)), 0o644); err != nil {
		t.Fatal(err)
	}

	// waitUp waits until every tunnel is up on both sides with matching
	// SPIs and neither kernel holds anything else; it returns when each
	// of those first held.
	// The policies each side holds with every tunnel up (-1: not known
	// yet, learnt at the first start): at least out, in and fwd for each;
	// keyplane's IKE bypass policies, if any, come on top.
	keyplanePolicies, charonPolicies := -1, -1
	waitUp := func(d *procDaemon, t0 time.Time) (back, clean time.Duration, x tunnels) {
		t.Helper()
		for {
			x = readTunnels(t, ctx, d, c)
			ka, kp := kernelSPIs(t, p.A)
			sa, sp := kernelSPIs(t, p.B)
			cur := x.spis()
			if back == 0 && x.matching() == crashTunnels {
				back = time.Since(t0)
			}
			// Each tunnel: 2 SAs on each side; policies as at the first
			// start.
			ok := back != 0 && x.charonIKESAs == crashTunnels && stale(ka, cur) == 0 && stale(sa, cur) == 0 &&
				len(ka) == 2*crashTunnels && len(sa) == 2*crashTunnels && kp >= 3*crashTunnels && sp >= 3*crashTunnels &&
				(keyplanePolicies < 0 || kp == keyplanePolicies) && (charonPolicies < 0 || sp == charonPolicies)
			if ok {
				if charonPolicies < 0 {
					keyplanePolicies, charonPolicies = kp, sp
				}
				return back, time.Since(t0), x
			}
			if ctx.Err() != nil || time.Since(t0) > 5*time.Minute {
				t.Fatalf("after %v: %d/%d tunnels with matching SPIs (keyplane %d, charon %d established of %d IKE SAs); "+
					"kernel A: %d SAs (%d stale), %d policies; kernel B: %d SAs (%d stale), %d policies\nkeyplane log tail:\n%s\ncharon log tail:\n%s",
					time.Since(t0).Round(time.Millisecond), x.matching(), crashTunnels, len(x.k), len(x.c), x.charonIKESAs,
					len(ka), stale(ka, cur), kp, len(sa), stale(sa, cur), sp, tailText(d.stderr.String(), 40), tailText(c.Log(), 40))
			}
			time.Sleep(500 * time.Millisecond)
		}
	}

	t0 := time.Now()
	d := startProcDaemonConf(t, conf, sock)
	back, _, before := waitUp(d, t0)
	t.Logf("first start: %d/%d tunnels up in %v; policies: keyplane's kernel %d, charon's %d", crashTunnels, crashTunnels,
		back.Round(time.Millisecond), keyplanePolicies, charonPolicies)
	if failed := pingAll(p); len(failed) > 0 {
		t.Fatalf("ping failed through tunnels %v before the crash", failed)
	}

	// kill -9: nothing of the daemon's runs, the kernel keeps its SAs and
	// policies.
	if err := d.cmd.Process.Signal(syscall.SIGKILL); err != nil {
		t.Fatal(err)
	}
	<-d.done
	left, leftPols := kernelSPIs(t, p.A)
	leftOld := len(left) - stale(left, before.spis())
	t.Logf("after kill -9: keyplane's kernel keeps %d ESP SAs (%d of the killed daemon's tunnels) and %d policies; charon lists %d IKE SAs",
		len(left), leftOld, leftPols, readTunnels(t, ctx, d, c).charonIKESAs)
	if leftOld != 2*crashTunnels {
		t.Errorf("the killed daemon's %d SAs are not all in the kernel (%d): the test would not show the clean-up", 2*crashTunnels, leftOld)
	}

	t1 := time.Now()
	d2 := startProcDaemonConf(t, conf, sock)
	back, clean, after := waitUp(d2, t1)
	for i, k := range after.k {
		if o := before.k[i]; o == k {
			t.Errorf("tunnel %d has the SPIs it had before the crash", i)
		}
	}
	failed := pingAll(p)
	if len(failed) > 0 {
		t.Errorf("ping failed through tunnels %v after the restart", failed)
	}
	cleanupLine := ""
	for _, l := range strings.Split(d2.stderr.String(), "\n") {
		if strings.Contains(l, "cleanup at start") {
			cleanupLine = l
		}
	}
	t.Logf("restart: %d/%d tunnels back (matching SPIs both sides) in %v; stale SAs/policies in either kernel: 0 after %v; ping through %d/%d; %s",
		after.matching(), crashTunnels, back.Round(time.Millisecond), clean.Round(time.Millisecond),
		crashTunnels-len(failed), crashTunnels, cleanupLine)
	if !strings.Contains(cleanupLine, fmt.Sprintf("sas=%d", 2*crashTunnels)) {
		t.Errorf("the restarted daemon did not remove the killed one's %d SAs at start: %q", 2*crashTunnels, cleanupLine)
	}
	if err := d2.stop(t); err != nil {
		t.Errorf("restarted daemon: %v\n%s", err, tailText(d2.stderr.String(), 40))
	}
}

func tailText(s string, n int) string {
	l := strings.Split(strings.TrimRight(s, "\n"), "\n")
	if len(l) > n {
		l = l[len(l)-n:]
	}
	return strings.Join(l, "\n")
}
