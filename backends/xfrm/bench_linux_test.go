package xfrm

import (
	"context"
	"encoding/hex"
	"fmt"
	"net"
	"net/netip"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"sync/atomic"
	"testing"
	"time"

	"github.com/keyplane/keyplane/iana"
	"github.com/keyplane/keyplane/internal/lab"
	"github.com/keyplane/keyplane/kernelops"
	"github.com/vishvananda/netlink"
	"github.com/vishvananda/netlink/nl"
	"golang.org/x/sys/unix"
)

// Benchmarks against the baselines the issue names, side by side in one
// run (ratios are computed from ns/op of the sub-benchmarks):
//
//	InstallPolicies  10,000 policies (host): keyplane batch vs netlink.Handle
//	                 one request at a time vs `ip -batch`
//	InstallSAs       10,000 SAs (VM): the same three, and the raw floor:
//	                 the same NEWSA messages encoded before the timer starts
//	                 and written in bursts on a plain netlink socket — what
//	                 any Go caller of this kernel can at best reach
//	DumpPolicies     100,000 policies (host): keyplane's streaming dump vs
//	                 netlink.XfrmPolicyList, time and bytes allocated
//	UsageScan        10,000 SAs (VM): one bulk dump vs one GETSA per SA
//
// Run: go test -run '^$' -bench . -benchtime 5x ./backends/xfrm (host), or
// in the guest through the VM lab with -test.bench.

const (
	benchPolicies = 10_000
	benchDump     = 100_000
	benchSAs      = 10_000
)

var (
	benchLocal, benchRemote = netip.MustParseAddr("192.0.2.1"), netip.MustParseAddr("192.0.2.2")
	benchInner              = netip.MustParseAddr("10.2.0.1")
)

func benchPolicy(i int, reqid uint32) *kernelops.Policy {
	return &kernelops.Policy{
		Selector: kernelops.Selector{Src: netip.PrefixFrom(netip.AddrFrom4([4]byte{10, byte(100 + i>>16), byte(i >> 8), byte(i)}), 32),
			Dst: netip.PrefixFrom(benchInner, 32)},
		Dir: kernelops.DirOut, Action: kernelops.ActionIPsec, Priority: 1000,
		Templates: []kernelops.Template{{Src: benchLocal, Dst: benchRemote, Proto: kernelops.ProtoESP, Mode: kernelops.ModeTunnel, ReqID: reqid}},
	}
}

func ipnet(p netip.Prefix) *net.IPNet {
	return &net.IPNet{IP: net.IP(p.Addr().AsSlice()), Mask: net.CIDRMask(p.Bits(), p.Addr().BitLen())}
}

func netlinkPolicy(p *kernelops.Policy) *netlink.XfrmPolicy {
	t := p.Templates[0]
	return &netlink.XfrmPolicy{
		Src: ipnet(p.Selector.Src), Dst: ipnet(p.Selector.Dst), Dir: netlink.XFRM_DIR_OUT, Priority: int(p.Priority),
		Tmpls: []netlink.XfrmPolicyTmpl{{Src: net.IP(t.Src.AsSlice()), Dst: net.IP(t.Dst.AsSlice()), Proto: netlink.XFRM_PROTO_ESP,
			Mode: netlink.XFRM_MODE_TUNNEL, Reqid: int(t.ReqID)}},
	}
}

func ipPolicyLine(p *kernelops.Policy) string {
	t := p.Templates[0]
	return fmt.Sprintf("xfrm policy add src %s dst %s dir out priority %d tmpl src %s dst %s proto esp mode tunnel reqid %d\n",
		p.Selector.Src, p.Selector.Dst, p.Priority, t.Src, t.Dst, t.ReqID)
}

// ipBatch writes lines to a file and runs `ip -n NS -batch FILE`.
func ipBatch(b *testing.B, ns *lab.NS, lines []string, flush func(testing.TB, *lab.NS)) {
	b.Helper()
	f := filepath.Join(b.TempDir(), "batch")
	if err := os.WriteFile(f, []byte(strings.Join(lines, "")), 0o600); err != nil {
		b.Fatal(err)
	}
	b.ResetTimer()
	for b.Loop() {
		if out, err := runCmd("ip", "-n", ns.Name, "-batch", f); err != nil {
			b.Fatalf("ip -batch: %v: %s", err, out)
		}
		b.StopTimer()
		flush(b, ns)
		b.StartTimer()
	}
}

