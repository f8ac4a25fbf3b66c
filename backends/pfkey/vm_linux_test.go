package pfkey_test

import (
	"context"
	"crypto/rand"
	"errors"
	"fmt"
	"net"
	"net/netip"
	"sync/atomic"
	"testing"
	"time"

	"github.com/keyplane/keyplane/backends/pfkey"
	"github.com/keyplane/keyplane/conformance"
	"github.com/keyplane/keyplane/iana"
	"github.com/keyplane/keyplane/internal/lab"
	"github.com/keyplane/keyplane/kernelops"
	"golang.org/x/sys/unix"
)

const eventWait = 20 * time.Second // generous: the guest kernel runs under emulation

var (
	spiSeq   atomic.Uint32
	reqidSeq atomic.Uint32
)

func nextSPI() uint32   { return 0x70000000 + spiSeq.Add(1) }
func nextReqID() uint32 { return kernelops.DefaultReqIDMin + 0x10 + reqidSeq.Add(1) }

func randKey(n int) kernelops.Key {
	k := make(kernelops.Key, n)
	rand.Read(k)
	return k
}

func sadOf(t *testing.T, b kernelops.Backend) kernelops.SAD {
	t.Helper()
	s, err := kernelops.As[kernelops.SAD](b)
	if err != nil {
		t.Fatal(err)
	}
	return s
}

func spdOf(t *testing.T, b kernelops.Backend) kernelops.SPD {
	t.Helper()
	s, err := kernelops.As[kernelops.SPD](b)
	if err != nil {
		t.Fatal(err)
	}
	return s
}

func must(t *testing.T, what string, err error) {
	t.Helper()
	if err != nil {
		t.Fatalf("%s: %v", what, err)
	}
}

func host(a netip.Addr) netip.Prefix { return netip.PrefixFrom(a, a.BitLen()) }

// tunnel is a pair of tunnel-mode SAs and the policies on both sides
// that carry innerA <-> innerB through them.
type tunnel struct {
	ab, ba *kernelops.SA // A->B and B->A
}

// suite picks a cipher and integrity algorithm with keys.
type suite struct {
	enc   kernelops.Encryption
	integ kernelops.Integrity
}

func mkSuite(t *testing.T, e kernelops.EncrID, i kernelops.IntegID) suite {
	t.Helper()
	info, _ := e.Info()
	bits := 0
	if info.KeyBits != nil {
		bits = info.KeyBits[0]
	}
	n, err := e.KeyLen(bits)
	must(t, "key length", err)
	ii, _ := i.Info()
	return suite{kernelops.Encryption{ID: e, KeyBits: bits, Key: randKey(n)}, kernelops.Integrity{ID: i, Key: randKey(ii.KeyLen)}}
}

// install puts the SA pair on both sides and the four policies.
func (s *site) install(t *testing.T, su suite, reqid uint32, mod func(*kernelops.SA)) tunnel {
	t.Helper()
	ctx := t.Context()
	p := s.pair
	mk := func(src, dst netip.Addr) *kernelops.SA {
		sa := &kernelops.SA{ID: kernelops.SAID{Src: src, Dst: dst, SPI: nextSPI(), Proto: kernelops.ProtoESP},
			Mode: kernelops.ModeTunnel, ReqID: reqid, Encryption: su.enc, Integrity: su.integ, ReplayWindow: 32}
		if mod != nil {
			mod(sa)
		}
		return sa
	}
	tn := tunnel{ab: mk(p.A4, p.B4), ba: mk(p.B4, p.A4)}
	for _, b := range []kernelops.Backend{s.a, s.b} {
		must(t, "add A->B SA", sadOf(t, b).AddSA(ctx, tn.ab.Clone()))
		must(t, "add B->A SA", sadOf(t, b).AddSA(ctx, tn.ba.Clone()))
	}
	pol := func(b kernelops.Backend, src, dst netip.Addr, dir kernelops.Direction, tsrc, tdst netip.Addr) {
		t.Helper()
		must(t, "add policy", spdOf(t, b).AddPolicy(ctx, &kernelops.Policy{
			Selector: kernelops.Selector{Src: host(src), Dst: host(dst)}, Dir: dir, Action: kernelops.ActionIPsec,
			Templates: []kernelops.Template{{Src: tsrc, Dst: tdst, Proto: kernelops.ProtoESP, Mode: kernelops.ModeTunnel, ReqID: reqid}}}))
	}
	pol(s.a, innerA, innerB, kernelops.DirOut, p.A4, p.B4)
	pol(s.a, innerB, innerA, kernelops.DirIn, p.B4, p.A4)
	pol(s.b, innerB, innerA, kernelops.DirOut, p.B4, p.A4)
	pol(s.b, innerA, innerB, kernelops.DirIn, p.A4, p.B4)
	return tn
}

