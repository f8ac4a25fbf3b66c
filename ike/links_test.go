package ike

import (
	"fmt"
	"net/netip"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/keyplane/keyplane/ike/config"
	"github.com/keyplane/keyplane/ike/message"
	"github.com/keyplane/keyplane/kernelops"
	"github.com/keyplane/keyplane/kernelops/clock"
)

// linkSAs is how many IKE SAs share the link that dies.
const linkSAs = 1000

// conn is one connection of a generated configuration.
type conn struct {
	name             string
	local, remote    string // addresses
	port, natPort    uint16
	rport, rnatPort  uint16
	id, rid          string
	lts, rts         string
	dpd              string
	child, childOpts string
}

// manyConfig builds a configuration with many connections.
func manyConfig(t testing.TB, daemon string, conns []conn) *config.Config {
	t.Helper()
	var b strings.Builder
	fmt.Fprintf(&b, "daemon {\n%s\n}\nconnections {\n", daemon)
	for _, c := range conns {
		dpd := ""
		if c.dpd != "" {
			dpd = "dpd_delay = " + c.dpd
		}
		fmt.Fprintf(&b, `%s {
	local_addrs = %s
	remote_addrs = %s
	local_port = %d
	local_port_nat = %d
	remote_port = %d
	remote_port_nat = %d
	proposals = aes128gcm16-prfsha256-x25519
	psk_env = PSK
	%s
	local {
		id = %s
	}
	remote {
		id = %s
	}
	children {
		%s {
			local_ts = %s
			remote_ts = %s
			esp_proposals = aes128gcm16
			%s
		}
	}
}
`, c.name, c.local, c.remote, c.port, c.natPort, c.rport, c.rnatPort, dpd, c.id, c.rid, c.child, c.lts, c.rts, c.childOpts)
	}
	b.WriteString("}\n")
	cfg, err := config.Parse("many.conf", []byte(b.String()), config.Options{Getenv: func(k string) (string, bool) {
		return "many secret", k == "PSK"
	}})
	if err != nil {
		t.Fatal(err)
	}
	return cfg
}

// pairConns returns n matching connections for an initiator at local and
// its responder at remote, named from index first on.
func pairConns(first, n int, local, remote string, lp, rp []uint16, dpd, childOpts string) (init, resp []conn) {
	for i := first; i < first+n; i++ {
		lts := fmt.Sprintf("10.1.%d.%d/32", i/250, i%250+1)
		rts := fmt.Sprintf("10.2.%d.%d/32", i/250, i%250+1)
		init = append(init, conn{name: fmt.Sprintf("a%d", i), local: local, remote: remote, port: lp[0], natPort: lp[1],
			rport: rp[0], rnatPort: rp[1], id: fmt.Sprintf("a%d.example.org", i), rid: fmt.Sprintf("b%d.example.org", i),
			lts: lts, rts: rts, dpd: dpd, child: fmt.Sprintf("c%d", i), childOpts: childOpts})
		resp = append(resp, conn{name: fmt.Sprintf("b%d", i), local: remote, remote: local, port: rp[0], natPort: rp[1],
			rport: lp[0], rnatPort: lp[1], id: fmt.Sprintf("b%d.example.org", i), rid: fmt.Sprintf("a%d.example.org", i),
			lts: rts, rts: lts, child: fmt.Sprintf("r%d", i)})
	}
	return init, resp
}

// establishAll initiates every child of a's configuration, a few at a
// time. On the fake clock a lost datagram is retransmitted only when the
// clock moves, so a stalled handshake moves it by a second.
func establishAll(t *testing.T, clk *clock.Fake, a *peer, children []string) {
	t.Helper()
	var done atomic.Int64
	work := make(chan string)
	errs := make(chan error, len(children))
	var wg sync.WaitGroup
	for range 8 {
		wg.Go(func() {
			for c := range work {
				if err := a.e.Initiate(ctxT(t, 60*time.Second), c); err != nil {
					errs <- fmt.Errorf("initiate %s: %w", c, err)
				}
				done.Add(1)
			}
		})
	}
	stop := make(chan struct{})
	var nudges atomic.Int64
	go func() {
		last := int64(-1)
		for {
			select {
			case <-stop:
				return
			case <-time.After(500 * time.Millisecond):
			}
			if n := done.Load(); n == last {
				clk.Advance(time.Second)
				nudges.Add(1)
			} else {
				last = n
			}
		}
	}()
	for _, c := range children {
		work <- c
	}
	close(work)
	wg.Wait()
	close(stop)
	close(errs)
	for err := range errs {
		t.Fatal(err)
	}
	if n := nudges.Load(); n > 0 {
		t.Logf("the clock was moved %d times to get stalled handshakes going", n)
	}
}