func flushAll(b testing.TB, ns *lab.NS) {
	if out, err := runCmd("ip", "-n", ns.Name, "xfrm", "policy", "flush"); err != nil {
		b.Fatalf("flush: %v: %s", err, out)
	}
	if out, err := runCmd("ip", "-n", ns.Name, "xfrm", "state", "flush"); err != nil {
		b.Fatalf("flush: %v: %s", err, out)
	}
}

// flushSAs is flushAll for the SA benchmarks: the kernel frees flushed SAs
// later (xfrm_state_gc, a cipher each), so it is given time before the
// next timed install, which would pay for it otherwise.
func flushSAs(b testing.TB, ns *lab.NS) {
	flushAll(b, ns)
	time.Sleep(2 * time.Second)
}

func xfrmHandle(b testing.TB, ns *lab.NS) *netlink.Handle {
	h, err := netlink.NewHandleAt(ns.Handle, unix.NETLINK_XFRM)
	if err != nil {
		b.Fatal(err)
	}
	b.Cleanup(h.Close)
	return h
}

func BenchmarkInstallPolicies(b *testing.B) {
	lab.RequireRoot(b)
	kp, ns := fresh(b, kernelops.Options{})
	ps := make([]*kernelops.Policy, benchPolicies)
	for i := range ps {
		ps[i] = benchPolicy(i, kp.Options().ReqIDMin)
	}
	b.Run("impl=keyplane-batch", func(b *testing.B) {
		keyplaneApply(b, kp, len(ps), func(i int) kernelops.Op {
			return kernelops.Op{Kind: kernelops.OpAddPolicy, Policy: ps[i]}
		}, func() { flushAll(b, ns) })
		b.ReportMetric(float64(len(ps)), "policies/op")
	})
	b.Run("impl=netlink-handle", func(b *testing.B) {
		h := xfrmHandle(b, ns)
		nps := make([]*netlink.XfrmPolicy, len(ps))
		for i, p := range ps {
			nps[i] = netlinkPolicy(p)
		}
		for b.Loop() {
			for _, p := range nps {
				if err := h.XfrmPolicyAdd(p); err != nil {
					b.Fatal(err)
				}
			}
			b.StopTimer()
			flushAll(b, ns)
			b.StartTimer()
		}
		b.ReportMetric(float64(len(ps)), "policies/op")
	})
	b.Run("impl=ip-batch", func(b *testing.B) {
		lines := make([]string, len(ps))
		for i, p := range ps {
			lines[i] = ipPolicyLine(p)
		}
		ipBatch(b, ns, lines, flushAll)
		b.ReportMetric(float64(len(ps)), "policies/op")
	})
}

func BenchmarkDumpPolicies(b *testing.B) {
	lab.RequireRoot(b)
	kp, ns := fresh(b, kernelops.Options{})
	ops := make([]kernelops.Op, benchDump)
	for i := range ops {
		ops[i] = kernelops.Op{Kind: kernelops.OpAddPolicy, Policy: benchPolicy(i, kp.Options().ReqIDMin)}
	}
	if err := kp.Apply(context.Background(), ops); err != nil {
		b.Fatal(err)
	}
	ops = nil
	b.Run("impl=keyplane-stream", func(b *testing.B) {
		b.ReportAllocs()
		for b.Loop() {
			n := 0
			for e, err := range kp.Policies(context.Background()) {
				if err != nil {
					b.Fatal(err)
				}
				n += len(e.Templates)
			}
			if n != benchDump {
				b.Fatalf("dumped %d policies", n)
			}
		}
		b.ReportMetric(benchDump, "policies/op")
	})
	b.Run("impl=netlink-XfrmPolicyList", func(b *testing.B) {
		h := xfrmHandle(b, ns)
		b.ReportAllocs()
		for b.Loop() {
			ps, err := h.XfrmPolicyList(netlink.FAMILY_ALL)
			if err != nil {
				b.Fatal(err)
			}
			if len(ps) < benchDump {
				b.Fatalf("listed %d policies", len(ps))
			}
		}
		b.ReportMetric(benchDump, "policies/op")
	})
}