// listen opens a UDP socket on addr inside ns.
func listen(t *testing.T, ns *lab.NS, addr netip.AddrPort) *net.UDPConn {
	t.Helper()
	var c *net.UDPConn
	must(t, "listen", ns.Do(func() error {
		var err error
		c, err = net.ListenUDP("udp", net.UDPAddrFromAddrPort(addr))
		return err
	}))
	t.Cleanup(func() { c.Close() })
	return c
}

// expectDatagrams reads n datagrams of size bytes from c.
func expectDatagrams(t *testing.T, c *net.UDPConn, n, size int) {
	t.Helper()
	buf := make([]byte, 65536)
	c.SetReadDeadline(time.Now().Add(eventWait))
	for i := range n {
		m, _, err := c.ReadFromUDPAddrPort(buf)
		if err != nil {
			t.Fatalf("datagram %d of %d did not arrive decrypted: %v", i+1, n, err)
		}
		if m != size {
			t.Fatalf("datagram %d: %d bytes, want %d", i+1, m, size)
		}
	}
}

// TestEveryClaimedAlgorithmCarriesTraffic installs, for every cipher and
// every integrity algorithm the backend claims, an SA pair through PF_KEY
// on two namespaces and sends UDP across: the peer's kernel decrypts it
// and both sides' counters move. Encryption and integrity are checked by
// the peer, not by reading back what was written.
func TestEveryClaimedAlgorithmCarriesTraffic(t *testing.T) {
	lab.RequireVM(t, "ESP through af_key SAs needs the VM kernel")
	probe := newSite(t, kernelops.Options{})
	algs := probe.a.Capabilities().Algorithms
	t.Logf("af_key algorithms: encryption %v, integrity %v", algs.Encryption, algs.Integrity)
	if !algs.HasEncr(iana.EncrAESCBC) || !algs.HasInteg(iana.IntegHMACSHA1_96) {
		t.Fatalf("the guest kernel lacks cbc(aes) or hmac(sha1) over PF_KEY: %+v", algs)
	}
	var suites []suite
	for _, e := range algs.Encryption {
		i := iana.IntegHMACSHA1_96
		if e == iana.EncrNull {
			i = iana.IntegHMACSHA512_256
		}
		suites = append(suites, mkSuite(t, e, i))
	}
	for _, i := range algs.Integrity {
		suites = append(suites, mkSuite(t, iana.EncrAESCBC, i))
	}
	for _, su := range suites {
		t.Run(fmt.Sprintf("%s+%s", su.enc.ID, su.integ.ID), func(t *testing.T) {
			s := newSite(t, kernelops.Options{})
			tn := s.install(t, su, nextReqID(), nil)
			rx := listen(t, s.pair.B, netip.AddrPortFrom(innerB, 9))
			const n, size = 5, 200
			must(t, "send", udpTraffic(s.pair.A).Send(t.Context(), flow(9), n, size))
			expectDatagrams(t, rx, n, size)
			out, err := sadOf(t, s.a).GetSA(t.Context(), tn.ab.ID)
			must(t, "get A's outbound SA", err)
			in, err := sadOf(t, s.b).GetSA(t.Context(), tn.ab.ID)
			must(t, "get B's inbound SA", err)
			if out.Counters.Packets != n || in.Counters.Packets != n || out.Counters.Bytes < n*size || in.Counters.Bytes < n*size {
				t.Fatalf("counters: out %+v, in %+v; want %d packets of %d bytes", out.Counters, in.Counters, n, size)
			}
			if out.Counters.FirstUse.IsZero() || out.Counters.AddTime.IsZero() {
				t.Errorf("out SA add/first-use time unset: %+v", out.Counters)
			}
		})
	}
}

func flow(dport uint16) conformance.Flow {
	return conformance.Flow{Src: innerA, Dst: innerB, Proto: 17, SrcPort: 40000, DstPort: dport}
}