// linkOpts gives a peer's model an "eth1" carrying addrs, and idle scans
// every 5s.
func linkOpts(addrs ...string) peerOpt {
	return withOptions(kernelops.Options{IdleScanInterval: 5 * time.Second,
		Params: map[string]string{"interfaces": "eth1=" + strings.Join(addrs, "+")}})
}

// established counts the peer's established IKE SAs.
func established(t testing.TB, p *peer) int {
	n := 0
	for _, sa := range p.sas(t) {
		if sa.State == "established" {
			n++
		}
	}
	return n
}

// events collects a peer's engine events of some kinds in the background.
type eventLog struct {
	mu  sync.Mutex
	evs []Event
}

func collect(t testing.TB, p *peer) *eventLog {
	l := &eventLog{}
	done := make(chan struct{})
	go func() {
		defer close(done)
		for ev := range p.ev.C {
			if ev.Kind == "ike" && ev.State != "dead" {
				continue
			}
			if ev.Kind == "child" || ev.Kind == "dataplane" {
				continue
			}
			l.mu.Lock()
			l.evs = append(l.evs, ev)
			l.mu.Unlock()
		}
	}()
	t.Cleanup(func() { p.ev.Close(); <-done })
	return l
}

func (l *eventLog) mark() int {
	l.mu.Lock()
	defer l.mu.Unlock()
	return len(l.evs)
}

func (l *eventLog) since(mark int, kind, state string) []Event {
	l.mu.Lock()
	defer l.mu.Unlock()
	var out []Event
	for _, ev := range l.evs[mark:] {
		if string(ev.Kind) == kind && (state == "" || ev.State == state) {
			out = append(out, ev)
		}
	}
	return out
}

func (l *eventLog) wait(t *testing.T, mark int, kind, state string) Event {
	t.Helper()
	var ev Event
	waitFor(t, kind+" "+state+" event", 5*time.Second, func() bool {
		evs := l.since(mark, kind, state)
		if len(evs) > 0 {
			ev = evs[0]
		}
		return len(evs) > 0
	})
	return ev
}

