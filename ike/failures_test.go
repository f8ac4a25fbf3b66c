package ike

import (
	"context"
	"errors"
	"fmt"
	"net"
	"net/netip"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/keyplane/keyplane/backends/nokernel"
	"github.com/keyplane/keyplane/ike/message"
	"github.com/keyplane/keyplane/kernelops"
)

func (p *peer) logText() string { return p.logs.String() }

// wantNotify fails unless err carries notify n, sent by the peer
// (fromPeer) or by us.
func wantNotify(t *testing.T, err error, n message.NotifyType, fromPeer bool) *NotifyError {
	t.Helper()
	var ne *NotifyError
	if !errors.As(err, &ne) {
		t.Fatalf("error %v (%T), want a *NotifyError %v", err, err, n)
	}
	if ne.Type != n || ne.FromPeer != fromPeer {
		t.Fatalf("error %v: notify %v from peer %v, want %v from peer %v", err, ne.Type, ne.FromPeer, n, fromPeer)
	}
	return ne
}

func TestWrongPSK(t *testing.T) {
	noLeaks(t)
	sa, sb := pairSides(t)
	sb.psk = "another secret"
	a := newPeer(t, "a", sa.config(t, "a"))
	b := newPeer(t, "b", sb.config(t, "b"))
	err := a.e.Initiate(ctxT(t, 5*time.Second), "a-net")
	wantNotify(t, err, message.AUTHENTICATION_FAILED, true)
	// b answers before it logs why: wait for the line.
	waitFor(t, "b's log to say why", 2*time.Second, func() bool {
		return strings.Contains(b.logText(), "does not verify with the pre-shared key of connection b")
	})
	a.expectEmpty(t)
	b.expectEmpty(t)
	waitFor(t, "no IKE SAs", 2*time.Second, func() bool { return len(a.sas(t)) == 0 && len(b.sas(t)) == 0 })
}

func TestNoProposalChosen(t *testing.T) {
	noLeaks(t)
	t.Run("ike", func(t *testing.T) {
		sa, sb := pairSides(t)
		sb.proposals = "aes256-sha256-ecp256"
		a := newPeer(t, "a", sa.config(t, "a"))
		b := newPeer(t, "b", sb.config(t, "b"))
		err := a.e.Initiate(ctxT(t, 5*time.Second), "a-net")
		wantNotify(t, err, message.NO_PROPOSAL_CHOSEN, true)
		if !strings.Contains(b.logText(), "no common proposal: ours aes256-sha256-ecp256") {
			t.Errorf("b's log does not say why:\n%s", b.logText())
		}
		a.expectEmpty(t)
		b.expectEmpty(t)
	})
	t.Run("esp", func(t *testing.T) {
		sa, sb := pairSides(t)
		sb.esp = "aes256-sha512"
		a := newPeer(t, "a", sa.config(t, "a"))
		b := newPeer(t, "b", sb.config(t, "b"))
		err := a.e.Initiate(ctxT(t, 5*time.Second), "a-net")
		wantNotify(t, err, message.NO_PROPOSAL_CHOSEN, true)
		// The IKE SA stays up without the child (RFC 7296 §1.2).
		if s := a.sas(t); len(s) != 1 || s[0].State != "established" || len(s[0].Children) != 0 {
			t.Errorf("a: %+v", s)
		}
		a.expectEmpty(t) // the allocated SPI was released
		b.expectEmpty(t)
	})
}

func TestTSUnacceptable(t *testing.T) {
	noLeaks(t)
	sa, sb := pairSides(t)
	sb.remoteTS = "10.9.0.0/16"
	a := newPeer(t, "a", sa.config(t, "a"))
	b := newPeer(t, "b", sb.config(t, "b"))
	err := a.e.Initiate(ctxT(t, 5*time.Second), "a-net")
	wantNotify(t, err, message.TS_UNACCEPTABLE, true)
	if !strings.Contains(b.logText(), "TS_UNACCEPTABLE") || !strings.Contains(b.logText(), "10.9.0.0/16") {
		t.Errorf("b's log does not say why:\n%s", b.logText())
	}
	a.expectEmpty(t)
	b.expectEmpty(t)
}