// TestLifetimesAndAcquire: packet and add-time limits on an SA pair that
// carries real traffic raise soft then hard SADB_EXPIREs; once the hard
// expire removed the outbound SA, the next packet raises SADB_ACQUIRE
// for the policy.
func TestLifetimesAndAcquire(t *testing.T) {
	lab.RequireVM(t, "kernel lifetimes need af_key and ESP")
	s := newSite(t, kernelops.Options{})
	src, err := kernelops.As[kernelops.EventSource](s.a)
	must(t, "events", err)
	sub, err := src.Subscribe(t.Context(), kernelops.SubscribeOptions{})
	must(t, "subscribe", err)
	defer sub.Close()
	reqid := nextReqID()
	tn := s.install(t, mkSuite(t, iana.EncrAESCBC, iana.IntegHMACSHA1_96), reqid, func(sa *kernelops.SA) {
		sa.Lifetime.Soft.Packets, sa.Lifetime.Hard.Packets = 5, 10
	})
	wait := func(what string, pred func(kernelops.Event) bool) kernelops.Event {
		t.Helper()
		timer := time.NewTimer(eventWait)
		defer timer.Stop()
		for {
			select {
			case ev := <-sub.Events():
				if pred(ev) {
					return ev
				}
			case <-timer.C:
				t.Fatalf("no %s within %v", what, eventWait)
			}
		}
	}
	expireOf := func(id kernelops.SAID, hard bool) func(kernelops.Event) bool {
		return func(ev kernelops.Event) bool {
			x, ok := ev.(*kernelops.ExpireEvent)
			return ok && x.SA == id && x.Hard == hard
		}
	}
	must(t, "send", udpTraffic(s.pair.A).Send(t.Context(), flow(9), 6, 64))
	soft := wait("soft expire", expireOf(tn.ab.ID, false)).(*kernelops.ExpireEvent)
	if soft.Limit != kernelops.LimitPackets || soft.ReqID != reqid {
		t.Errorf("soft expire %+v, want packets limit and reqid %#x", soft, reqid)
	}
	must(t, "send", udpTraffic(s.pair.A).Send(t.Context(), flow(9), 5, 64))
	hard := wait("hard expire", expireOf(tn.ab.ID, true)).(*kernelops.ExpireEvent)
	if hard.Limit != kernelops.LimitPackets {
		t.Errorf("hard expire %+v, want packets limit", hard)
	}
	if _, err := sadOf(t, s.a).GetSA(t.Context(), tn.ab.ID); !errors.Is(err, kernelops.ErrNotFound) {
		t.Fatalf("SA after its hard expire: %v", err)
	}
	must(t, "send", udpTraffic(s.pair.A).Send(t.Context(), flow(9), 1, 64))
	acq := wait("acquire", func(ev kernelops.Event) bool { _, ok := ev.(*kernelops.AcquireEvent); return ok }).(*kernelops.AcquireEvent)
	if acq.ReqID != reqid || acq.Src != s.pair.A4 || acq.Dst != s.pair.B4 || acq.Proto != kernelops.ProtoESP ||
		acq.Policy != (kernelops.PolicyID{Selector: kernelops.Selector{Src: host(innerA), Dst: host(innerB)}, Dir: kernelops.DirOut}) {
		t.Errorf("acquire %+v", acq)
	}

	// Add-time limits fire on their own, from the kernel's timers.
	timed := &kernelops.SA{ID: kernelops.SAID{Src: s.pair.A4, Dst: s.pair.B4, SPI: nextSPI(), Proto: kernelops.ProtoESP},
		Mode: kernelops.ModeTunnel, ReqID: nextReqID(), Encryption: tn.ab.Encryption, Integrity: tn.ab.Integrity,
		Lifetime: kernelops.Lifetimes{Soft: kernelops.Limits{AddTime: 2 * time.Second}, Hard: kernelops.Limits{AddTime: 3 * time.Second}}}
	must(t, "add timed SA", sadOf(t, s.a).AddSA(t.Context(), timed))
	for _, hard := range []bool{false, true} {
		ev := wait(fmt.Sprintf("add-time expire (hard %v)", hard), expireOf(timed.ID, hard)).(*kernelops.ExpireEvent)
		if ev.Limit != kernelops.LimitAddTime || ev.ReqID != timed.ReqID {
			t.Errorf("add-time expire %+v", ev)
		}
	}
}