func benchSA(i int, reqid uint32, key []byte) *kernelops.SA {
	return &kernelops.SA{
		ID:   kernelops.SAID{Src: benchLocal, Dst: benchRemote, SPI: 0x10000 + uint32(i), Proto: kernelops.ProtoESP},
		Mode: kernelops.ModeTunnel, ReqID: reqid, ReplayWindow: 32,
		Encryption: kernelops.Encryption{ID: iana.EncrAESGCM16, KeyBits: 128, Key: key},
	}
}

func BenchmarkInstallSAs(b *testing.B) {
	lab.RequireRoot(b)
	kp, ns := fresh(b, kernelops.Options{})
	needESP(b, kp)
	key := make([]byte, 20)
	sas := make([]*kernelops.SA, benchSAs)
	for i := range sas {
		sas[i] = benchSA(i, kp.Options().ReqIDMin, key)
	}
	b.Run("impl=keyplane-batch", func(b *testing.B) {
		keyplaneBatch(b, kp, ns, sas)
		b.ReportMetric(float64(len(sas)), "SAs/op")
	})
	b.Run("impl=raw-floor", func(b *testing.B) {
		rawFloor(b, kp, ns, sas)
		b.ReportMetric(float64(len(sas)), "SAs/op")
	})
	b.Run("impl=netlink-handle", func(b *testing.B) {
		h := xfrmHandle(b, ns)
		nss := make([]*netlink.XfrmState, len(sas))
		for i, sa := range sas {
			nss[i] = &netlink.XfrmState{Src: net.IP(sa.ID.Src.AsSlice()), Dst: net.IP(sa.ID.Dst.AsSlice()), Proto: netlink.XFRM_PROTO_ESP,
				Mode: netlink.XFRM_MODE_TUNNEL, Spi: int(sa.ID.SPI), Reqid: int(sa.ReqID), ReplayWindow: 32,
				Aead: &netlink.XfrmStateAlgo{Name: "rfc4106(gcm(aes))", Key: key, ICVLen: 128}}
		}
		for b.Loop() {
			for _, s := range nss {
				if err := h.XfrmStateAdd(s); err != nil {
					b.Fatal(err)
				}
			}
			b.StopTimer()
			flushSAs(b, ns)
			b.StartTimer()
		}
		b.ReportMetric(float64(len(sas)), "SAs/op")
	})
	b.Run("impl=ip-batch", func(b *testing.B) {
		lines := make([]string, len(sas))
		for i, sa := range sas {
			lines[i] = fmt.Sprintf("xfrm state add src %s dst %s proto esp spi %#x reqid %d mode tunnel replay-window 32 aead rfc4106(gcm(aes)) 0x%s 128\n",
				sa.ID.Src, sa.ID.Dst, sa.ID.SPI, sa.ReqID, hex.EncodeToString(key))
		}
		ipBatch(b, ns, lines, flushSAs)
		b.ReportMetric(float64(len(sas)), "SAs/op")
	})
}

// BenchmarkInstallSAsBurst sizes sendmsg batches: the raw floor and
// keyplane's batch at several messages per sendmsg (VM only, like
// InstallSAs).
func BenchmarkInstallSAsBurst(b *testing.B) {
	lab.RequireRoot(b)
	kp, ns := fresh(b, kernelops.Options{})
	needESP(b, kp)
	key := make([]byte, 20)
	sas := make([]*kernelops.SA, benchSAs)
	for i := range sas {
		sas[i] = benchSA(i, kp.Options().ReqIDMin, key)
	}
	defer func(m, n int) { batchMaxMsgs, batchMaxBytes = m, n }(batchMaxMsgs, batchMaxBytes)
	batchMaxBytes = 768 << 10 // within the sockets' 1 MiB send buffer
	for _, n := range []int{16, 64, 256, 1024, 2048} {
		batchMaxMsgs = n
		b.Run(fmt.Sprintf("impl=raw-floor/burst=%d", n), func(b *testing.B) {
			rawFloor(b, kp, ns, sas)
			b.ReportMetric(float64(len(sas)), "SAs/op")
		})
		b.Run(fmt.Sprintf("impl=keyplane-batch/burst=%d", n), func(b *testing.B) {
			keyplaneBatch(b, kp, ns, sas)
			b.ReportMetric(float64(len(sas)), "SAs/op")
		})
	}
}

// keyplaneBatch installs sas through the backend's batch path once per
// iteration, flushing them (untimed) after each.
func keyplaneBatch(b *testing.B, kp *Backend, ns *lab.NS, sas []*kernelops.SA) {
	b.Helper()
	keyplaneApply(b, kp, len(sas), func(i int) kernelops.Op {
		return kernelops.Op{Kind: kernelops.OpAddSA, SA: sas[i]}
	}, func() { flushSAs(b, ns) })
}