func TestTSNarrowing(t *testing.T) {
	noLeaks(t)
	sa, sb := pairSides(t)
	sa.localTS, sa.remoteTS = "10.1.0.0/16", "10.2.0.0/16"
	sb.localTS, sb.remoteTS = "10.2.5.0/24, 10.2.7.9[tcp/22]", "10.0.0.0/15"
	a := newPeer(t, "a", sa.config(t, "a"))
	b := newPeer(t, "b", sb.config(t, "b"))
	establish(t, a, b, "a-net")
	ca, cb := a.sas(t)[0].Children[0], b.sas(t)[0].Children[0]
	if ca.LocalTS != "10.1.0.0/16" || ca.RemoteTS != "10.2.5.0/24,10.2.7.9/32[6/22-22]" {
		t.Errorf("a narrowed to %s <-> %s", ca.LocalTS, ca.RemoteTS)
	}
	if cb.LocalTS != ca.RemoteTS || cb.RemoteTS != ca.LocalTS {
		t.Errorf("b has %s <-> %s", cb.LocalTS, cb.RemoteTS)
	}
	// Two selector pairs, three policies each.
	if _, pol := a.counts(t); pol != 6 {
		t.Errorf("a: %d policies, want 6", pol)
	}
}

func TestInvalidKERetry(t *testing.T) {
	noLeaks(t)
	sa, sb := pairSides(t)
	sa.proposals = "aes128gcm16-prfsha256-ecp256-x25519"
	sb.proposals = "aes128gcm16-prfsha256-x25519"
	a := newPeer(t, "a", sa.config(t, "a"))
	b := newPeer(t, "b", sb.config(t, "b"))
	establish(t, a, b, "a-net")
	if !strings.Contains(a.logText(), "INVALID_KE_PAYLOAD") || !strings.Contains(b.logText(), "INVALID_KE_PAYLOAD") {
		t.Errorf("no INVALID_KE_PAYLOAD round logged")
	}
	if s := a.sas(t)[0].Suite; !strings.Contains(s, "CURVE_25519") {
		t.Errorf("suite %s", s)
	}
}

// halfOpenSPI makes each halfOpenInit another initiator (the same SPIi
// from the same address is the same request sent again).
var halfOpenSPI atomic.Uint64

// halfOpenInit sends one IKE_SA_INIT request from a throwaway socket
// and reads the answer: a half-open SA at the responder.
func halfOpenInit(t *testing.T, to uint16) *message.Message {
	t.Helper()
	c, err := net.ListenUDP("udp4", &net.UDPAddr{IP: net.IPv4(127, 0, 0, 1)})
	if err != nil {
		t.Fatal(err)
	}
	defer c.Close()
	ke := make([]byte, 32)
	ke[0] = 9 // the X25519 base point: a valid public value
	m := &message.Message{Header: message.Header{SPIi: 0x1122334455667788 + halfOpenSPI.Add(1), Exchange: message.IKE_SA_INIT, Initiator: true},
		Payloads: []message.Payload{
			&message.SA{Proposals: []message.Proposal{{Num: 1, Protocol: message.ProtocolIKE, Transforms: []message.Transform{
				message.EncrTransform(message.EncrAESGCM16, 128), message.PRFTransform(message.PRFHMACSHA2256), message.KETransform(message.DHCurve25519)}}}},
			&message.KE{Group: message.DHCurve25519, Data: ke},
			&message.Nonce{Data: make([]byte, 32)},
		}}
	b, _ := m.Encode()
	if _, err := c.WriteToUDP(b, &net.UDPAddr{IP: net.IPv4(127, 0, 0, 1), Port: int(to)}); err != nil {
		t.Fatal(err)
	}
	c.SetReadDeadline(time.Now().Add(3 * time.Second))
	buf := make([]byte, 2048)
	n, _, err := c.ReadFromUDP(buf)
	if err != nil {
		t.Fatal(err)
	}
	r, err := message.Parse(buf[:n])
	if err != nil {
		t.Fatal(err)
	}
	return r
}

