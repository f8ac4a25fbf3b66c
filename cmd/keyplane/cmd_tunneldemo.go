//go:build !no_nokernel

package main

import (
	"bufio"
	"context"
	"crypto/rand"
	"encoding/hex"
	"errors"
	"fmt"
	"io"
	"net"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"sync"
	"syscall"
	"time"

	"github.com/keyplane/keyplane/ike/control"
)

func init() {
	register(&command{name: "tunnel-demo", summary: "two keyplane daemons on loopback (nokernel) build a tunnel: what 'make run' shows", run: runTunnelDemo})
}

// demoConf is one daemon's configuration; %[n] are filled per side.
const demoConf = `# keyplane tunnel demo: %[1]s
daemon {
	control = %[2]s
	log_level = info
	retransmit_timeout = 1s
}
backend {
	name = nokernel
}
connections {
	%[1]s {
		local_addrs = 127.0.0.1
		remote_addrs = 127.0.0.1
		local_port = %[3]d
		local_port_nat = %[4]d
		remote_port = %[5]d
		remote_port_nat = %[6]d
		proposals = aes128gcm16-prfsha256-x25519
		psk_file = demo.psk
		local {
			id = %[1]s.example.org
		}
		remote {
			id = %[7]s.example.org
		}
		children {
			%[1]s-net {
				local_ts = %[8]s
				remote_ts = %[9]s
				esp_proposals = aes128gcm16
				start_action = none
			}
		}
	}
}
`

type demoDaemon struct {
	name, conf, sock string
	cmd              *exec.Cmd
	logMu            sync.Mutex
	log              []string
	done             chan error
}

func (d *demoDaemon) client() *control.Client { return &control.Client{Path: d.sock} }

