package interop

import (
	"bytes"
	"context"
	"fmt"
	"net/netip"
	"os/exec"
	"regexp"
	"strconv"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/keyplane/keyplane/ike"
	"github.com/keyplane/keyplane/ike/config"
	"github.com/keyplane/keyplane/internal/lab"
	"github.com/keyplane/keyplane/internal/swan"
)

// Recovery against charon on kernel ESP: charon killed and restarted,
// NAT-T through a masquerading namespace (keepalives, a NAT rebinding),
// make-before-break reauthentication; each with ping running and the
// pings lost counted.

// pinger is a ping running in the background.
type pinger struct {
	cmd  *exec.Cmd
	out  bytes.Buffer
	done chan error
}

// startPing pings to from from in ns every interval, count times.
func startPing(t *testing.T, ns *lab.NS, from, to string, interval time.Duration, count int) *pinger {
	t.Helper()
	p := &pinger{done: make(chan error, 1)}
	p.cmd = ns.Command("ping", "-n", "-c", strconv.Itoa(count), "-i", fmt.Sprintf("%.3f", interval.Seconds()), "-W", "1", "-I", from, to)
	p.cmd.Stdout, p.cmd.Stderr = &p.out, &p.out
	if err := p.cmd.Start(); err != nil {
		t.Fatalf("ping: %v", err)
	}
	go func() { p.done <- p.cmd.Wait() }()
	t.Cleanup(func() { p.cmd.Process.Kill(); <-p.done })
	return p
}

var pingStats = regexp.MustCompile(`(\d+) packets transmitted, (\d+) received`)

// wait waits for the ping to end and returns what it sent and got back.
func (p *pinger) wait(t *testing.T) (sent, received int) {
	t.Helper()
	select {
	case <-p.done:
		p.done <- nil // for the cleanup
	case <-time.After(scale(5 * time.Minute)):
		t.Fatalf("ping did not end")
	}
	m := pingStats.FindStringSubmatch(p.out.String())
	if m == nil {
		t.Fatalf("ping output without statistics:\n%s", p.out.String())
	}
	sent, _ = strconv.Atoi(m[1])
	received, _ = strconv.Atoi(m[2])
	return sent, received
}

// kill ends charon with SIGKILL: no delete goes out and its kernel state
// stays, as after a crash.
func kill(t *testing.T, c *swan.Charon) {
	t.Helper()
	if err := syscall.Kill(c.Pid(), syscall.SIGKILL); err != nil {
		t.Fatalf("kill charon: %v", err)
	}
	<-c.Exited()
	c.Stop() // marks the exit as ours
}

// charonFor is charon's side of the connection between the vmRig's
// namespaces, adjusted by f.
func charonFor(p *lab.Pair, s suite, f func(*swan.Conn)) swan.Conn {
	c := charonConn(p, s)
	if f != nil {
		f(&c)
	}
	return c
}

// ipsecSAs counts the ESP SAs in ns's kernel.
func ipsecSAs(t *testing.T, ns *lab.NS) int {
	return strings.Count(ns.Exec(t, "ip", "xfrm", "state"), "proto esp")
}