// keyplaneApply times, per iteration, making the n ops (as a caller would)
// and one Apply of them; flush runs outside the timer.
func keyplaneApply(b *testing.B, kp *Backend, n int, op func(i int) kernelops.Op, flush func()) {
	b.Helper()
	ops := make([]kernelops.Op, n)
	for b.Loop() {
		for i := range ops {
			ops[i] = op(i)
		}
		if err := kp.Apply(context.Background(), ops); err != nil {
			b.Fatal(err)
		}
		b.StopTimer()
		flush()
		b.StartTimer()
	}
}

// rawFloor runs the raw floor as a benchmark, in sendmsg bursts as large
// as keyplane's chunks (batchMaxMsgs, batchMaxBytes): InstallSAsBurst
// shows that larger bursts are faster here, so a floor with smaller ones
// would be no floor.
func rawFloor(b *testing.B, kp *Backend, ns *lab.NS, sas []*kernelops.SA) {
	b.Helper()
	f := newRawInstaller(b, kp, sas)
	b.ResetTimer()
	for b.Loop() {
		f.install(b)
		b.StopTimer()
		flushSAs(b, ns)
		b.StartTimer()
	}
}

// rawInstaller installs sas as pre-encoded NEWSA messages (the bytes
// keyplane sends), in bursts bounded as keyplane bounds its chunks, one
// sendmsg each on a blocking netlink socket of its own; only a burst's last message asks for an ack, which the
// kernel queues after any error of the burst, so one recvmsg per burst
// reads them all. Any error answer fails the benchmark.
type rawInstaller struct {
	fd       int
	bursts   [][]byte
	lastSeqs []uint32
	rbuf     []byte
}

func newRawInstaller(b *testing.B, kp *Backend, sas []*kernelops.SA) *rawInstaller {
	b.Helper()
	f := &rawInstaller{rbuf: make([]byte, 64<<10)}
	err := kp.d.ns.do(func() error {
		var err error
		f.fd, err = unix.Socket(unix.AF_NETLINK, unix.SOCK_RAW|unix.SOCK_CLOEXEC, unix.NETLINK_XFRM)
		return err
	})
	if err != nil {
		b.Fatal(err)
	}
	b.Cleanup(func() { unix.Close(f.fd) })
	for _, o := range []int{unix.SO_SNDBUFFORCE, unix.SO_RCVBUFFORCE} {
		if err := unix.SetsockoptInt(f.fd, unix.SOL_SOCKET, o, 4<<20); err != nil {
			b.Fatal(err)
		}
	}
	if err := unix.Bind(f.fd, &unix.SockaddrNetlink{Family: unix.AF_NETLINK}); err != nil {
		b.Fatal(err)
	}
	for j := 0; j < len(sas); {
		var mb msgBuilder
		last := 0
		for n := 0; j < len(sas) && n < batchMaxMsgs && len(mb.buf) < batchMaxBytes; j, n = j+1, n+1 {
			last = len(mb.buf)
			if err := appendSA(&mb, nl.XFRM_MSG_NEWSA, unix.NLM_F_REQUEST, uint32(j+1), sas[j], saOpts{SADir: kp.d.k.saDir()}); err != nil {
				b.Fatal(err)
			}
		}
		setAck(mb.buf[last:], true)
		f.bursts = append(f.bursts, mb.buf)
		f.lastSeqs = append(f.lastSeqs, uint32(j))
	}
	return f
}

func (f *rawInstaller) install(b *testing.B) {
	to := &unix.SockaddrNetlink{Family: unix.AF_NETLINK}
	for k, m := range f.bursts {
		if err := unix.Sendto(f.fd, m, 0, to); err != nil {
			b.Fatalf("sendmsg: %v", err)
		}
		for acked := false; !acked; {
			n, _, err := unix.Recvfrom(f.fd, f.rbuf, 0)
			if err != nil {
				b.Fatalf("recvmsg: %v", err)
			}
			for r := f.rbuf[:n]; len(r) > 0; {
				var msg nlMsg
				msg, r, err = nextMsg(r)
				if err != nil {
					b.Fatal(err)
				}
				if msg.Type != unix.NLMSG_ERROR {
					continue
				}
				e, err := parseNlError(msg)
				if err != nil {
					b.Fatal(err)
				}
				if e.Errno != 0 {
					b.Fatalf("NEWSA seq %d: %v", msg.Seq, &netlinkError{e})
				}
				if msg.Seq == f.lastSeqs[k] {
					acked = true
				}
			}
		}
	}
}