func runTunnelDemo(ctx context.Context, e *env, args []string) error {
	fs := newFlags(e, "tunnel-demo")
	keep := fs.Bool("keep", false, "keep the temporary directory with configs and logs")
	if err := e.parse(fs, args); err != nil {
		return err
	}
	w := e.stdout
	exe, err := os.Executable()
	if err != nil {
		return err
	}
	dir, err := os.MkdirTemp("", "keyplane-demo-")
	if err != nil {
		return err
	}
	if !*keep {
		defer os.RemoveAll(dir)
	}
	ports, err := freeUDPPorts(4)
	if err != nil {
		return err
	}
	secret := make([]byte, 16)
	rand.Read(secret)
	if err := os.WriteFile(filepath.Join(dir, "demo.psk"), []byte(hex.EncodeToString(secret)+"\n"), 0o600); err != nil {
		return err
	}
	west := &demoDaemon{name: "west", conf: filepath.Join(dir, "west.conf"), sock: filepath.Join(dir, "west.sock")}
	east := &demoDaemon{name: "east", conf: filepath.Join(dir, "east.conf"), sock: filepath.Join(dir, "east.sock")}
	confs := []struct {
		d                       *demoDaemon
		lp, lnp, rp, rnp        int
		peer, localTS, remoteTS string
	}{
		{west, ports[0], ports[1], ports[2], ports[3], "east", "10.1.0.0/16", "10.2.0.0/16"},
		{east, ports[2], ports[3], ports[0], ports[1], "west", "10.2.0.0/16", "10.1.0.0/16"},
	}
	for _, c := range confs {
		text := fmt.Sprintf(demoConf, c.d.name, c.d.sock, c.lp, c.lnp, c.rp, c.rnp, c.peer, c.localTS, c.remoteTS)
		if err := os.WriteFile(c.d.conf, []byte(text), 0o644); err != nil {
			return err
		}
	}
	fmt.Fprintf(w, "== keyplane tunnel demo: two daemons on 127.0.0.1, nokernel dataplane, no root\n")
	fmt.Fprintf(w, "   west: IKE port %d (NAT-T %d), protects 10.1.0.0/16\n", ports[0], ports[1])
	fmt.Fprintf(w, "   east: IKE port %d (NAT-T %d), protects 10.2.0.0/16\n", ports[2], ports[3])
	if *keep {
		fmt.Fprintf(w, "   configs and logs in %s (kept)\n\n", dir)
	} else {
		fmt.Fprintf(w, "   configs and logs in %s (removed at the end; -keep keeps them)\n\n", dir)
	}

	for _, d := range []*demoDaemon{west, east} {
		if err := d.start(exe); err != nil {
			return err
		}
		defer d.kill()
	}
	for _, d := range []*demoDaemon{west, east} {
		if err := d.waitReady(ctx); err != nil {
			return err
		}
	}
	fmt.Fprintln(w, "$ keyplane initiate west-net   (on west)")
	start := time.Now()
	if _, err := west.client().Do(ctx, control.Request{Cmd: "initiate", Name: "west-net"}); err != nil {
		return fmt.Errorf("initiate: %w", err)
	}
	fmt.Fprintf(w, "west-net is up (IKE_SA_INIT + IKE_AUTH and install, %s as seen by the client)\n\n", time.Since(start).Round(time.Microsecond))
	if err := demoTables(ctx, w, west, east); err != nil {
		return err
	}

	fmt.Fprintln(w, "\n== simulated traffic (each daemon's nokernel model counts the packets on its own SAs):")
	steps := []struct {
		d             *demoDaemon
		child, dir    string
		packets, size int
	}{
		{west, "west-net", "out", 100, 1200},
		{east, "east-net", "in", 100, 1200},
		{east, "east-net", "out", 60, 400},
		{west, "west-net", "in", 60, 400},
	}
	for _, s := range steps {
		r, err := s.d.client().Do(ctx, control.Request{Cmd: "traffic", Name: s.child, Args: map[string]string{
			"dir": s.dir, "packets": fmt.Sprint(s.packets), "size": fmt.Sprint(s.size)}})
		if err != nil {
			return fmt.Errorf("traffic on %s: %w", s.d.name, err)
		}
		fmt.Fprintf(w, "  %s: %s\n", s.d.name, r.Text)
	}
	fmt.Fprintln(w)
	for _, d := range []*demoDaemon{west, east} {
		r, err := d.client().Do(ctx, control.Request{Cmd: "child-list"})
		if err != nil {
			return err
		}
		fmt.Fprintf(w, "-- %s: keyplane child list (counters read from its dataplane)\n", d.name)
		printChildren(w, r)
	}

	fmt.Fprintln(w, "\n$ keyplane terminate east   (on east: deletes the IKE SA and its child, telling west)")
	if _, err := east.client().Do(ctx, control.Request{Cmd: "terminate", Name: "east"}); err != nil {
		return fmt.Errorf("terminate: %w", err)
	}
	deadline := time.Now().Add(5 * time.Second)
	for {
		r, err := west.client().Do(ctx, control.Request{Cmd: "ike-list"})
		if err != nil {
			return err
		}
		if len(r.IKESAs) == 0 {
			break
		}
		if time.Now().After(deadline) {
			return errors.New("west still has IKE SAs after east's delete")
		}
		time.Sleep(20 * time.Millisecond)
	}
	if err := demoTables(ctx, w, west, east); err != nil {
		return err
	}

	fmt.Fprintln(w, "\n== stopping both daemons (SIGTERM)")
	for _, d := range []*demoDaemon{west, east} {
		if err := d.stop(); err != nil {
			return err
		}
		fmt.Fprintf(w, "  %s exited cleanly\n", d.name)
	}
	fmt.Fprintln(w, "\n== the daemons' logs (one line per state change):")
	for _, d := range []*demoDaemon{west, east} {
		d.logMu.Lock()
		for _, l := range d.log {
			if strings.Contains(l, "msg=\"IKE SA ") || strings.Contains(l, "msg=\"CHILD SA ") ||
				strings.Contains(l, "handshake complete") || strings.Contains(l, "daemon stopped") {
				fmt.Fprintf(w, "  %s| %s\n", d.name, l)
			}
		}
		d.logMu.Unlock()
	}
	return nil
}