// TestVMCharonRestart: charon is killed (SIGKILL), its kernel state
// flushed (as by a reboot), and started again.
//   - keyplane initiated, dpd_action = restart: the tunnel falls idle,
//     keyplane's liveness check goes unanswered (charon 5.9 ignores
//     requests for IKE SAs it does not know, it sends no INVALID_IKE_SPI)
//     and at the end of its retransmissions keyplane brings the child up
//     under a new IKE SA. (The INVALID_IKE_SPI shortcut is tested
//     keyplane to keyplane in ike's recovery tests.)
//   - charon initiated (start_action = start): the new charon initiates
//     again with INITIAL_CONTACT, and keyplane drops the stale IKE SA and
//     child at once (it checks no liveness here, so nothing else would).
//
// The time from the new charon answering to a new child on both sides is
// logged, and the pings lost meanwhile.
func TestVMCharonRestart(t *testing.T) {
	lab.RequireVM(t, "kernel ESP for keyplane's XFRM backend and charon's kernel-netlink")
	requireSwan(t)
	s := suites[0]
	for _, role := range []string{"keyplane-initiates", "charon-initiates"} {
		t.Run(role, func(t *testing.T) {
			ctx, cancel := context.WithTimeout(t.Context(), scale(90*time.Second))
			defer cancel()
			p := lab.NewPair(t)
			p.A.Exec(t, "ip", "addr", "add", innerK.String()+"/32", "dev", "lo")
			p.B.Exec(t, "ip", "addr", "add", innerS.String()+"/32", "dev", "lo")
			p.A.Exec(t, innerRoute(p)...)
			conn := charonFor(p, s, func(c *swan.Conn) {
				if role == "charon-initiates" {
					c.StartAction = "start"
				}
			})
			opts := swan.Options{NS: p.B, Mode: swan.KernelNetlink, Conns: []swan.Conn{conn}}
			cfg := keyplaneConfig(t, p, s, "xfrm", "/run/netns/"+p.A.Name, "dpd_action = restart")
			if role == "keyplane-initiates" {
				cfg.Connections[0].DPDDelay = 2 * time.Second
				cfg.Connections[0].KeyingTries = 0
				cfg.Daemon.RetransmitTimeout, cfg.Daemon.RetransmitTries, cfg.Daemon.RetransmitBase = time.Second, 3, 1.5
			}
			k := startXfrmKeyplane(t, cfg)
			c := swan.Start(t, opts)
			if role == "keyplane-initiates" {
				if err := k.e.Initiate(ctx, "net"); err != nil {
					diagnose(t, p)
					t.Fatal(err)
				}
			}
			first, _ := k.waitChild(t, ctx)
			if _, err := c.WaitIKE(ctx, "kp", "ESTABLISHED"); err != nil {
				t.Fatal(err)
			}
			ping(t, p.A, innerK.String(), innerS.String(), 2)

			pg := startPing(t, p.A, innerK.String(), innerS.String(), 200*time.Millisecond, int(scale(30*time.Second)/(200*time.Millisecond)))
			time.Sleep(time.Second)
			kill(t, c)
			// Its kernel state goes too, as in a reboot: the tunnel is
			// down until the IKE SAs are made anew.
			p.B.Exec(t, "ip", "xfrm", "state", "flush")
			p.B.Exec(t, "ip", "xfrm", "policy", "flush")
			t0 := time.Now()
			c2 := swan.Start(t, opts)
			up := time.Now()
			// Recovered: one IKE SA on keyplane's side, new, with its child,
			// and charon's the same.
			var ksa ike.IKESAInfo
			var kch ike.ChildInfo
			for ; ; time.Sleep(50 * time.Millisecond) {
				sas, _ := k.e.IKESAs(ctx)
				if len(sas) == 1 && sas[0].SPIi != first.SPIi && sas[0].State == "established" && len(sas[0].Children) == 1 {
					ksa, kch = sas[0], sas[0].Children[0]
					if csa, err := c2.ListSAs(ctx); err == nil && len(csa) == 1 && csa[0].State == "ESTABLISHED" {
						break
					}
				}
				if ctx.Err() != nil {
					sas, _ := k.e.IKESAs(t.Context())
					t.Fatalf("not recovered: keyplane %+v", sas)
				}
			}
			recovered := time.Now()
			t.Logf("charon restarted (SIGKILL): its new instance answered %v after the kill; keyplane's new child %s with it %v later (%v after the kill)",
				up.Sub(t0).Round(time.Millisecond), kch.SPIIn, recovered.Sub(up).Round(time.Millisecond), recovered.Sub(t0).Round(time.Millisecond))
			csa, err := c2.WaitIKE(ctx, "kp", "ESTABLISHED")
			if err != nil {
				t.Fatal(err)
			}
			checkCrosswise(t, ksa, kch, csa, s)
			if role == "charon-initiates" {
				if !strings.Contains(k.log.String(), "INITIAL_CONTACT: removed the peer's other IKE SAs") {
					t.Errorf("keyplane did not drop the stale IKE SA on charon's INITIAL_CONTACT")
				}
			} else if !strings.Contains(k.log.String(), `reason="dpd_action = restart"`) {
				t.Errorf("keyplane's log does not show dpd_action = restart bringing the child up")
			}
			if n := ipsecSAs(t, p.A); n != 2 {
				t.Errorf("keyplane's kernel holds %d ESP SAs, want the new child's 2:\n%s", n, p.A.Exec(t, "ip", "xfrm", "state"))
			}
			sent, got := pg.wait(t)
			t.Logf("pings %s -> %s every 200ms across the restart: %d sent, %d lost", innerK, innerS, sent, sent-got)
			ping(t, p.A, innerK.String(), innerS.String(), 3)
			ping(t, p.B, innerS.String(), innerK.String(), 3)
		})
	}
}

