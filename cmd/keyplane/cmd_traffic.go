//go:build !no_nokernel

package main

import (
	"context"
	"fmt"
	"net/netip"
	"strconv"
	"strings"

	"github.com/keyplane/keyplane/backends/nokernel"
	"github.com/keyplane/keyplane/ike"
	"github.com/keyplane/keyplane/ike/control"
	"github.com/keyplane/keyplane/kernelops"
)

// On the nokernel model the daemon offers "traffic": simulated packets
// through a child's SAs in the daemon's own in-memory dataplane. The
// model carries no real packets, so a demo moves counters on both ends
// by sending on one side (outbound) and receiving on the other (inbound
// on the SA with the same SPI).
func init() {
	register(&command{name: "traffic", summary: "simulated packets through a child on a nokernel daemon: 'traffic -child NAME -dir out|in'", run: runTraffic})
	daemonHooks = append(daemonHooks, func(b kernelops.Backend, e *ike.Engine, s *control.Server) {
		if nk, ok := b.(*nokernel.Backend); ok {
			s.Handle("traffic", func(ctx context.Context, req control.Request) (control.Response, error) {
				return injectTraffic(ctx, nk, e, req)
			})
		}
	})
}

func runTraffic(ctx context.Context, e *env, args []string) error {
	fs := newFlags(e, "traffic")
	cf := addCtlFlags(e, fs)
	child := fs.String("child", "", "child SA name")
	dir := fs.String("dir", "out", "out: packets leave through the child; in: packets arrive on its inbound SA")
	packets := fs.Int("packets", 10, "number of packets")
	size := fs.Int("size", 100, "bytes per packet")
	if err := e.parse(fs, args); err != nil {
		return err
	}
	if *child == "" {
		return usageError{"-child is required"}
	}
	r, err := cf.client().Do(ctx, control.Request{Cmd: "traffic", Name: *child, Args: map[string]string{
		"dir": *dir, "packets": strconv.Itoa(*packets), "size": strconv.Itoa(*size)}})
	if err != nil {
		return err
	}
	if cf.json {
		return writeJSON(e.stdout, map[string]string{"result": r.Text})
	}
	fmt.Fprintln(e.stdout, r.Text)
	return nil
}

// hostIn picks a host address inside a negotiated selector ("10.1.0.0/16",
// "10.2.7.9/32[6/22-22]" or "a-b").
func hostIn(ts string) (netip.Addr, error) {
	first, _, _ := strings.Cut(ts, ",")
	first, _, _ = strings.Cut(first, "[")
	if p, err := netip.ParsePrefix(first); err == nil {
		a := p.Addr()
		if p.Bits() < a.BitLen() {
			a = a.Next()
		}
		return a, nil
	}
	if lo, _, ok := strings.Cut(first, "-"); ok {
		return netip.ParseAddr(lo)
	}
	return netip.Addr{}, fmt.Errorf("no address in selector %q", ts)
}

func injectTraffic(ctx context.Context, nk *nokernel.Backend, e *ike.Engine, req control.Request) (control.Response, error) {
	n, err := strconv.Atoi(req.Args["packets"])
	if err != nil || n < 1 || n > 1000000 {
		return control.Response{}, fmt.Errorf("packets: want 1 to 1000000")
	}
	size, err := strconv.Atoi(req.Args["size"])
	if err != nil || size < 1 || size > 65535 {
		return control.Response{}, fmt.Errorf("size: want 1 to 65535")
	}
	chs, err := e.Children(ctx)
	if err != nil {
		return control.Response{}, err
	}
	var ch *ike.ChildInfo
	for i := range chs {
		if chs[i].Name == req.Name && chs[i].State == "installed" {
			ch = &chs[i]
		}
	}
	if ch == nil {
		return control.Response{}, fmt.Errorf("no installed child %q", req.Name)
	}
	lh, err := hostIn(ch.LocalTS)
	if err != nil {
		return control.Response{}, err
	}
	rh, err := hostIn(ch.RemoteTS)
	if err != nil {
		return control.Response{}, err
	}
	verdicts := map[string]int{}
	var sa kernelops.SAID
	for range n {
		var p nokernel.Packet
		switch req.Args["dir"] {
		case "out":
			p = nokernel.Packet{Dir: kernelops.DirOut, Src: lh, Dst: rh, Proto: 17, SrcPort: 40000, DstPort: 5001, Len: size}
		case "in":
			spi, _ := strconv.ParseUint(ch.SPIIn, 16, 32)
			sa = kernelops.SAID{Src: netip.MustParseAddr(ch.Remote), Dst: netip.MustParseAddr(ch.Local), SPI: uint32(spi), Proto: kernelops.ProtoESP}
			p = nokernel.Packet{Dir: kernelops.DirIn, SA: sa, Src: rh, Dst: lh, Proto: 17, SrcPort: 5001, DstPort: 40000, Len: size}
		default:
			return control.Response{}, fmt.Errorf("dir: want out or in")
		}
		res, err := nk.Inject(ctx, p)
		if err != nil {
			return control.Response{}, err
		}
		v := res.Verdict.String()
		if res.Reason != "" {
			v += " (" + res.Reason + ")"
		}
		if len(res.SAs) > 0 {
			sa = res.SAs[0]
		}
		verdicts[v]++
	}
	var parts []string
	for v, c := range verdicts {
		parts = append(parts, fmt.Sprintf("%d %s", c, v))
	}
	src, dst := lh, rh
	if req.Args["dir"] == "in" {
		src, dst = rh, lh
	}
	return control.Response{Text: fmt.Sprintf("%s: %d x %d-byte packets %s %s -> %s via SA %s: %s",
		req.Name, n, size, req.Args["dir"], src, dst, sa, strings.Join(parts, ", "))}, nil
}