// TestOverrunWhenTheKernelDrops: a stalled reader with a small receive
// buffer loses broadcasts; af_key drops them without telling, and the
// backend must still announce the loss.
func TestOverrunWhenTheKernelDrops(t *testing.T) {
	lab.RequireVM(t, "needs af_key")
	// Cleanups run last-in first-out: the hooks are restored after the
	// backend (registered later) has stopped its reader.
	t.Cleanup(pfkey.SetEventRcvBuf(8 << 10))
	release, restore := pfkey.StallEvents()
	t.Cleanup(restore)
	ns := lab.NewNS(t)
	b := openIn(t, ns, kernelops.Options{})
	t.Cleanup(release) // before the backend's Close, which waits for the reader
	src, _ := kernelops.As[kernelops.EventSource](b)
	sub, err := src.Subscribe(t.Context(), kernelops.SubscribeOptions{})
	must(t, "subscribe", err)
	defer sub.Close()
	// Every SADB_ADD is broadcast to every PF_KEY socket, the event
	// socket included: 200 of them overflow 8 KiB.
	sad := sadOf(t, b)
	su := mkSuite(t, iana.EncrAESCBC, iana.IntegHMACSHA1_96)
	for range 200 {
		must(t, "add", sad.AddSA(t.Context(), &kernelops.SA{
			ID:   kernelops.SAID{Src: netip.MustParseAddr("127.0.0.2"), Dst: netip.MustParseAddr("127.0.0.3"), SPI: nextSPI(), Proto: kernelops.ProtoESP},
			Mode: kernelops.ModeTunnel, ReqID: nextReqID(), Encryption: su.enc, Integrity: su.integ}))
	}
	release()
	timer := time.NewTimer(eventWait)
	defer timer.Stop()
	for {
		select {
		case ev := <-sub.Events():
			if o, ok := ev.(*kernelops.OverrunEvent); ok {
				t.Logf("overrun: %+v", o)
				return
			}
		case <-timer.C:
			t.Fatalf("no overrun after the kernel had to drop broadcasts")
		}
	}
}

// TestLossCheck exercises the receive-queue check on a raw PF_KEY socket:
// filled past its buffer it says "may have lost"; drained, it does not.
func TestLossCheck(t *testing.T) {
	lab.RequireVM(t, "needs af_key")
	ns := lab.NewNS(t)
	var fd int
	must(t, "socket", ns.Do(func() error {
		var err error
		fd, err = unix.Socket(unix.AF_KEY, unix.SOCK_RAW, 2)
		return err
	}))
	defer unix.Close(fd)
	must(t, "rcvbuf", unix.SetsockoptInt(fd, unix.SOL_SOCKET, unix.SO_RCVBUF, 4096))
	if pfkey.MayHaveLost(fd) {
		t.Fatalf("empty socket reported as lossy")
	}
	b := openIn(t, ns, kernelops.Options{})
	sad := sadOf(t, b)
	su := mkSuite(t, iana.EncrAESCBC, iana.IntegHMACSHA1_96)
	for range 50 {
		must(t, "add", sad.AddSA(t.Context(), &kernelops.SA{
			ID:   kernelops.SAID{Src: netip.MustParseAddr("127.0.0.2"), Dst: netip.MustParseAddr("127.0.0.3"), SPI: nextSPI(), Proto: kernelops.ProtoESP},
			Mode: kernelops.ModeTunnel, ReqID: nextReqID(), Encryption: su.enc, Integrity: su.integ}))
	}
	if !pfkey.MayHaveLost(fd) {
		t.Fatalf("a socket left unread through 50 broadcasts is not reported as lossy")
	}
	buf := make([]byte, 65536)
	for {
		if _, err := unix.Read(fd, buf); err != nil {
			break
		}
		if !pfkey.MayHaveLost(fd) {
			return
		}
	}
	t.Fatalf("drained socket still reported as lossy")
}

