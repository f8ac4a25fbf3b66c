//go:build linux && !no_xfrm

package main

import (
	"context"
	"fmt"
	"net/netip"
	"os"
	"strings"
	"testing"

	"github.com/keyplane/keyplane/iana"
	"github.com/keyplane/keyplane/internal/lab"
	"github.com/keyplane/keyplane/kernelops"
)

// Entries another IKE daemon (or an administrator) owns: outside
// keyplane's reqid range, or with no reqid at all.
var foreignPolicies = [][]string{
	{"xfrm", "policy", "add", "src", "10.9.0.0/16", "dst", "10.8.0.0/16", "dir", "out", "priority", "100"},
	{"xfrm", "policy", "add", "src", "10.9.0.0/16", "dst", "10.8.0.0/16", "dir", "in", "action", "block"},
	{"xfrm", "policy", "add", "src", "10.8.0.0/16", "dst", "10.9.0.0/16", "dir", "fwd",
		"tmpl", "src", "192.0.2.8", "dst", "192.0.2.9", "proto", "esp", "mode", "tunnel", "reqid", "5"},
}

var foreignSA = []string{"xfrm", "state", "add", "src", "192.0.2.8", "dst", "192.0.2.9", "proto", "esp", "spi", "0x00001234",
	"reqid", "5", "mode", "tunnel", "aead", "rfc4106(gcm(aes))", "0x0102030405060708090a0b0c0d0e0f1011121314", "128"}

func countLines(out, prefix string) int {
	n := 0
	for _, l := range strings.Split(out, "\n") {
		if strings.HasPrefix(strings.TrimSpace(l), prefix) {
			n++
		}
	}
	return n
}

// leaveOwned opens the xfrm backend in ns as a keyplane would, installs
// owned policies (pass, block, ipsec and trap, plus the IKE holes) and,
// when withSAs, owned SAs, then closes it without removing anything: the
// state a crashed daemon leaves. It returns how many entries it left.
func leaveOwned(t *testing.T, ns *lab.NS, withSAs bool, offset byte) (policies, sas int) {
	t.Helper()
	ctx := context.Background()
	b, err := kernelops.Open(ctx, "xfrm", kernelops.Options{Params: map[string]string{"netns": ns.Name}})
	if err != nil {
		t.Fatal(err)
	}
	defer b.Close()
	reqid := kernelops.DefaultReqIDMin + 1
	p := func(s string) netip.Prefix { return netip.MustParsePrefix(fmt.Sprintf(s, offset)) }
	a := netip.MustParseAddr
	tmpl := []kernelops.Template{{Src: a("192.0.2.1"), Dst: a("192.0.2.2"), Proto: kernelops.ProtoESP, Mode: kernelops.ModeTunnel, ReqID: reqid}}
	ps := []*kernelops.Policy{
		{Selector: kernelops.Selector{Src: p("10.1.%d.0/24"), Dst: p("10.2.%d.0/24")}, Dir: kernelops.DirOut, Action: kernelops.ActionPass},
		{Selector: kernelops.Selector{Src: p("10.1.%d.0/24"), Dst: p("10.3.%d.0/24")}, Dir: kernelops.DirOut, Action: kernelops.ActionBlock},
		{Selector: kernelops.Selector{Src: p("10.1.%d.0/24"), Dst: p("10.4.%d.0/24")}, Dir: kernelops.DirOut, Action: kernelops.ActionIPsec, Templates: tmpl},
		{Selector: kernelops.Selector{Src: p("10.1.%d.0/24"), Dst: p("10.5.%d.0/24")}, Dir: kernelops.DirOut, Action: kernelops.ActionTrap, Templates: tmpl},
	}
	spd, err := kernelops.As[kernelops.SPD](b)
	if err != nil {
		t.Fatal(err)
	}
	for _, pol := range ps {
		if err := spd.AddPolicy(ctx, pol); err != nil {
			t.Fatalf("add %v: %v", pol.ID(), err)
		}
	}
	if !withSAs {
		return len(ps), 0
	}
	sad, err := kernelops.As[kernelops.SAD](b)
	if err != nil {
		t.Fatal(err)
	}
	for i := range 2 {
		sa := &kernelops.SA{
			ID:   kernelops.SAID{Src: a("192.0.2.1"), Dst: a("192.0.2.2"), SPI: 0xc1000000 + uint32(offset)<<8 + uint32(i), Proto: kernelops.ProtoESP},
			Mode: kernelops.ModeTunnel, ReqID: reqid, ReplayWindow: 32,
			Encryption: kernelops.Encryption{ID: iana.EncrAESGCM16, KeyBits: 128, Key: make(kernelops.Key, 20)},
		}
		lab.Need(t, "ESP state (rfc4106(gcm(aes)))", sad.AddSA(ctx, sa))
	}
	return len(ps), 2
}