func TestCookieUnderLoad(t *testing.T) {
	noLeaks(t)
	sa, sb := pairSides(t)
	sb.daemonExtra = "cookie_threshold = 1"
	a := newPeer(t, "a", sa.config(t, "a"))
	b := newPeer(t, "b", sb.config(t, "b"))
	if r := halfOpenInit(t, sb.port); r.Find(message.PayloadSA) == nil {
		t.Fatalf("first request not answered in full: %v", r)
	}
	// Now one SA is half-open: the next initiator must show a cookie.
	if r := halfOpenInit(t, sb.port); r.Notify(message.COOKIE) == nil || r.SPIr != 0 {
		t.Fatalf("no COOKIE demanded: %v", r)
	}
	establish(t, a, b, "a-net")
	if !strings.Contains(a.logText(), "responder demands a COOKIE") || !strings.Contains(b.logText(), "demanding a COOKIE") {
		t.Errorf("no COOKIE round logged")
	}
}

// proxy relays UDP between an initiator and a responder's two ports,
// dropping what drop says. It makes the peers see a NAT (addresses and
// ports change on the way), so NAT-T is exercised too.
type proxy struct {
	t        *testing.T
	plain    *net.UDPConn
	nat      *net.UDPConn
	mu       sync.Mutex
	drop     func(m *message.Message, fromInitiator bool) bool
	dropped  []time.Time
	passedNT int // datagrams relayed on the NAT-T port
}

func newProxy(t *testing.T, to, toNAT uint16) *proxy {
	p := &proxy{t: t}
	var err error
	for _, x := range []struct {
		c    **net.UDPConn
		port uint16
		nat  bool
	}{{&p.plain, to, false}, {&p.nat, toNAT, true}} {
		*x.c, err = net.ListenUDP("udp4", &net.UDPAddr{IP: net.IPv4(127, 0, 0, 1)})
		if err != nil {
			t.Fatal(err)
		}
		up, err := net.ListenUDP("udp4", &net.UDPAddr{IP: net.IPv4(127, 0, 0, 1)})
		if err != nil {
			t.Fatal(err)
		}
		c, port, nat := *x.c, x.port, x.nat
		var mu sync.Mutex
		var client *net.UDPAddr
		relay := func(from, to *net.UDPConn, dst func() *net.UDPAddr, fromInitiator bool) {
			buf := make([]byte, 65536)
			for {
				n, addr, err := from.ReadFromUDP(buf)
				if err != nil {
					return
				}
				if fromInitiator {
					mu.Lock()
					client = addr
					mu.Unlock()
				}
				b := buf[:n]
				ike := b
				if nat && len(b) >= 4 {
					ike = b[4:]
				}
				if m, err := message.Parse(ike); err == nil {
					p.mu.Lock()
					d := p.drop != nil && p.drop(m, fromInitiator)
					if d {
						p.dropped = append(p.dropped, time.Now())
					}
					if nat {
						p.passedNT++
					}
					p.mu.Unlock()
					if d {
						continue
					}
				}
				if a := dst(); a != nil {
					to.WriteToUDP(b, a)
				}
			}
		}
		go relay(c, up, func() *net.UDPAddr { return &net.UDPAddr{IP: net.IPv4(127, 0, 0, 1), Port: int(port)} }, true)
		go relay(up, c, func() *net.UDPAddr { mu.Lock(); defer mu.Unlock(); return client }, false)
		t.Cleanup(func() { c.Close(); up.Close() })
	}
	return p
}

func (p *proxy) ports() (uint16, uint16) {
	return uint16(p.plain.LocalAddr().(*net.UDPAddr).Port), uint16(p.nat.LocalAddr().(*net.UDPAddr).Port)
}

func (p *proxy) setDrop(f func(m *message.Message, fromInitiator bool) bool) {
	p.mu.Lock()
	p.drop = f
	p.mu.Unlock()
}