// TestLinkDownManySAs: a link carrying linkSAs IKE SAs dies. While it is
// down the engine sends nothing and declares nothing dead, however long
// past the give-up time; when it returns every SA is revived with one
// check, at no more than revive_rate per second after revive_burst, and
// the SAs whose peer died meanwhile are then found dead.
func TestLinkDownManySAs(t *testing.T) {
	noLeaks(t)
	const (
		dead  = 10 // SAs to a peer that dies while the link is down
		rate  = 50 // revive_rate
		burst = 10 // revive_burst
	)
	n := linkSAs
	if testing.Short() {
		n = 100
	}
	clk := clock.NewFake(epoch)
	p := freePorts(t, 6)
	pa, pb, pc := p[0:2], p[2:4], p[4:6]
	aToB, bConns := pairConns(0, n-dead, "127.0.0.2", "127.0.0.1", pa, pb, "30s", "")
	aToC, cConns := pairConns(n-dead, dead, "127.0.0.2", "127.0.0.1", pa, pc, "30s", "")
	daemon := fmt.Sprintf("retransmit_timeout = 1s\nretransmit_tries = 3\nretransmit_base = 1.5\ncookie_threshold = 0\nrevive_rate = %d\nrevive_burst = %d", rate, burst)
	ta, tapA := tap(clk, 0)
	a := newPeer(t, "a", manyConfig(t, daemon, append(aToB, aToC...)), withClock(clk), tapA, linkOpts("127.0.0.2/32"))
	b := newPeer(t, "b", manyConfig(t, "cookie_threshold = 0", bConns), withClock(clk))
	c := newPeer(t, "c", manyConfig(t, "cookie_threshold = 0", cConns), withClock(clk))
	evA := collect(t, a)
	var children []string
	for _, x := range append(aToB, aToC...) {
		children = append(children, x.child)
	}
	start := time.Now()
	establishAll(t, clk, a, children)
	if got := established(t, a); got != n {
		t.Fatalf("%d IKE SAs established, want %d", got, n)
	}
	t.Logf("%d IKE SAs established in %s", n, time.Since(start).Round(time.Millisecond))

	// Up, the SAs are checked once idle for dpd_delay: n checks.
	mark := ta.mark()
	step(t, clk, 40*time.Second, 5*time.Second, a, b, c)
	waitFor(t, "a liveness check from every SA", 10*time.Second, func() bool {
		return len(firstSends(ta.since(mark))) >= n
	})
	step(t, clk, 10*time.Second, time.Second, a, b, c) // any lost datagram retransmitted
	if got := established(t, a); got != n {
		t.Fatalf("%d IKE SAs after the checks, want %d", got, n)
	}
	t.Logf("link up: %d requests in 50s of idleness", len(ta.since(mark)))

	// c dies, unseen: the next round of checks to it goes unanswered and
	// is being retransmitted when the link dies.
	c.e.Close()
	mark = ta.mark()
	// With MOBIKE (the default) the SAs float to the NAT-T port in IKE_AUTH.
	toC := func(m sentMsg) bool { return m.remote.Port() == pc[1] }
	for k := 0; k < 10 && ta.requests(mark, message.INFORMATIONAL, toC) < dead; k++ {
		step(t, clk, 5*time.Second, 5*time.Second, a, b)
	}
	step(t, clk, 2*time.Second, time.Second, a, b)
	if got := ta.requests(mark, message.INFORMATIONAL, toC); got < 2*dead {
		t.Fatalf("%d checks and retransmissions to the dead peer, want its %d SAs retransmitting", got, dead)
	}
	inFlight := 0
	a.e.call(t.Context(), func() {
		for _, s := range a.e.sas {
			if s.w.inflight != nil && s.remote.Port() == pc[1] {
				inFlight++
			}
		}
	})
	if inFlight != dead {
		t.Fatalf("%d checks to the dead peer in flight, want %d", inFlight, dead)
	}

	// The link dies.
	em := evA.mark()
	mark = ta.mark()
	if err := a.b.Net().SetLinkUp("eth1", false); err != nil {
		t.Fatal(err)
	}
	ev := evA.wait(t, em, "link", "down")
	if want := fmt.Sprintf("%d IKE SAs suspended", n); !strings.HasPrefix(ev.Detail, want) {
		t.Errorf("link down event %q, want %q", ev.Detail, want)
	}
	// Ten minutes, far past the give-up time (about 8s here) and many
	// dpd_delays, with idle scans every 5s.
	step(t, clk, 10*time.Minute, 5*time.Second, a, b)
	time.Sleep(100 * time.Millisecond)
	settle(t, a)
	if sent := ta.since(mark); len(sent) != 0 {
		t.Fatalf("%d datagrams sent while the link was down, want 0 (first: %+v)", len(sent), sent[0])
	}
	if d := evA.since(em, "ike", "dead"); len(d) != 0 {
		t.Fatalf("%d IKE SAs declared dead while the link was down (first: %+v)", len(d), d[0])
	}
	if got := established(t, a); got != n {
		t.Fatalf("%d IKE SAs left while the link was down, want %d", got, n)
	}

	// The link returns: one check per SA, paced.
	em = evA.mark()
	mark = ta.mark()
	t0 := clk.Now()
	if err := a.b.Net().SetLinkUp("eth1", true); err != nil {
		t.Fatal(err)
	}
	ev = evA.wait(t, em, "link", "up")
	if want := fmt.Sprintf("0 IKE SAs suspended, %d to revive", n); ev.Detail != want {
		t.Errorf("link up event %q, want %q", ev.Detail, want)
	}
	settle(t, a, b)
	revived := func() []sentMsg { return firstSends(ta.since(mark)) }
	if got := len(revived()); got != min(burst, n) {
		t.Errorf("%d checks at once when the link came back, want the burst of %d", got, burst)
	}
	stepSize := 100 * time.Millisecond
	for k := 0; len(revived()) < n; k++ {
		if k > 3*n*int(time.Second/stepSize)/rate {
			t.Fatalf("only %d of %d SAs revived after %s", len(revived()), n, clk.Now().Sub(t0))
		}
		clk.Advance(stepSize)
		settle(t, a, b)
		el := clk.Now().Sub(t0)
		if got, bound := len(revived()), burst+int(rate*el.Seconds()+1e-9); got > bound {
			t.Fatalf("%d SAs revived %s after the link came back; the bucket allows %d", got, el, bound)
		}
	}
	sends := revived()
	took := sends[len(sends)-1].at.Sub(t0)
	spis := map[uint64]bool{}
	for _, m := range sends {
		spis[m.spii] = true
	}
	if len(spis) != n || len(sends) != n {
		t.Errorf("revival sent %d first requests for %d SAs, want one for each of %d", len(sends), len(spis), n)
	}
	achieved := float64(n-burst) / took.Seconds()
	t.Logf("revival: %d SAs, %d at once, the rest in %s: %.1f/s (revive_rate %d/s)", n, burst, took, achieved, rate)
	if achieved < rate/2 {
		t.Errorf("revival at %.1f/s, far below revive_rate %d/s", achieved, rate)
	}
	evA.wait(t, em, "link", "revived")

	// c's SAs die once their checks, retransmitted afresh, go unanswered;
	// b's stay.
	step(t, clk, 15*time.Second, time.Second, a, b)
	waitFor(t, "c's SAs declared dead", 5*time.Second, func() bool { return len(evA.since(em, "ike", "dead")) == dead })
	if got := established(t, a); got != n-dead {
		t.Errorf("%d IKE SAs after the revival, want %d (b's)", got, n-dead)
	}
	for _, s := range a.sas(t) {
		if !strings.HasPrefix(s.Remote, fmt.Sprintf("127.0.0.1:%d", pb[1])) {
			t.Errorf("SA to %s survived; only b's should", s.Remote)
		}
	}
	// One log line per transition, none per SA.
	if got := strings.Count(a.logText(), `msg="link down"`); got != 1 {
		t.Errorf("%d link-down log lines, want 1", got)
	}
}