var pairedRuns atomic.Uint32

// BenchmarkInstallSAsPaired times keyplane's batch and the raw floor in
// turn within each iteration (which goes first alternates), so a shared
// machine's load drifts under both alike; keyplane/floor is the ratio of
// their times in that iteration.
func BenchmarkInstallSAsPaired(b *testing.B) {
	lab.RequireRoot(b)
	kp, ns := fresh(b, kernelops.Options{})
	needESP(b, kp)
	key := make([]byte, 20)
	sas := make([]*kernelops.SA, benchSAs)
	for i := range sas {
		sas[i] = benchSA(i, kp.Options().ReqIDMin, key)
	}
	f := newRawInstaller(b, kp, sas)
	ops := make([]kernelops.Op, len(sas))
	var kpTime, floorTime time.Duration
	runKP := func() {
		for i, sa := range sas {
			ops[i] = kernelops.Op{Kind: kernelops.OpAddSA, SA: sa}
		}
		t0 := time.Now()
		if err := kp.Apply(context.Background(), ops); err != nil {
			b.Fatal(err)
		}
		kpTime += time.Since(t0)
		flushSAs(b, ns)
	}
	runFloor := func() {
		t0 := time.Now()
		f.install(b)
		floorTime += time.Since(t0)
		flushSAs(b, ns)
	}
	n := 0
	for b.Loop() {
		// Which goes first alternates over iterations and over -count runs.
		if pairedRuns.Add(1)%2 == 1 {
			runKP()
			runFloor()
		} else {
			runFloor()
			runKP()
		}
		n++
	}
	b.ReportMetric(float64(kpTime.Nanoseconds())/float64(n*len(sas)), "keyplane-ns/SA")
	b.ReportMetric(float64(floorTime.Nanoseconds())/float64(n*len(sas)), "floor-ns/SA")
	b.ReportMetric(float64(floorTime)/float64(kpTime), "floor/keyplane")
}

func BenchmarkUsageScan(b *testing.B) {
	lab.RequireRoot(b)
	kp, ns := fresh(b, kernelops.Options{})
	needESP(b, kp)
	key := make([]byte, 20)
	ops := make([]kernelops.Op, benchSAs)
	ids := make([]kernelops.SAID, benchSAs)
	for i := range ops {
		sa := benchSA(i, kp.Options().ReqIDMin, key)
		ops[i] = kernelops.Op{Kind: kernelops.OpAddSA, SA: sa}
		ids[i] = sa.ID
	}
	if err := kp.Apply(context.Background(), ops); err != nil {
		b.Fatal(err)
	}
	ctx := context.Background()
	b.Run("impl=keyplane-bulk-dump", func(b *testing.B) {
		b.ReportAllocs()
		for b.Loop() {
			n := 0
			for _, err := range kp.Usage(ctx) {
				if err != nil {
					b.Fatal(err)
				}
				n++
			}
			if n != benchSAs {
				b.Fatalf("scanned %d SAs", n)
			}
		}
	})
	b.Run("impl=keyplane-getsa-per-sa", func(b *testing.B) {
		b.ReportAllocs()
		for b.Loop() {
			for _, id := range ids {
				if _, err := kp.GetSA(ctx, id); err != nil {
					b.Fatal(err)
				}
			}
		}
	})
	b.Run("impl=netlink-XfrmStateGet-per-sa", func(b *testing.B) {
		h := xfrmHandle(b, ns)
		b.ReportAllocs()
		q := &netlink.XfrmState{Src: net.IP(benchLocal.AsSlice()), Dst: net.IP(benchRemote.AsSlice()), Proto: netlink.XFRM_PROTO_ESP}
		for b.Loop() {
			for _, id := range ids {
				q.Spi = int(id.SPI)
				if _, err := h.XfrmStateGet(q); err != nil {
					b.Fatal(err)
				}
			}
		}
	})
}

func runCmd(name string, args ...string) (string, error) {
	out, err := exec.Command(name, args...).CombinedOutput()
	return string(out), err
}