func TestNATTraversalThroughProxy(t *testing.T) {
	noLeaks(t)
	sa, sb := pairSides(t)
	px := newProxy(t, sb.port, sb.natPort)
	sa.remotePort, sa.remoteNATPort = px.ports()
	a := newPeer(t, "a", sa.config(t, "a"))
	b := newPeer(t, "b", sb.config(t, "b"))
	establish(t, a, b, "a-net")
	ia, ib := a.sas(t)[0], b.sas(t)[0]
	if !ia.NATRemote || !ib.NATLocal {
		t.Errorf("NAT not detected: a %+v b %+v", ia, ib)
	}
	if ia.Children[0].Encap != true || ib.Children[0].Encap != true {
		t.Errorf("children not UDP-encapsulated")
	}
	px.mu.Lock()
	nt := px.passedNT
	px.mu.Unlock()
	if nt == 0 {
		t.Errorf("nothing went over the NAT-T port")
	}
	// The encapsulation ports are the floated IKE ports.
	for _, e := range dumpSAs(t, a.b) {
		if e.Encap == nil || (e.Encap.SrcPort != sa.natPort && e.Encap.DstPort != sa.natPort) {
			t.Errorf("a's SA %s encap %+v", e.ID, e.Encap)
		}
	}
	if err := b.e.Terminate(ctxT(t, 5*time.Second), "b"); err != nil {
		t.Fatal(err)
	}
	a.expectEmpty(t)
	b.expectEmpty(t)
}

func dumpSAs(t *testing.T, b *nokernel.Backend) []kernelops.SAEntry {
	var out []kernelops.SAEntry
	for e, err := range b.SAs(t.Context()) {
		if err != nil {
			t.Fatal(err)
		}
		out = append(out, *e)
	}
	return out
}

func TestRetransmitAndGiveUp(t *testing.T) {
	noLeaks(t)
	for _, stage := range []message.ExchangeType{message.IKE_SA_INIT, message.IKE_AUTH} {
		t.Run(stage.String(), func(t *testing.T) {
			sa, sb := pairSides(t)
			px := newProxy(t, sb.port, sb.natPort)
			sa.remotePort, sa.remoteNATPort = px.ports()
			px.setDrop(func(m *message.Message, fromInitiator bool) bool {
				return fromInitiator && m.Exchange == stage
			})
			a := newPeer(t, "a", sa.config(t, "a"))
			b := newPeer(t, "b", sb.config(t, "b"))
			start := time.Now()
			err := a.e.Initiate(ctxT(t, 10*time.Second), "a-net")
			if !errors.Is(err, ErrPeerNotResponding) {
				t.Fatalf("error %v, want ErrPeerNotResponding", err)
			}
			px.mu.Lock()
			times := append([]time.Time(nil), px.dropped...)
			px.mu.Unlock()
			// The first send and retransmit_tries = 3 retransmissions,
			// 200ms, 300ms, 450ms apart, then 675ms until giving up.
			if len(times) != 4 {
				t.Fatalf("%d transmissions, want 4", len(times))
			}
			// Timers never fire early, so the expected intervals are
			// lower bounds (load only makes them longer).
			want := []time.Duration{200 * time.Millisecond, 300 * time.Millisecond, 450 * time.Millisecond}
			for i := 1; i < len(times); i++ {
				if got := times[i].Sub(times[i-1]); got < want[i-1]-10*time.Millisecond {
					t.Errorf("retransmission %d came %s after the previous one, want at least %s", i, got, want[i-1])
				}
			}
			if el := time.Since(start); el < 1500*time.Millisecond {
				t.Errorf("gave up after %s, before the last timeout", el)
			}
			a.expectEmpty(t)
			waitFor(t, "a's IKE SA gone", 2*time.Second, func() bool { return len(a.sas(t)) == 0 })
			if stage == message.IKE_AUTH {
				// The responder's half-open SA stays until its timeout.
				b.expectEmpty(t)
			}
		})
	}
}

// faulty is a test double over the nokernel model: the Nth dataplane
// change (AllocSPI, AddSA, AddPolicy, ReplacePolicy) fails.
type faulty struct {
	*nokernel.Backend
	mu     sync.Mutex
	failAt int
	calls  int
	failed string
}

var errInjected = errors.New("injected failure")