// TestAddressRemoval: the address an IKE SA uses goes away: its SAs
// behave as on a dead link while SAs on another address of the same link
// carry on; the address returns and they are revived.
func TestAddressRemoval(t *testing.T) {
	noLeaks(t)
	const per = 10
	clk := clock.NewFake(epoch)
	p := freePorts(t, 4)
	pa, pb := p[0:2], p[2:4]
	on2, resp2 := pairConns(0, per, "127.0.0.2", "127.0.0.1", pa, pb, "30s", "")
	on3, resp3 := pairConns(per, per, "127.0.0.3", "127.0.0.1", pa, pb, "30s", "")
	ta, tapA := tap(clk, 0)
	a := newPeer(t, "a", manyConfig(t, "retransmit_timeout = 1s\ncookie_threshold = 0", append(on2, on3...)), withClock(clk), tapA,
		linkOpts("127.0.0.2/32", "127.0.0.3/32"))
	b := newPeer(t, "b", manyConfig(t, "cookie_threshold = 0", append(resp2, resp3...)), withClock(clk))
	evA := collect(t, a)
	var children []string
	for _, x := range append(on2, on3...) {
		children = append(children, x.child)
	}
	establishAll(t, clk, a, children)
	from := func(mark int, addr string) int {
		n := 0
		for _, m := range ta.since(mark) {
			if m.local.Addr() == netip.MustParseAddr(addr) {
				n++
			}
		}
		return n
	}
	em, mark := evA.mark(), ta.mark()
	if err := a.b.Net().RemoveAddress("eth1", netip.MustParsePrefix("127.0.0.3/32")); err != nil {
		t.Fatal(err)
	}
	ev := evA.wait(t, em, "addr", "removed")
	if want := fmt.Sprintf("on eth1: %d IKE SAs suspended, 0 to revive", per); ev.Detail != want {
		t.Errorf("address event %q, want %q", ev.Detail, want)
	}
	step(t, clk, 2*time.Minute, 5*time.Second, a, b)
	time.Sleep(50 * time.Millisecond)
	settle(t, a, b)
	if got := from(mark, "127.0.0.3"); got != 0 {
		t.Errorf("%d datagrams from the removed address", got)
	}
	if got := ta.requests(mark, message.INFORMATIONAL, func(m sentMsg) bool { return m.local.Addr() == netip.MustParseAddr("127.0.0.2") }); got < per {
		t.Errorf("SAs on the remaining address sent %d liveness checks in 2 minutes, want at least %d", got, per)
	}
	if got := established(t, a); got != 2*per {
		t.Fatalf("%d IKE SAs, want %d", got, 2*per)
	}
	em, mark = evA.mark(), ta.mark()
	if err := a.b.Net().AddAddress("eth1", netip.MustParsePrefix("127.0.0.3/32")); err != nil {
		t.Fatal(err)
	}
	ev = evA.wait(t, em, "addr", "added")
	if want := fmt.Sprintf("on eth1: 0 IKE SAs suspended, %d to revive", per); ev.Detail != want {
		t.Errorf("address event %q, want %q", ev.Detail, want)
	}
	settle(t, a, b)
	waitFor(t, "one check from each revived SA", 3*time.Second, func() bool { return from(mark, "127.0.0.3") == per })
	if got := established(t, a); got != 2*per {
		t.Errorf("%d IKE SAs after the address returned, want %d", got, 2*per)
	}
}