// natRig is three namespaces: A behind a NAT, R the NAT (nftables
// masquerade with random ports, so that a new mapping takes a new port),
// B in front. A reaches B through R; B sees A as R's address and does
// not know A's own.
type natRig struct {
	A, R, B     *lab.NS
	a, ra       netip.Addr // the A-R link: A's and R's addresses
	rb, b       netip.Addr // the R-B link
	innerA, inB netip.Addr // the tunnels' inner addresses (on A's and B's loopbacks)
}

func newNATRig(t *testing.T) *natRig {
	t.Helper()
	for _, tool := range []string{"nft", "conntrack"} {
		if _, err := exec.LookPath(tool); err != nil {
			t.Fatalf("%s not found (the lab installs nftables and conntrack): %v", tool, err)
		}
	}
	r := &natRig{A: lab.NewNS(t), R: lab.NewNS(t), B: lab.NewNS(t), innerA: innerK, inB: innerS}
	x := time.Now().UnixNano()%200 + 20
	r.a, r.ra = netip.MustParseAddr(fmt.Sprintf("10.81.%d.1", x)), netip.MustParseAddr(fmt.Sprintf("10.81.%d.2", x))
	r.rb, r.b = netip.MustParseAddr(fmt.Sprintf("10.82.%d.1", x)), netip.MustParseAddr(fmt.Sprintf("10.82.%d.2", x))
	run := func(args ...string) {
		t.Helper()
		if out, err := exec.Command("ip", args...).CombinedOutput(); err != nil {
			t.Fatalf("ip %s: %v: %s", strings.Join(args, " "), err, out)
		}
	}
	run("link", "add", "nat-a", "netns", r.A.Name, "type", "veth", "peer", "name", "nat-ra", "netns", r.R.Name)
	run("link", "add", "nat-rb", "netns", r.R.Name, "type", "veth", "peer", "name", "nat-b", "netns", r.B.Name)
	for _, s := range [][]string{
		{"-n", r.A.Name, "addr", "add", r.a.String() + "/24", "dev", "nat-a"},
		{"-n", r.R.Name, "addr", "add", r.ra.String() + "/24", "dev", "nat-ra"},
		{"-n", r.R.Name, "addr", "add", r.rb.String() + "/24", "dev", "nat-rb"},
		{"-n", r.B.Name, "addr", "add", r.b.String() + "/24", "dev", "nat-b"},
		{"-n", r.A.Name, "link", "set", "nat-a", "up"},
		{"-n", r.R.Name, "link", "set", "nat-ra", "up"},
		{"-n", r.R.Name, "link", "set", "nat-rb", "up"},
		{"-n", r.B.Name, "link", "set", "nat-b", "up"},
		{"-n", r.A.Name, "route", "add", "default", "via", r.ra.String()},
		{"-n", r.A.Name, "addr", "add", r.innerA.String() + "/32", "dev", "lo"},
		{"-n", r.B.Name, "addr", "add", r.inB.String() + "/32", "dev", "lo"},
	} {
		run(s...)
	}
	r.R.Exec(t, "sysctl", "-qw", "net.ipv4.ip_forward=1")
	nft := r.R.Command("nft", "-f", "-")
	nft.Stdin = strings.NewReader(`table ip nat {
	chain post {
		type nat hook postrouting priority srcnat; policy accept;
		oifname "nat-rb" masquerade random
	}
}
`)
	if out, err := nft.CombinedOutput(); err != nil {
		t.Fatalf("nft: %v: %s", err, out)
	}
	return r
}