// TestIKESocketsBypassBlockPolicies: with policies that drop all UDP
// between the two hosts, IKE sockets still talk (their per-socket bypass
// comes first) and an ordinary socket does not.
func TestIKESocketsBypassBlockPolicies(t *testing.T) {
	lab.RequireVM(t, "per-socket PF_KEY policies need af_key")
	s := newSite(t, kernelops.Options{})
	p := s.pair
	ctx := t.Context()
	block := func(b kernelops.Backend, from, to netip.Addr) {
		for _, d := range []kernelops.Direction{kernelops.DirOut, kernelops.DirIn} {
			src, dst := from, to
			if d == kernelops.DirIn {
				src, dst = to, from
			}
			must(t, "block", spdOf(t, b).AddPolicy(ctx, &kernelops.Policy{
				Selector: kernelops.Selector{Src: host(src), Dst: host(dst), Proto: 17}, Dir: d, Action: kernelops.ActionBlock}))
		}
	}
	block(s.a, p.A4, p.B4)
	block(s.b, p.B4, p.A4)
	listenIKE := func(b kernelops.Backend, a netip.Addr) kernelops.IKEConn {
		sk, err := kernelops.As[kernelops.Sockets](b)
		must(t, "sockets", err)
		c, err := sk.ListenIKE(ctx, kernelops.IKEListen{Addr: netip.AddrPortFrom(a, 500)})
		must(t, "listen IKE", err)
		t.Cleanup(func() { c.Close() })
		return c
	}
	ia, ib := listenIKE(s.a, p.A4), listenIKE(s.b, p.B4)
	msg := []byte("IKE_SA_INIT")
	_, err := ia.WriteTo(msg, netip.AddrPortFrom(p.A4, 500), netip.AddrPortFrom(p.B4, 500))
	must(t, "IKE write", err)
	got := make(chan string, 1)
	go func() {
		buf := make([]byte, 100)
		n, local, remote, err := ib.ReadFrom(buf)
		got <- fmt.Sprintf("%q %v %v %v", buf[:n], local, remote, err)
	}()
	want := fmt.Sprintf("%q %v %v %v", msg, netip.AddrPortFrom(p.B4, 500), netip.AddrPortFrom(p.A4, 500), nil)
	select {
	case g := <-got:
		if g != want {
			t.Fatalf("IKE datagram: got %s, want %s", g, want)
		}
	case <-time.After(eventWait):
		t.Fatalf("IKE datagram blocked despite the bypass")
	}
	plain := listen(t, p.B, netip.AddrPortFrom(p.B4, 5000))
	var sendErr error
	p.A.Do(func() error {
		c, err := net.DialUDP("udp", nil, net.UDPAddrFromAddrPort(netip.AddrPortFrom(p.B4, 5000)))
		if err != nil {
			sendErr = err
			return nil
		}
		defer c.Close()
		_, sendErr = c.Write(msg)
		return nil
	})
	plain.SetReadDeadline(time.Now().Add(time.Second))
	if _, _, err := plain.ReadFromUDPAddrPort(make([]byte, 100)); err == nil {
		t.Fatalf("an ordinary socket got through the block policy (send error %v)", sendErr)
	}
	t.Logf("ordinary socket: send error %v, nothing received", sendErr)
}

// TestNATMappingEvent: ESP-in-UDP arriving from another port than the
// inbound SA's makes the kernel raise SADB_X_NAT_T_NEW_MAPPING.
func TestNATMappingEvent(t *testing.T) {
	lab.RequireVM(t, "ESP-in-UDP needs af_key and esp4")
	s := newSite(t, kernelops.Options{})
	p := s.pair
	ctx := t.Context()
	sk, _ := kernelops.As[kernelops.Sockets](s.b)
	nat, err := sk.ListenIKE(ctx, kernelops.IKEListen{Addr: netip.AddrPortFrom(p.B4, 4500), Encap: true})
	must(t, "listen NAT-T", err)
	defer nat.Close()
	src, _ := kernelops.As[kernelops.EventSource](s.b)
	sub, err := src.Subscribe(ctx, kernelops.SubscribeOptions{Kinds: kernelops.KindMapping})
	must(t, "subscribe", err)
	defer sub.Close()
	reqid := nextReqID()
	su := mkSuite(t, iana.EncrAESCBC, iana.IntegHMACSHA1_96)
	id := kernelops.SAID{Src: p.A4, Dst: p.B4, SPI: nextSPI(), Proto: kernelops.ProtoESP}
	out := &kernelops.SA{ID: id, Mode: kernelops.ModeTunnel, ReqID: reqid, Encryption: su.enc, Integrity: su.integ,
		Encap: &kernelops.Encap{SrcPort: 4500, DstPort: 4500}}
	in := out.Clone()
	in.Encap.SrcPort = 4501 // where B believes A sends from
	must(t, "A: add", sadOf(t, s.a).AddSA(ctx, out))
	must(t, "B: add", sadOf(t, s.b).AddSA(ctx, in))
	must(t, "A: policy", spdOf(t, s.a).AddPolicy(ctx, &kernelops.Policy{
		Selector: kernelops.Selector{Src: host(innerA), Dst: host(innerB)}, Dir: kernelops.DirOut, Action: kernelops.ActionIPsec,
		Templates: []kernelops.Template{{Src: p.A4, Dst: p.B4, Proto: kernelops.ProtoESP, Mode: kernelops.ModeTunnel, ReqID: reqid}}}))
	must(t, "send", udpTraffic(p.A).Send(ctx, flow(9), 1, 64))
	select {
	case ev := <-sub.Events():
		m, ok := ev.(*kernelops.MappingEvent)
		if !ok || m.SA != id || m.ReqID != reqid || m.Old != netip.AddrPortFrom(p.A4, 4501) || m.New != netip.AddrPortFrom(p.A4, 4500) {
			t.Fatalf("mapping event %T %+v, want SA %s reqid %#x from %s:4501 to :4500", ev, ev, id, reqid, p.A4)
		}
	case <-time.After(eventWait):
		t.Fatalf("no mapping event")
	}
}