// TestLinkDownLifetimes: lifetimes that run out while the link is down.
// A hard expire removes the child from the dataplane at once, but its
// delete notification waits for the link (and is dropped if it waited
// longer than down_queue_max_age); a rekey is not started into the dead
// link but when it returns.
func TestLinkDownLifetimes(t *testing.T) {
	noLeaks(t)
	for _, tc := range []struct {
		name, childOpts, maxAge string
		down                    time.Duration
	}{
		{"hard expire: delete held", "rekey_time = 0\nlife_time = 2m", "10m", 3 * time.Minute},
		{"hard expire: stale delete dropped", "rekey_time = 0\nlife_time = 2m", "1m", 4 * time.Minute},
		{"soft expire: rekey deferred", "rekey_time = 1m\nlife_time = 1h", "10m", 3 * time.Minute},
	} {
		t.Run(tc.name, func(t *testing.T) {
			clk := clock.NewFake(epoch)
			p := freePorts(t, 4)
			ca, cb := pairConns(0, 1, "127.0.0.2", "127.0.0.1", p[0:2], p[2:4], "30s", tc.childOpts)
			ta, tapA := tap(clk, 0)
			a := newPeer(t, "a", manyConfig(t, "retransmit_timeout = 1s\ndown_queue_max_age = "+tc.maxAge, ca), withClock(clk), tapA,
				linkOpts("127.0.0.2/32"))
			b := newPeer(t, "b", manyConfig(t, "", cb), withClock(clk))
			evA := collect(t, a)
			establishAll(t, clk, a, []string{"c0"})
			before := inboundSA(t, a)

			em, mark := evA.mark(), ta.mark()
			if err := a.b.Net().SetLinkUp("eth1", false); err != nil {
				t.Fatal(err)
			}
			evA.wait(t, em, "link", "down")
			step(t, clk, tc.down, 5*time.Second, a, b)
			time.Sleep(50 * time.Millisecond)
			settle(t, a, b)
			if sent := ta.since(mark); len(sent) != 0 {
				t.Fatalf("%d datagrams while the link was down", len(sent))
			}
			hard := strings.HasPrefix(tc.name, "hard")
			if sas, _ := a.counts(t); hard && sas != 0 {
				t.Errorf("a's dataplane holds %d SAs after the hard expire, want 0", sas)
			}
			if sas, _ := b.counts(t); sas != 2 {
				t.Errorf("b holds %d SAs while a's link is down, want its child's 2", sas)
			}
			if got := established(t, a); got != 1 {
				t.Fatalf("%d IKE SAs on a, want 1", got)
			}

			em, mark = evA.mark(), ta.mark()
			if err := a.b.Net().SetLinkUp("eth1", true); err != nil {
				t.Fatal(err)
			}
			evA.wait(t, em, "link", "revived")
			step(t, clk, 5*time.Second, time.Second, a, b)
			switch tc.name {
			case "hard expire: delete held":
				b.expectEmpty(t)
				if got := distinctRequests(ta, mark, message.INFORMATIONAL); got != 1 {
					t.Errorf("%d INFORMATIONAL requests after the link returned, want the held delete only", got)
				}
			case "hard expire: stale delete dropped":
				if !strings.Contains(a.logText(), "dropping a request held for the peer") {
					t.Errorf("the stale delete was not dropped")
				}
				if got := distinctRequests(ta, mark, message.INFORMATIONAL); got != 1 {
					t.Errorf("%d INFORMATIONAL requests after the link returned, want one liveness check", got)
				}
				if sas, _ := b.counts(t); sas != 2 {
					t.Errorf("b holds %d SAs; the dropped delete should not have reached it", sas)
				}
			default:
				if got := distinctRequests(ta, mark, message.CREATE_CHILD_SA); got != 1 {
					t.Errorf("%d CREATE_CHILD_SA requests after the link returned, want the deferred rekey", got)
				}
				waitFor(t, "the rekeyed child on both sides", 3*time.Second, func() bool {
					ca, cb := a.sas(t)[0].Children, b.sas(t)[0].Children
					return len(ca) == 1 && len(cb) == 1 && ca[0].SPIIn != fmt.Sprintf("%08x", before.SPI) && ca[0].SPIIn == cb[0].SPIOut
				})
			}
			if got := established(t, a); got != 1 {
				t.Errorf("%d IKE SAs on a after the revival, want 1", got)
			}
		})
	}
}