// shortUDPTimeouts makes R forget an idle UDP mapping after d.
func (r *natRig) shortUDPTimeouts(t *testing.T, d time.Duration) {
	secs := strconv.Itoa(int(d.Seconds()))
	r.R.Exec(t, "sysctl", "-qw", "net.netfilter.nf_conntrack_udp_timeout="+secs, "net.netfilter.nf_conntrack_udp_timeout_stream="+secs)
}

// mappedPort is the port R maps A's NAT-T socket (4500) to, from
// conntrack; 0 when there is no mapping.
func (r *natRig) mappedPort(t *testing.T) uint16 {
	out, _ := r.R.Run("conntrack", "-L", "-p", "udp", "--orig-src", r.a.String(), "--orig-port-src", "4500")
	// ... src=A dst=B sport=4500 dport=4500 ... src=B dst=R sport=4500 dport=PORT
	m := regexp.MustCompile(`src=\S+ dst=` + regexp.QuoteMeta(r.rb.String()) + ` sport=4500 dport=(\d+)`).FindStringSubmatch(out)
	if m == nil {
		return 0
	}
	n, _ := strconv.Atoi(m[1])
	return uint16(n)
}

// keyplaneNATConfig is keyplane's configuration on the XFRM backend in
// ns, from local to remote (an invalid remote: %any).
func keyplaneNATConfig(t *testing.T, ns *lab.NS, local, remote netip.Addr, localTS, remoteTS netip.Addr, daemon string, connExtra ...string) *config.Config {
	t.Helper()
	// The side behind the NAT (A) is a.keyplane.test, the one in front b.
	ra, localID, remoteID := "%any", "b.keyplane.test", "a.keyplane.test"
	if remote.IsValid() {
		ra, localID, remoteID = remote.String(), "a.keyplane.test", "b.keyplane.test"
	}
	src := fmt.Sprintf(`
daemon {
	retransmit_timeout = 2s
	retransmit_tries = 4
	log_level = debug
	%s
}
backend {
	name = xfrm
	params {
		netns = /run/netns/%s
	}
}
connections {
	peer {
		local_addrs = %s
		remote_addrs = %s
		proposals = %s
		psk_env = KP_PSK
		%s
		local {
			id = %s
		}
		remote {
			id = %s
		}
		children {
			net {
				local_ts = %s/32
				remote_ts = %s/32
				esp_proposals = %s
			}
		}
	}
}
`, daemon, ns.Name, local, ra, suites[0].ike, strings.Join(connExtra, "\n"), localID, remoteID, localTS, remoteTS, suites[0].esp)
	cfg, err := config.Parse("nat.conf", []byte(src), config.Options{Getenv: func(k string) (string, bool) {
		return psk, k == "KP_PSK"
	}})
	if err != nil {
		t.Fatalf("%v\n%s", err, src)
	}
	return cfg
}