// TestMigrateInInitialNamespace moves an SA pair and a policy with
// SADB_X_MIGRATE, and receives the kernel's MIGRATE broadcast, which
// af_key sends to the initial network namespace only. Loopback-range
// addresses: nothing is sent.
func TestMigrateInInitialNamespace(t *testing.T) {
	lab.RequireVM(t, "needs af_key; uses the guest's initial network namespace")
	b, err := kernelops.Open(t.Context(), pfkey.Name, kernelops.Options{})
	lab.Need(t, "PF_KEY (af_key)", err)
	defer b.Close()
	c := b.Capabilities()
	if !c.Has(kernelops.CapMigrate | kernelops.CapMigrateEvents) {
		t.Fatalf("in the initial namespace the backend must claim migrate and migrate-events: %s / %s",
			c.Why(kernelops.CapMigrate), c.Why(kernelops.CapMigrateEvents))
	}
	ctx := t.Context()
	sad, spd := sadOf(t, b), spdOf(t, b)
	src, _ := kernelops.As[kernelops.EventSource](b)
	sub, err := src.Subscribe(ctx, kernelops.SubscribeOptions{Kinds: kernelops.KindMigrate})
	must(t, "subscribe", err)
	defer sub.Close()
	l, r, nl := netip.MustParseAddr("127.0.0.2"), netip.MustParseAddr("127.0.0.3"), netip.MustParseAddr("127.0.0.4")
	reqid := nextReqID()
	su := mkSuite(t, iana.EncrAESCBC, iana.IntegHMACSHA1_96)
	out := &kernelops.SA{ID: kernelops.SAID{Src: l, Dst: r, SPI: nextSPI(), Proto: kernelops.ProtoESP}, Mode: kernelops.ModeTunnel,
		ReqID: reqid, Encryption: su.enc, Integrity: su.integ, ReplayWindow: 32}
	in := out.Clone()
	in.ID.Src, in.ID.Dst, in.ID.SPI = r, l, nextSPI()
	pol := &kernelops.Policy{Selector: kernelops.Selector{Src: netip.MustParsePrefix("10.91.0.0/24"), Dst: netip.MustParsePrefix("10.92.0.0/24")},
		Dir: kernelops.DirOut, Action: kernelops.ActionIPsec,
		Templates: []kernelops.Template{{Src: l, Dst: r, Proto: kernelops.ProtoESP, Mode: kernelops.ModeTunnel, ReqID: reqid}}}
	must(t, "add out", sad.AddSA(ctx, out))
	must(t, "add in", sad.AddSA(ctx, in))
	must(t, "add policy", spd.AddPolicy(ctx, pol))
	moved := func(id kernelops.SAID) kernelops.SAID {
		if id.Src == l {
			id.Src = nl
		}
		if id.Dst == l {
			id.Dst = nl
		}
		return id
	}
	t.Cleanup(func() {
		ctx := context.Background()
		spd.DeletePolicy(ctx, pol.ID())
		for _, id := range []kernelops.SAID{out.ID, in.ID, moved(out.ID), moved(in.ID)} {
			sad.DeleteSA(ctx, id)
		}
	})
	must(t, "migrate", b.(kernelops.Migrator).Migrate(ctx, kernelops.Migration{ReqID: reqid,
		Old: kernelops.Endpoints{Local: l, Remote: r}, New: kernelops.Endpoints{Local: nl, Remote: r},
		SAs: []kernelops.SAID{out.ID, in.ID}, Policies: []kernelops.PolicyID{pol.ID()}}))
	for _, id := range []kernelops.SAID{out.ID, in.ID} {
		if _, err := sad.GetSA(ctx, id); !errors.Is(err, kernelops.ErrNotFound) {
			t.Errorf("old SA %s still there: %v", id, err)
		}
		e, err := sad.GetSA(ctx, moved(id))
		if err != nil || e.ReqID != reqid || string(e.Encryption.Key) != string(su.enc.Key) {
			t.Errorf("moved SA %s: %v %+v", moved(id), err, e)
		}
	}
	pe, err := spd.GetPolicy(ctx, pol.ID())
	must(t, "policy after migrate", err)
	if tm := pe.Templates[0]; tm.Src != nl || tm.Dst != r {
		t.Errorf("template %s -> %s after migrate", tm.Src, tm.Dst)
	}
	select {
	case ev := <-sub.Events():
		m := ev.(*kernelops.MigrateEvent)
		if m.Policy != pol.ID() || len(m.Entries) != 1 || m.Entries[0].ReqID != reqid ||
			m.Entries[0].Old != (kernelops.Endpoints{Local: l, Remote: r}) || m.Entries[0].New != (kernelops.Endpoints{Local: nl, Remote: r}) {
			t.Errorf("migrate event %+v", m)
		}
	case <-time.After(eventWait):
		t.Fatalf("no migrate event in the initial namespace")
	}
}