// TestDownQueueLimit: an IKE SA on a dead link holds at most
// down_queue_limit requests; past it the oldest is dropped (its onDrop
// runs), and on revival the oldest kept one goes out first.
func TestDownQueueLimit(t *testing.T) {
	noLeaks(t)
	clk := clock.NewFake(epoch)
	p := freePorts(t, 4)
	ca, cb := pairConns(0, 1, "127.0.0.2", "127.0.0.1", p[0:2], p[2:4], "", "")
	ta, tapA := tap(clk, 0)
	a := newPeer(t, "a", manyConfig(t, "down_queue_limit = 2", ca), withClock(clk), tapA, linkOpts("127.0.0.2/32"))
	b := newPeer(t, "b", manyConfig(t, "", cb), withClock(clk))
	evA := collect(t, a)
	establishAll(t, clk, a, []string{"c0"})
	em := evA.mark()
	if err := a.b.Net().SetLinkUp("eth1", false); err != nil {
		t.Fatal(err)
	}
	evA.wait(t, em, "link", "down")
	var dropped []string
	var queued int
	a.e.call(t.Context(), func() {
		for _, s := range a.e.sas {
			for i := range 3 {
				name := fmt.Sprintf("r%d", i)
				s.send(&request{exch: message.INFORMATIONAL, onDrop: func(string) { dropped = append(dropped, name) }})
				clk.Advance(time.Second)
			}
			queued = len(s.w.queue)
		}
	})
	if queued != 2 || len(dropped) != 1 || dropped[0] != "r0" {
		t.Fatalf("held %d, dropped %v; want 2 held and r0 dropped", queued, dropped)
	}
	mark := ta.mark()
	em = evA.mark()
	if err := a.b.Net().SetLinkUp("eth1", true); err != nil {
		t.Fatal(err)
	}
	evA.wait(t, em, "link", "revived")
	settle(t, a, b)
	// r1 went out on revival, r2 after r1's answer: two requests, nothing dropped.
	waitFor(t, "both held requests sent", 3*time.Second, func() bool { return ta.requests(mark, message.INFORMATIONAL, nil) == 2 })
	var n int
	a.e.call(t.Context(), func() { n = len(dropped) })
	if n != 1 {
		t.Errorf("%d requests dropped in all, want 1", n)
	}
}