// The probe "kill -9 ... xfrm cleanup defaults to none, so a crash leaves
// kernel SAs and policies": the daemon, with no cleanup setting, removes
// the owned entries an earlier run left at start, and what is left of its
// own at stop, and never a foreign one. Policies run on the host (its
// kernel has XFRM policies); SAs need ESP, so the VM lab.
func TestDaemonCleansOwnedLeftovers(t *testing.T) {
	for _, withSAs := range []bool{false, true} {
		name := "policies"
		if withSAs {
			name = "SAs and policies"
		}
		t.Run(name, func(t *testing.T) {
			if withSAs {
				lab.RequireVM(t, "ESP SAs")
			}
			ns := lab.NewNS(t)
			ip := func(args ...string) string { return ns.Exec(t, append([]string{"ip"}, args...)...) }
			for _, args := range foreignPolicies {
				ip(args...)
			}
			foreignSAs := 0
			if withSAs {
				ip(foreignSA...)
				foreignSAs = 1
			}
			count := func() (pols, sas int) {
				return countLines(ip("xfrm", "policy", "list"), "dir "), countLines(ip("xfrm", "state", "list"), "proto esp")
			}
			ownPols, ownSAs := leaveOwned(t, ns, withSAs, 1)
			if p, s := count(); p != len(foreignPolicies)+ownPols || s != foreignSAs+ownSAs {
				t.Fatalf("before the start: %d policies, %d SAs; want %d, %d", p, s, len(foreignPolicies)+ownPols, foreignSAs+ownSAs)
			}

			d := newTestDaemon(t)
			conf := fmt.Sprintf("daemon {\n\tcontrol = %s\n}\nbackend {\n\tname = xfrm\n\tparams {\n\t\tnetns = %s\n\t}\n}\n", d.sock, ns.Name)
			if err := os.WriteFile(d.conf, []byte(conf), 0o644); err != nil {
				t.Fatal(err)
			}
			startDaemon(t, d)
			if p, s := count(); p != len(foreignPolicies) || s != foreignSAs {
				t.Errorf("after the start: %d policies, %d SAs; want only the %d foreign policies and %d SAs:\n%s\n%s",
					p, s, len(foreignPolicies), foreignSAs, ip("xfrm", "policy"), ip("xfrm", "state"))
			}
			// Without ESP (the host) the backend claims no SAD, and the
			// log counts policies only.
			logged := func(when string) string {
				s := fmt.Sprintf("cleanup at %s: removed keyplane's own dataplane entries\" policies=%d", when, ownPols)
				if withSAs {
					s += fmt.Sprintf(" sas=%d", ownSAs)
				}
				return s
			}
			want := logged("start")
			if !strings.Contains(d.stderr.String(), want) {
				t.Errorf("log lacks %q:\n%s", want, d.stderr)
			}
			// Owned entries appear while the daemon runs (as if an
			// install's reply had been lost): the stop removes them too.
			ownPols, ownSAs = leaveOwned(t, ns, withSAs, 2)
			if code := d.stop(); code != 0 {
				t.Errorf("daemon exited %d:\n%s", code, d.stderr)
			}
			d.stop = nil
			if p, s := count(); p != len(foreignPolicies) || s != foreignSAs {
				t.Errorf("after the stop: %d policies, %d SAs; want %d, %d", p, s, len(foreignPolicies), foreignSAs)
			}
			want = logged("stop")
			if !strings.Contains(d.stderr.String(), want) {
				t.Errorf("log lacks %q:\n%s", want, d.stderr)
			}
		})
	}
}

// cleanup = none keeps the old behaviour for those who need it (two
// daemons on one dataplane).
func TestDaemonCleanupNone(t *testing.T) {
	ns := lab.NewNS(t)
	ownPols, _ := leaveOwned(t, ns, false, 1)
	d := newTestDaemon(t)
	conf := fmt.Sprintf("daemon {\n\tcontrol = %s\n}\nbackend {\n\tname = xfrm\n\tcleanup = none\n\tparams {\n\t\tnetns = %s\n\t}\n}\n", d.sock, ns.Name)
	if err := os.WriteFile(d.conf, []byte(conf), 0o644); err != nil {
		t.Fatal(err)
	}
	startDaemon(t, d)
	if code := d.stop(); code != 0 {
		t.Errorf("daemon exited %d", code)
	}
	d.stop = nil
	if n := countLines(ns.Exec(t, "ip", "xfrm", "policy", "list"), "dir "); n != ownPols {
		t.Errorf("cleanup = none: %d policies left, want the %d owned ones", n, ownPols)
	}
	if strings.Contains(d.stderr.String(), "cleanup at") {
		t.Errorf("cleanup = none, yet:\n%s", d.stderr)
	}
}