// TestFlushSparesForeign: FlushSAs and FlushPolicies remove what keyplane
// owns and leave another daemon's SAs and policies alone (PF_KEY's own
// FLUSH would take everything).
func TestFlushSparesForeign(t *testing.T) {
	lab.RequireVM(t, "needs af_key")
	ns := lab.NewNS(t)
	b := openIn(t, ns, kernelops.Options{})
	ctx := t.Context()
	sad, spd := sadOf(t, b), spdOf(t, b)
	su := mkSuite(t, iana.EncrAESCBC, iana.IntegHMACSHA1_96)
	mk := func(reqid uint32) *kernelops.SA {
		return &kernelops.SA{ID: kernelops.SAID{Src: netip.MustParseAddr("127.0.0.2"), Dst: netip.MustParseAddr("127.0.0.3"),
			SPI: nextSPI(), Proto: kernelops.ProtoESP}, Mode: kernelops.ModeTunnel, ReqID: reqid, Encryption: su.enc, Integrity: su.integ}
	}
	owned, foreign := mk(nextReqID()), mk(7)
	must(t, "add owned", sad.AddSA(ctx, owned))
	must(t, "add foreign", sad.AddSA(ctx, foreign))
	spi, err := sad.AllocSPI(ctx, kernelops.SPIRequest{Src: netip.MustParseAddr("127.0.0.3"), Dst: netip.MustParseAddr("127.0.0.2"),
		Proto: kernelops.ProtoESP, ReqID: nextReqID()})
	must(t, "alloc", err)
	pol := func(reqid uint32, port uint16) *kernelops.Policy {
		return &kernelops.Policy{Selector: kernelops.Selector{Src: netip.MustParsePrefix("10.3.0.0/24"), Dst: netip.MustParsePrefix("10.4.0.0/24"),
			Proto: 6, DstPort: port}, Dir: kernelops.DirOut, Action: kernelops.ActionIPsec,
			Templates: []kernelops.Template{{Src: netip.MustParseAddr("127.0.0.2"), Dst: netip.MustParseAddr("127.0.0.3"),
				Proto: kernelops.ProtoESP, Mode: kernelops.ModeTunnel, ReqID: reqid}}}
	}
	op, fp := pol(nextReqID(), 1), pol(7, 2)
	must(t, "add owned policy", spd.AddPolicy(ctx, op))
	must(t, "add foreign policy", spd.AddPolicy(ctx, fp))
	must(t, "flush SAs", sad.FlushSAs(ctx))
	must(t, "flush policies", spd.FlushPolicies(ctx))
	if _, err := sad.GetSA(ctx, owned.ID); !errors.Is(err, kernelops.ErrNotFound) {
		t.Errorf("owned SA survived: %v", err)
	}
	larval := kernelops.SAID{Src: netip.MustParseAddr("127.0.0.3"), Dst: netip.MustParseAddr("127.0.0.2"), SPI: spi, Proto: kernelops.ProtoESP}
	if _, err := sad.GetSA(ctx, larval); !errors.Is(err, kernelops.ErrNotFound) {
		t.Errorf("owned larval SA survived: %v", err)
	}
	if e, err := sad.GetSA(ctx, foreign.ID); err != nil || e.ReqID != 7 {
		t.Errorf("foreign SA: %v %+v", err, e)
	}
	if _, err := spd.GetPolicy(ctx, op.ID()); !errors.Is(err, kernelops.ErrNotFound) {
		t.Errorf("owned policy survived: %v", err)
	}
	if _, err := spd.GetPolicy(ctx, fp.ID()); err != nil {
		t.Errorf("foreign policy: %v", err)
	}
}