// TestVMNATTraversal: NAT-T through a masquerading namespace, each
// implementation behind the NAT in turn (the one behind it initiates).
//   - Keepalives keep the mapping: with R forgetting idle UDP mappings
//     after 4 s and nothing else sent for 3 times that, the mapped port
//     stays and a ping from the side in front gets through at once.
//     (keyplane behind the NAT: with keep_alive = 0 the same idleness
//     loses the mapping — the control.)
//   - A NAT rebinding (conntrack -F; the next packet gets a new random
//     port) is followed by the side in front — keyplane moves its IKE SA
//     and its child's SAs on the kernel's XFRM_MSG_MAPPING — and a ping
//     running meanwhile continues; the pings lost are logged.
func TestVMNATTraversal(t *testing.T) {
	lab.RequireVM(t, "kernel ESP and nftables NAT")
	requireSwan(t)
	for _, behind := range []string{"keyplane", "charon"} {
		t.Run(behind+"-behind-nat", func(t *testing.T) {
			ctx, cancel := context.WithTimeout(t.Context(), scale(3*time.Minute))
			defer cancel()
			r := newNATRig(t)
			var k *keyplane
			var c *swan.Charon
			front := r.B // the side in front of the NAT
			if behind == "keyplane" {
				c = swan.Start(t, swan.Options{NS: r.B, Mode: swan.KernelNetlink, Conns: []swan.Conn{{
					Name: "kp", PSK: psk, IKEProposal: suites[0].ike, ESPProposal: suites[0].esp,
					LocalID: "b.keyplane.test", RemoteID: "a.keyplane.test", Local: r.b.String(),
					LocalTS: []string{r.inB.String() + "/32"}, RemoteTS: []string{r.innerA.String() + "/32"}}}})
				k = startXfrmKeyplane(t, keyplaneNATConfig(t, r.A, r.a, r.b, r.innerA, r.inB, "keep_alive = 1s"))
				if err := k.e.Initiate(ctx, "net"); err != nil {
					t.Fatal(err)
				}
			} else {
				k = startXfrmKeyplane(t, keyplaneNATConfig(t, r.B, r.b, netip.Addr{}, r.inB, r.innerA, ""))
				r.B.Exec(t, "ip", "route", "add", r.innerA.String()+"/32", "via", r.rb.String())
				c = swan.Start(t, swan.Options{NS: r.A, Mode: swan.KernelNetlink, Settings: map[string]string{"keep_alive": "1s"},
					Conns: []swan.Conn{{
						Name: "kp", PSK: psk, IKEProposal: suites[0].ike, ESPProposal: suites[0].esp,
						LocalID: "a.keyplane.test", RemoteID: "b.keyplane.test", Local: r.a.String(), Remote: r.b.String(),
						LocalTS: []string{r.innerA.String() + "/32"}, RemoteTS: []string{r.inB.String() + "/32"}}}})
				if err := c.Initiate(ctx, "kp"); err != nil {
					t.Fatal(err)
				}
			}
			ksa, _ := k.waitChild(t, ctx)
			if _, err := c.WaitIKE(ctx, "kp", "ESTABLISHED"); err != nil {
				t.Fatal(err)
			}
			if behind == "keyplane" && (!ksa.NATLocal || ksa.NATRemote) || behind == "charon" && (ksa.NATLocal || !ksa.NATRemote) {
				t.Fatalf("keyplane's NAT detection: local %v remote %v, with %s behind the NAT", ksa.NATLocal, ksa.NATRemote, behind)
			}
			ping(t, r.A, r.innerA.String(), r.inB.String(), 2)
			port := r.mappedPort(t)
			if port == 0 {
				t.Fatalf("no NAT mapping of A's port 4500 in R: %s", r.R.Exec(t, "conntrack", "-L"))
			}

			// Keepalives keep the mapping through 12 s of idleness.
			const udpTimeout = 4 * time.Second
			r.shortUDPTimeouts(t, udpTimeout)
			time.Sleep(3 * udpTimeout)
			if got := r.mappedPort(t); got != port {
				t.Errorf("after %v idle with keepalives every 1s, the mapping is %d, was %d", 3*udpTimeout, got, port)
			}
			ping(t, front, r.inB.String(), r.innerA.String(), 2)
			if behind == "keyplane" {
				// The control: no keepalives, the mapping goes.
				k.reload(t, ctx, keyplaneNATConfig(t, r.A, r.a, r.b, r.innerA, r.inB, "keep_alive = 0"))
				time.Sleep(3 * udpTimeout)
				if got := r.mappedPort(t); got != 0 {
					t.Errorf("without keepalives the mapping (%d) outlived %v of idleness", got, 3*udpTimeout)
				}
				if out, err := front.Run("ping", "-c", "2", "-W", "1", "-I", r.inB.String(), r.innerA.String()); err == nil {
					t.Errorf("ping from the front through a lost mapping passed:\n%s", out)
				}
				k.reload(t, ctx, keyplaneNATConfig(t, r.A, r.a, r.b, r.innerA, r.inB, "keep_alive = 1s"))
				ping(t, r.A, r.innerA.String(), r.inB.String(), 2) // a new mapping
				if port = r.mappedPort(t); port == 0 {
					t.Fatalf("no mapping after the ping")
				}
			}

			// The NAT rebinding, with ping running from A.
			pg := startPing(t, r.A, r.innerA.String(), r.inB.String(), 100*time.Millisecond, int(scale(5*time.Second)/(100*time.Millisecond)))
			time.Sleep(scale(2 * time.Second))
			r.R.Exec(t, "conntrack", "-F")
			sent, got := pg.wait(t)
			newPort := r.mappedPort(t)
			t.Logf("NAT rebinding (%s behind the NAT): A's port 4500 mapped to %d, then %d; pings every 100ms: %d sent, %d lost", behind, port, newPort, sent, sent-got)
			if newPort == port || newPort == 0 {
				t.Errorf("the rebinding did not take a new port: %d -> %d", port, newPort)
			}
			if sent-got > 3 {
				t.Errorf("%d pings lost across the rebinding", sent-got)
			}
			ksa, kch, _ := k.child(t)
			if behind == "charon" {
				if want := netip.AddrPortFrom(r.rb, newPort).String(); ksa.Remote != want {
					t.Errorf("keyplane's IKE SA sends to %s, want the new mapping %s", ksa.Remote, want)
				}
				st := r.B.Exec(t, "ip", "xfrm", "state")
				if n := strings.Count(st, fmt.Sprintf("sport %d dport 4500", newPort)) + strings.Count(st, fmt.Sprintf("sport 4500 dport %d", newPort)); n != 2 {
					t.Errorf("keyplane's kernel SAs do not both encapsulate to port %d:\n%s", newPort, st)
				}
				if !strings.Contains(k.log.String(), "peer's NAT mapping changed") {
					t.Errorf("keyplane's log shows no mapping change")
				}
			} else if want := netip.AddrPortFrom(r.b, 4500).String(); ksa.Remote != want {
				t.Errorf("keyplane, behind the NAT, moved its IKE SA to %s (want %s)", ksa.Remote, want)
			}
			t.Logf("keyplane's child %s/%s, IKE SA %s -> %s", kch.SPIIn, kch.SPIOut, ksa.Local, ksa.Remote)
			ping(t, front, r.inB.String(), r.innerA.String(), 2)
		})
	}
}