func (f *faulty) hit(op string) error {
	f.mu.Lock()
	defer f.mu.Unlock()
	f.calls++
	if f.calls == f.failAt {
		f.failed = op
		return &kernelops.Error{Backend: "faulty", Op: op, Err: errInjected}
	}
	return nil
}

func (f *faulty) AllocSPI(ctx context.Context, r kernelops.SPIRequest) (uint32, error) {
	if err := f.hit("alloc SPI"); err != nil {
		return 0, err
	}
	return f.Backend.AllocSPI(ctx, r)
}

func (f *faulty) AddSA(ctx context.Context, sa *kernelops.SA) error {
	if err := f.hit("add SA"); err != nil {
		return err
	}
	return f.Backend.AddSA(ctx, sa)
}

func (f *faulty) AddPolicy(ctx context.Context, p *kernelops.Policy) error {
	if err := f.hit("add policy " + p.Dir.String()); err != nil {
		return err
	}
	return f.Backend.AddPolicy(ctx, p)
}

func (f *faulty) ReplacePolicy(ctx context.Context, p *kernelops.Policy) error {
	if err := f.hit("replace policy"); err != nil {
		return err
	}
	return f.Backend.ReplacePolicy(ctx, p)
}

// TestRollback fails each step of a child's installation in turn, on
// either side, and checks that nothing stays behind on either side and
// that the peer was told.
func TestRollback(t *testing.T) {
	noLeaks(t)
	// AllocSPI, inbound SA, outbound SA, out/in/fwd policies.
	const steps = 6
	for _, role := range []string{"initiator", "responder"} {
		for n := 1; n <= steps; n++ {
			t.Run(fmt.Sprintf("%s step %d", role, n), func(t *testing.T) {
				sa, sb := pairSides(t)
				var f *faulty
				wrap := withBackend(func(b *nokernel.Backend) kernelops.Backend {
					f = &faulty{Backend: b, failAt: n}
					return f
				})
				var a, b *peer
				if role == "initiator" {
					a = newPeer(t, "a", sa.config(t, "a"), wrap)
					b = newPeer(t, "b", sb.config(t, "b"))
				} else {
					a = newPeer(t, "a", sa.config(t, "a"))
					b = newPeer(t, "b", sb.config(t, "b"), wrap)
				}
				err := a.e.Initiate(ctxT(t, 5*time.Second), "a-net")
				if err == nil {
					t.Fatalf("initiate succeeded with step %d failing", n)
				}
				if role == "responder" {
					wantNotify(t, err, message.TEMPORARY_FAILURE, true)
				}
				f.mu.Lock()
				t.Logf("failed %q: %v", f.failed, err)
				f.mu.Unlock()
				a.expectEmpty(t)
				b.expectEmpty(t)
				// The IKE SA survives the failed child.
				waitFor(t, "no child on either side", 2*time.Second, func() bool {
					return installed(a.sas(t)) == 0 && installed(b.sas(t)) == 0
				})
			})
		}
	}
}