// TestDumpStopAndConcurrency: a dump cut short leaves the backend sound;
// dumps run side by side complete.
func TestDumpStopAndConcurrency(t *testing.T) {
	lab.RequireVM(t, "needs af_key")
	ns := lab.NewNS(t)
	b := openIn(t, ns, kernelops.Options{})
	ctx := t.Context()
	sad := sadOf(t, b)
	su := mkSuite(t, iana.EncrAESCBC, iana.IntegHMACSHA1_96)
	const n = 300
	ops := make([]kernelops.Op, n)
	for i := range ops {
		ops[i] = kernelops.Op{Kind: kernelops.OpAddSA, SA: &kernelops.SA{ID: kernelops.SAID{Src: netip.MustParseAddr("127.0.0.2"),
			Dst: netip.MustParseAddr("127.0.0.3"), SPI: nextSPI(), Proto: kernelops.ProtoESP}, Mode: kernelops.ModeTunnel,
			ReqID: nextReqID(), Encryption: su.enc, Integrity: su.integ}}
	}
	must(t, "batch add", kernelops.Apply(ctx, b, ops))
	for range 3 {
		i := 0
		for _, err := range sad.SAs(ctx) {
			must(t, "dump", err)
			if i++; i == 5 {
				break
			}
		}
	}
	errs := make(chan error, 4)
	for range 4 {
		go func() {
			count := 0
			for _, err := range sad.SAs(ctx) {
				if err != nil {
					errs <- err
					return
				}
				count++
			}
			if count != n {
				errs <- fmt.Errorf("dump saw %d SAs, want %d", count, n)
				return
			}
			errs <- nil
		}()
	}
	for range 4 {
		must(t, "concurrent dump", <-errs)
	}
}

// TestUpdateChangesLifetimesOnly: UPDATE of a mature SA changes its
// lifetimes; a key change is refused, not silently dropped.
func TestUpdateChangesLifetimesOnly(t *testing.T) {
	lab.RequireVM(t, "needs af_key")
	ns := lab.NewNS(t)
	b := openIn(t, ns, kernelops.Options{})
	ctx := t.Context()
	sad := sadOf(t, b)
	su := mkSuite(t, iana.EncrAESCBC, iana.IntegHMACSHA1_96)
	sa := &kernelops.SA{ID: kernelops.SAID{Src: netip.MustParseAddr("127.0.0.2"), Dst: netip.MustParseAddr("127.0.0.3"),
		SPI: nextSPI(), Proto: kernelops.ProtoESP}, Mode: kernelops.ModeTunnel, ReqID: nextReqID(), Encryption: su.enc, Integrity: su.integ}
	must(t, "add", sad.AddSA(ctx, sa))
	up := sa.Clone()
	up.Lifetime.Hard.AddTime, up.Lifetime.Soft.AddTime = time.Hour, 50*time.Minute
	must(t, "update lifetimes", sad.UpdateSA(ctx, up))
	e, err := sad.GetSA(ctx, sa.ID)
	must(t, "get", err)
	if e.Lifetime != up.Lifetime {
		t.Errorf("lifetimes %+v, want %+v", e.Lifetime, up.Lifetime)
	}
	rekey := up.Clone()
	rekey.Encryption.Key = randKey(len(rekey.Encryption.Key))
	if err := sad.UpdateSA(ctx, rekey); !errors.Is(err, kernelops.ErrNotSupported) {
		t.Errorf("key change through update: %v, want ErrNotSupported", err)
	}
}