// reload applies cfg to the running engine.
func (k *keyplane) reload(t *testing.T, ctx context.Context, cfg *config.Config) {
	t.Helper()
	if err := k.e.Reload(ctx, cfg); err != nil {
		t.Fatal(err)
	}
}

// TestVMReauth: make-before-break reauthentication with ping running
// (every 50ms), by keyplane (reauth_time) and by charon (reauth_time with
// make_before_break = yes). A new IKE SA and child are up before the old
// ones go. The responder installs the new child, and sends on it, one
// IKE_AUTH response before the initiator has it: pings in that window
// (the response's flight and the initiator's install) are lost, 0 to 2
// at 50 ms apart in this VM under -race.
func TestVMReauth(t *testing.T) {
	lab.RequireVM(t, "kernel ESP for keyplane's XFRM backend and charon's kernel-netlink")
	requireSwan(t)
	s := suites[0]
	for _, by := range []string{"keyplane", "charon"} {
		t.Run(by+"-reauthenticates", func(t *testing.T) {
			ctx, cancel := context.WithTimeout(t.Context(), scale(2*time.Minute))
			defer cancel()
			reauth := scale(5 * time.Second)
			p := lab.NewPair(t)
			p.A.Exec(t, "ip", "addr", "add", innerK.String()+"/32", "dev", "lo")
			p.B.Exec(t, "ip", "addr", "add", innerS.String()+"/32", "dev", "lo")
			p.A.Exec(t, innerRoute(p)...)
			opts := swan.Options{NS: p.B, Mode: swan.KernelNetlink, Conns: []swan.Conn{charonFor(p, s, func(c *swan.Conn) {
				if by == "charon" {
					c.Extra = map[string]string{"reauth_time": fmt.Sprint(int(reauth.Seconds())), "rekey_time": "0", "over_time": "60", "rand_time": "1"}
				}
			})}}
			if by == "charon" {
				opts.Settings = map[string]string{"make_before_break": "yes"}
			}
			c := swan.Start(t, opts)
			cfg := keyplaneConfig(t, p, s, "xfrm", "/run/netns/"+p.A.Name)
			if by == "keyplane" {
				conn := cfg.Connections[0]
				conn.ReauthTime, conn.RekeyTime, conn.RandTime, conn.OverTime = reauth, 0, 0, time.Minute
			}
			k := startXfrmKeyplane(t, cfg)
			if err := k.e.Initiate(ctx, "net"); err != nil {
				diagnose(t, p)
				t.Fatal(err)
			}
			first, _ := k.waitChild(t, ctx)
			// For 1.5 reauth_time: across the first reauthentication, ended
			// before the second.
			pg := startPing(t, p.A, innerK.String(), innerS.String(), 50*time.Millisecond, int(3*reauth/2/(50*time.Millisecond)))
			// Reauthenticated: another IKE SA alone on each side.
			var ksa ike.IKESAInfo
			for ; ; time.Sleep(50 * time.Millisecond) {
				sas, _ := k.e.IKESAs(ctx)
				csas, _ := c.ListSAs(ctx)
				if len(sas) == 1 && sas[0].SPIi != first.SPIi && len(sas[0].Children) == 1 && sas[0].Children[0].State == "installed" &&
					len(csas) == 1 && csas[0].State == "ESTABLISHED" {
					ksa = sas[0]
					break
				}
				if ctx.Err() != nil {
					t.Fatalf("not reauthenticated: keyplane %+v, charon %+v", sas, csas)
				}
			}
			sent, got := pg.wait(t)
			rtt := regexp.MustCompile(`rtt min/avg/max/mdev = [0-9.]+/([0-9.]+)/`).FindStringSubmatch(pg.out.String())
			avg := "?"
			if rtt != nil {
				avg = rtt[1] + "ms"
			}
			t.Logf("reauthenticated by %s: IKE SA %s_i -> %s_i, child %s -> %s; pings every 50ms: %d sent, %d lost (avg rtt %s)",
				by, first.SPIi, ksa.SPIi, first.Children[0].SPIIn, ksa.Children[0].SPIIn, sent, sent-got, avg)
			if sent-got > 2 {
				t.Errorf("%d pings lost across the reauthentication, want at most 2 (100 ms)", sent-got)
			}
			if by == "keyplane" && ksa.Role != "initiator" || by == "charon" && ksa.Role != "responder" {
				t.Errorf("keyplane is %s of the new IKE SA, reauthenticated by %s", ksa.Role, by)
			}
			if n := ipsecSAs(t, p.A); n != 2 {
				t.Errorf("keyplane's kernel holds %d ESP SAs after the reauthentication, want 2:\n%s", n, p.A.Exec(t, "ip", "xfrm", "state"))
			}
		})
	}
}