func TestAcquireInitiates(t *testing.T) {
	noLeaks(t)
	sa, sb := pairSides(t)
	sa.start = "trap"
	a := newPeer(t, "a", sa.config(t, "a"))
	b := newPeer(t, "b", sb.config(t, "b"))
	if s, pol := a.counts(t); s != 0 || pol != 1 {
		t.Fatalf("after start: %d SAs, %d policies; want the trap policy only", s, pol)
	}
	trapReqID := uint32(0)
	for p, err := range a.b.Policies(t.Context()) {
		if err == nil && p.Action == kernelops.ActionTrap {
			trapReqID = p.Templates[0].ReqID
		}
	}
	pkt := nokernel.Packet{Dir: kernelops.DirOut, Src: netip.MustParseAddr("10.1.2.3"), Dst: netip.MustParseAddr("10.2.3.4"), Proto: 17, SrcPort: 5000, DstPort: 53, Len: 100}
	res, err := a.b.Inject(t.Context(), pkt)
	if err != nil || !res.Acquire {
		t.Fatalf("no acquire: %+v %v", res, err)
	}
	waitFor(t, "child from the acquire", 5*time.Second, func() bool { return installed(a.sas(t)) == 1 && installed(b.sas(t)) == 1 })
	res, err = a.b.Inject(t.Context(), pkt)
	if err != nil || res.Verdict != nokernel.Protected {
		t.Fatalf("after the acquire: %+v %v", res, err)
	}
	// The child negotiated the trap's selectors: it has the trap's reqid,
	// so the trap's acquire state and the SA agree.
	if kids := childrenOf(t, a); len(kids) != 1 || kids[0].LocalTS != "10.1.0.0/16" || kids[0].ReqID != trapReqID {
		t.Errorf("the acquire's child %+v, want the trap's selectors and reqid %#x", kids, trapReqID)
	}
	// Deleting the child puts the trap back.
	if err := a.e.Terminate(ctxT(t, 5*time.Second), "a-net"); err != nil {
		t.Fatal(err)
	}
	waitFor(t, "trap back", 3*time.Second, func() bool { s, pol := a.counts(t); return s == 0 && pol == 1 })
	var action kernelops.Action
	for p, _ := range a.b.Policies(t.Context()) {
		action = p.Action
	}
	if action != kernelops.ActionTrap {
		t.Errorf("policy left is %s, want trap", action)
	}
	b.expectEmpty(t)
}

func TestHardExpireDeletes(t *testing.T) {
	noLeaks(t)
	sa, sb := pairSides(t)
	sa.extraChild = "rekey_time = 0\n life_time = 1s"
	a := newPeer(t, "a", sa.config(t, "a"))
	b := newPeer(t, "b", sb.config(t, "b"))
	establish(t, a, b, "a-net")
	a.waitEvent(t, 5*time.Second, func(e Event) bool { return e.Kind == "dataplane" && e.State == "hard-expire" })
	a.expectEmpty(t)
	b.expectEmpty(t)
	if len(a.sas(t)) != 1 || len(b.sas(t)) != 1 {
		t.Errorf("IKE SA gone with the child")
	}
}

func TestRekeyOnSoftExpire(t *testing.T) {
	noLeaks(t)
	for _, esp := range []string{"aes128gcm16", "aes256-sha256-x25519"} {
		t.Run(esp, func(t *testing.T) {
			sa, sb := pairSides(t)
			sa.esp, sb.esp = esp, esp
			sa.extraChild = "rekey_time = 1s\n life_time = 30s"
			a := newPeer(t, "a", sa.config(t, "a"))
			b := newPeer(t, "b", sb.config(t, "b"))
			establish(t, a, b, "a-net")
			before := a.sas(t)[0].Children[0]
			a.waitEvent(t, 5*time.Second, func(e Event) bool { return e.State == "rekey-needed" })
			waitFor(t, "the rekeyed child on both sides, the old one gone", 10*time.Second, func() bool {
				ca, cb := a.sas(t)[0].Children, b.sas(t)[0].Children
				return len(ca) == 1 && len(cb) == 1 && ca[0].SPIIn != before.SPIIn && ca[0].State == "installed" &&
					ca[0].SPIIn == cb[0].SPIOut && ca[0].SPIOut == cb[0].SPIIn
			})
			after := a.sas(t)[0].Children[0]
			if after.RekeyNeeded || after.LocalTS != before.LocalTS || after.RemoteTS != before.RemoteTS {
				t.Errorf("rekeyed child %+v (was %+v)", after, before)
			}
			for _, p := range []*peer{a, b} {
				waitFor(t, p.name+": 2 SAs, 3 policies", 3*time.Second, func() bool { s, pol := p.counts(t); return s == 2 && pol == 3 })
			}
			res, err := a.b.Inject(t.Context(), nokernel.Packet{Dir: kernelops.DirOut, Src: netip.MustParseAddr("10.1.0.5"),
				Dst: netip.MustParseAddr("10.2.0.9"), Proto: 6, Len: 100})
			if err != nil || res.Verdict != nokernel.Protected || fmt.Sprintf("%08x", res.SAs[0].SPI) != after.SPIOut {
				t.Errorf("traffic after the rekey: %+v %v (new out SPI %s)", res, err, after.SPIOut)
			}
			if !strings.Contains(a.logText(), "rekeying child") || !strings.Contains(b.logText(), "peer rekeys the child") {
				t.Errorf("rekey not logged")
			}
		})
	}
}