func demoTables(ctx context.Context, w io.Writer, ds ...*demoDaemon) error {
	for _, d := range ds {
		r, err := d.client().Do(ctx, control.Request{Cmd: "ike-list"})
		if err != nil {
			return err
		}
		fmt.Fprintf(w, "-- %s: keyplane ike list\n", d.name)
		printIKESAs(w, r)
		var chs = r.IKESAs
		var children int
		for _, sa := range chs {
			children += len(sa.Children)
		}
		r2, err := d.client().Do(ctx, control.Request{Cmd: "child-list"})
		if err != nil {
			return err
		}
		fmt.Fprintf(w, "-- %s: keyplane child list\n", d.name)
		printChildren(w, r2)
	}
	return nil
}

func (d *demoDaemon) start(exe string) error {
	d.cmd = exec.Command(exe, "daemon", "-c", d.conf)
	d.cmd.Dir = filepath.Dir(d.conf)
	stderr, err := d.cmd.StderrPipe()
	if err != nil {
		return err
	}
	logf, err := os.Create(d.conf + ".log")
	if err != nil {
		return err
	}
	if err := d.cmd.Start(); err != nil {
		logf.Close()
		return fmt.Errorf("start %s daemon: %w", d.name, err)
	}
	d.done = make(chan error, 1)
	go func() {
		sc := bufio.NewScanner(stderr)
		for sc.Scan() {
			d.logMu.Lock()
			d.log = append(d.log, sc.Text())
			d.logMu.Unlock()
			fmt.Fprintln(logf, sc.Text())
		}
		logf.Close()
		d.done <- d.cmd.Wait()
	}()
	return nil
}

func (d *demoDaemon) waitReady(ctx context.Context) error {
	deadline := time.Now().Add(10 * time.Second)
	for {
		if _, err := d.client().Do(ctx, control.Request{Cmd: "ike-list"}); err == nil {
			return nil
		}
		select {
		case err := <-d.done:
			d.done <- err
			return fmt.Errorf("%s daemon exited: %v\n%s", d.name, err, d.logTail())
		default:
		}
		if time.Now().After(deadline) {
			return fmt.Errorf("%s daemon not answering on %s\n%s", d.name, d.sock, d.logTail())
		}
		time.Sleep(50 * time.Millisecond)
	}
}

func (d *demoDaemon) logTail() string {
	d.logMu.Lock()
	defer d.logMu.Unlock()
	return strings.Join(d.log, "\n")
}

func (d *demoDaemon) stop() error {
	if d.cmd == nil || d.cmd.Process == nil {
		return nil
	}
	d.cmd.Process.Signal(syscall.SIGTERM)
	select {
	case err := <-d.done:
		d.cmd = nil
		if err != nil {
			return fmt.Errorf("%s daemon: %v\n%s", d.name, err, d.logTail())
		}
		return nil
	case <-time.After(10 * time.Second):
		d.cmd.Process.Kill()
		return fmt.Errorf("%s daemon did not stop within 10s", d.name)
	}
}

func (d *demoDaemon) kill() {
	if d.cmd != nil && d.cmd.Process != nil {
		d.cmd.Process.Kill()
		<-d.done
	}
}

// freeUDPPorts returns n UDP ports of 127.0.0.1 free a moment ago.
func freeUDPPorts(n int) ([]int, error) {
	var ports []int
	var conns []net.PacketConn
	defer func() {
		for _, c := range conns {
			c.Close()
		}
	}()
	for range n {
		c, err := net.ListenPacket("udp4", "127.0.0.1:0")
		if err != nil {
			return nil, err
		}
		conns = append(conns, c)
		ports = append(ports, c.LocalAddr().(*net.UDPAddr).Port)
	}
	return ports, nil
}