// overrunSub is a test double subscription: it forwards the model's
// events and lets the test inject an overrun.
type overrunBackend struct {
	*nokernel.Backend
	inject chan kernelops.Event
}

type fwdSub struct {
	ch   chan kernelops.Event
	real kernelops.Subscription
	once sync.Once
	done chan struct{}
}

func (s *fwdSub) Events() <-chan kernelops.Event { return s.ch }
func (s *fwdSub) Close() error {
	s.once.Do(func() { close(s.done); s.real.Close() })
	return nil
}

func (o *overrunBackend) Subscribe(ctx context.Context, opts kernelops.SubscribeOptions) (kernelops.Subscription, error) {
	real, err := o.Backend.Subscribe(ctx, opts)
	if err != nil {
		return nil, err
	}
	s := &fwdSub{ch: make(chan kernelops.Event), real: real, done: make(chan struct{})}
	go func() {
		defer close(s.ch)
		for {
			var ev kernelops.Event
			select {
			case e, ok := <-real.Events():
				if !ok {
					return
				}
				ev = e
			case ev = <-o.inject:
			case <-s.done:
				return
			}
			select {
			case s.ch <- ev:
			case <-s.done:
				return
			}
		}
	}()
	return s, nil
}

func TestOverrunResync(t *testing.T) {
	noLeaks(t)
	sa, sb := pairSides(t)
	ob := &overrunBackend{inject: make(chan kernelops.Event)}
	a := newPeer(t, "a", sa.config(t, "a"), withBackend(func(b *nokernel.Backend) kernelops.Backend {
		ob.Backend = b
		return ob
	}))
	b := newPeer(t, "b", sb.config(t, "b"))
	establish(t, a, b, "a-net")
	// An SA vanishes and its expire is lost.
	out := dumpSAs(t, a.b)
	var victim kernelops.SAID
	for _, e := range out {
		if e.ID.Src == netip.MustParseAddr("127.0.0.1") && e.ID.SPI != 0 {
			victim = e.ID
		}
	}
	if err := a.b.DeleteSA(t.Context(), victim); err != nil {
		t.Fatal(err)
	}
	ob.inject <- &kernelops.OverrunEvent{Lost: 1, Source: "test"}
	a.waitEvent(t, 5*time.Second, func(e Event) bool { return e.State == "resynced" })
	a.expectEmpty(t)
	b.expectEmpty(t)
}

func TestAdditionalChild(t *testing.T) {
	noLeaks(t)
	sa, sb := pairSides(t)
	// A second child in a's connection (the template closes its block).
	sa.extraChild = "}\n a-two {\n local_ts = 10.1.9.0/24\n remote_ts = 10.2.9.0/24\n esp_proposals = aes256gcm16"
	sb.esp = "aes128gcm16, aes256gcm16"
	a := newPeer(t, "a", sa.config(t, "a"))
	b := newPeer(t, "b", sb.config(t, "b"))
	establish(t, a, b, "a-net")
	if err := a.e.Initiate(ctxT(t, 5*time.Second), "a-two"); err != nil {
		t.Fatalf("second child: %v", err)
	}
	ca, cb := a.sas(t)[0].Children, b.sas(t)[0].Children
	if len(ca) != 2 || len(cb) != 2 || ca[1].LocalTS != "10.1.9.0/24" || cb[1].LocalTS != "10.2.9.0/24" || !strings.Contains(ca[1].Suite, "/256") {
		t.Fatalf("children a %+v b %+v", ca, cb)
	}
	if s, pol := a.counts(t); s != 4 || pol != 6 {
		t.Errorf("a: %d SAs, %d policies", s, pol)
	}
	if err := a.e.Terminate(ctxT(t, 5*time.Second), "a-two"); err != nil {
		t.Fatal(err)
	}
	for _, p := range []*peer{a, b} {
		waitFor(t, p.name+": one child left", 3*time.Second, func() bool { s, pol := p.counts(t); return s == 2 && pol == 3 })
	}
}

func TestReload(t *testing.T) {
	noLeaks(t)
	sa, sb := pairSides(t)
	a := newPeer(t, "a", sa.config(t, "a"))
	b := newPeer(t, "b", sb.config(t, "b"))
	establish(t, a, b, "a-net")
	// Same connection, child now trapped: the child stays, the trap joins.
	sa2 := sa
	sa2.start = "trap"
	if err := a.e.Reload(t.Context(), sa2.config(t, "a")); err != nil {
		t.Fatal(err)
	}
	if installed(a.sas(t)) != 1 {
		t.Fatalf("reload dropped the child")
	}
	// The connection renamed: the old one's SAs go, the peer is told.
	if err := a.e.Reload(t.Context(), sa.config(t, "other")); err != nil {
		t.Fatal(err)
	}
	b.expectEmpty(t)
	a.expectEmpty(t)
	waitFor(t, "IKE SAs gone", 3*time.Second, func() bool { return len(a.sas(t)) == 0 && len(b.sas(t)) == 0 })
}

// TestDPDDeadPeer: liveness checks are answered while the peer lives,
// and a peer that vanishes is declared dead, with checks on a timer (a
// dataplane without CapIdle) and driven by idle reports.
func TestDPDDeadPeer(t *testing.T) {
	noLeaks(t)
	for _, mode := range []string{"timer", "idle"} {
		t.Run(mode, func(t *testing.T) {
			sa, sb := pairSides(t)
			sa.extraConn = "dpd_delay = 300ms"
			var opts []peerOpt
			if mode == "timer" {
				_, hide := tap(nil, kernelops.CapIdle)
				opts = append(opts, hide)
			} else {
				opts = append(opts, withOptions(kernelops.Options{IdleScanInterval: 50 * time.Millisecond}))
			}
			a := newPeer(t, "a", sa.config(t, "a"), opts...)
			b := newPeer(t, "b", sb.config(t, "b"))
			establish(t, a, b, "a-net")
			// Liveness checks are answered while b lives.
			time.Sleep(800 * time.Millisecond)
			if len(a.sas(t)) != 1 || !strings.Contains(b.logText(), "INFORMATIONAL request") {
				t.Fatalf("no answered liveness check: %d IKE SAs", len(a.sas(t)))
			}
			// b vanishes without a word: a's next check goes unanswered.
			b.e.Close()
			a.waitEvent(t, 10*time.Second, func(e Event) bool { return e.Kind == "ike" && e.State == "dead" })
			a.expectEmpty(t)
		})
	}
}

// TestRollbackXfrmInterface: a child whose install fails after its xfrm
// interface was made (at the inbound SA, the outbound SA, the last
// policy) leaves no interface behind.
func TestRollbackXfrmInterface(t *testing.T) {
	noLeaks(t)
	for _, n := range []int{2, 3, 6} { // AllocSPI is 1
		t.Run(fmt.Sprintf("step %d", n), func(t *testing.T) {
			sa, sb := pairSides(t)
			sa.extraChild, sb.extraChild = xfrmi42, xfrmi42
			var f *faulty
			wrap := withBackend(func(b *nokernel.Backend) kernelops.Backend {
				f = &faulty{Backend: b, failAt: n}
				return f
			})
			a := newPeer(t, "a", sa.config(t, "a"))
			b := newPeer(t, "b", sb.config(t, "b"), wrap)
			err := a.e.Initiate(ctxT(t, 5*time.Second), "a-net")
			if err == nil {
				t.Fatalf("initiate succeeded with the responder's step %d failing", n)
			}
			f.mu.Lock()
			t.Logf("failed %q: %v", f.failed, err)
			f.mu.Unlock()
			b.expectEmpty(t)
			if ifs := xfrmIfIDs(t, b.b); len(ifs) != 0 {
				t.Errorf("the responder's interfaces after the failed child: %v, want none", ifs)
			}
			if !strings.Contains(b.logs.String(), `msg="xfrm interface removed"`) {
				t.Errorf("no \"xfrm interface removed\" in the responder's log")
			}
		})
	}
}
