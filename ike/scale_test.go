package ike

import (
	"context"
	"flag"
	"fmt"
	"log/slog"
	"net/netip"
	"sort"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/keyplane/keyplane/backends/nokernel"
	"github.com/keyplane/keyplane/ike/config"
	"github.com/keyplane/keyplane/kernelops"
	"github.com/keyplane/keyplane/kernelops/clock"
)

// The rekey-spread test's size. make test runs the small default; the
// figure in the docs comes from
//
//	go test -run TestRekeySpread ./ike -args -scale.children=10000
var (
	scaleChildren = flag.Int("scale.children", 100, "TestRekeySpread: children on the one IKE SA")
	scaleHours    = flag.Int("scale.hours", 24, "TestRekeySpread: simulated hours")
)

// countingBackend is a test double over the nokernel model that counts
// the IKE datagrams between two engines (written, and not yet read by the
// other) and the dataplane events each engine has taken, so that a test
// on the fake clock knows when both engines have finished what a clock
// step started.
type countingBackend struct {
	*nokernel.Backend
	c *flowCounter
}

type flowCounter struct {
	writes, inflight, events atomic.Int64
}

func (b *countingBackend) ListenIKE(ctx context.Context, l kernelops.IKEListen) (kernelops.IKEConn, error) {
	c, err := b.Backend.ListenIKE(ctx, l)
	if err != nil {
		return nil, err
	}
	return &countingConn{IKEConn: c, c: b.c}, nil
}

type countingConn struct {
	kernelops.IKEConn
	c *flowCounter
}

func (c *countingConn) WriteTo(p []byte, local, remote netip.AddrPort) (int, error) {
	c.c.writes.Add(1)
	c.c.inflight.Add(1)
	n, err := c.IKEConn.WriteTo(p, local, remote)
	if err != nil {
		c.c.inflight.Add(-1)
	}
	return n, err
}

func (c *countingConn) ReadFrom(p []byte) (int, netip.AddrPort, netip.AddrPort, error) {
	n, l, r, err := c.IKEConn.ReadFrom(p)
	if err == nil {
		c.c.inflight.Add(-1)
	}
	return n, l, r, err
}

func (b *countingBackend) Subscribe(ctx context.Context, opts kernelops.SubscribeOptions) (kernelops.Subscription, error) {
	real, err := b.Backend.Subscribe(ctx, opts)
	if err != nil {
		return nil, err
	}
	s := &fwdSub{ch: make(chan kernelops.Event), real: real, done: make(chan struct{})}
	go func() {
		defer close(s.ch)
		for {
			select {
			case ev, ok := <-real.Events():
				if !ok {
					return
				}
				select {
				case s.ch <- ev:
					b.c.events.Add(1)
				case <-s.done:
					return
				}
			case <-s.done:
				return
			}
		}
	}()
	return s, nil
}

// rig is two engines on one fake clock with counted traffic.
type rig struct {
	t    testing.TB
	clk  *clock.Fake
	flow *flowCounter
	a, b *peer
}

// settle waits until both engines have done what the last clock step
// started: no datagram in flight, and twice in a row nothing new written
// or taken from the dataplane while both loops drained their queues.
func (r *rig) settle() {
	quiet := 0
	for quiet < 2 {
		w, ev := r.flow.writes.Load(), r.flow.events.Load()
		for r.flow.inflight.Load() != 0 {
			time.Sleep(20 * time.Microsecond)
		}
		for _, p := range []*peer{r.a, r.b} {
			if err := p.e.call(context.Background(), func() {}); err != nil {
				r.t.Fatal(err)
			}
		}
		time.Sleep(20 * time.Microsecond)
		if r.flow.inflight.Load() == 0 && r.flow.writes.Load() == w && r.flow.events.Load() == ev {
			quiet++
		} else {
			quiet = 0
		}
	}
}

// step moves the clock by one second, or by whole seconds up to the
// second holding the next timer due, and settles. The clock stays on
// whole seconds from the start, so the work of one step is what fell due
// in one second.
func (r *rig) step(until time.Time) {
	now := r.clk.Now()
	d := time.Second
	if next, ok := r.clk.Next(); ok && next.Sub(now) > 2*time.Second {
		d = (next.Sub(now) - time.Nanosecond).Truncate(time.Second)
	} else if !ok {
		d = until.Sub(now)
	}
	d = min(d, until.Sub(now))
	r.clk.Advance(d)
	r.settle()
}

// spreadStats collects the engines' events that the test measures.
type spreadStats struct {
	mu          sync.Mutex
	rekeys      map[int64]int // child rekeys started, by the clock step (second) they fell due in
	total       int
	redundant   int // redundant children deleted after a collision
	ikeRekeys   int
	hardExpires int
	overruns    int
	failed      []string
}

func (s *spreadStats) collect(t testing.TB, p *peer) {
	sub := p.e.subscribe(1 << 16)
	done := make(chan struct{})
	go func() {
		defer close(done)
		for ev := range sub.C {
			s.mu.Lock()
			switch {
			case ev.Kind == "overrun":
				s.overruns++
			case ev.Kind == "child" && ev.State == "rekeying":
				// A step covers (k-1s, k]: an engine may act on the
				// step's first timers while the clock is still moving
				// through it, so the second is rounded up.
				s.rekeys[ev.Time.Add(time.Second-time.Nanosecond).Unix()]++
				s.total++
			case ev.Kind == "child" && ev.State == "deleted" && strings.HasPrefix(ev.Reason, "redundant"):
				s.redundant++
			case ev.Kind == "child" && ev.State == "failed":
				s.failed = append(s.failed, p.name+": "+ev.Reason)
			case ev.Kind == "ike" && ev.State == "rekeyed":
				s.ikeRekeys++
			case ev.Kind == "dataplane" && ev.State == "hard-expire":
				s.hardExpires++
			}
			s.mu.Unlock()
		}
	}()
	t.Cleanup(func() { sub.Close(); <-done })
}

// scaleConfigs: a has n children on one connection, each with its own
// /32 pair; b has one child whose selectors cover them all. Both keep
// swanctl's default lifetimes: children rekey_time 1h (life 66m,
// rand_time 6m), IKE SAs rekey_time 4h (rand_time 24m).
func scaleConfigs(t testing.TB, n int) (*config.Config, *config.Config) {
	p := freePorts(t, 4)
	var ac strings.Builder
	for i := range n {
		fmt.Fprintf(&ac, "\t\t\tc%d {\n\t\t\t\tlocal_ts = 10.1.%d.%d/32\n\t\t\t\tremote_ts = 10.2.%d.%d/32\n\t\t\t}\n",
			i, i/250, i%250+1, i/250, i%250+1)
	}
	mk := func(name string, lp, lnp, rp, rnp uint16, id, rid, children string) *config.Config {
		src := fmt.Sprintf(`
connections {
	%s {
		local_addrs = 127.0.0.1
		remote_addrs = 127.0.0.1
		local_port = %d
		local_port_nat = %d
		remote_port = %d
		remote_port_nat = %d
		proposals = aes128gcm16-prfsha256-x25519
		psk_env = PSK
		local {
			id = %s
		}
		remote {
			id = %s
		}
		children {
%s
		}
	}
}
`, name, lp, lnp, rp, rnp, id, rid, children)
		cfg, err := config.Parse(name+".conf", []byte(src), config.Options{Getenv: func(string) (string, bool) { return "scale", true }})
		if err != nil {
			t.Fatal(err)
		}
		return cfg
	}
	a := mk("a", p[0], p[1], p[2], p[3], "a.example.org", "b.example.org", ac.String())
	b := mk("b", p[2], p[3], p[0], p[1], "b.example.org", "a.example.org",
		"\t\t\tb-net {\n\t\t\t\tlocal_ts = 10.2.0.0/16\n\t\t\t\tremote_ts = 10.1.0.0/16\n\t\t\t}\n")
	return a, b
}

// TestRekeySpread: n children on one IKE SA between two engines, all
// made at the same instant, with swanctl's default lifetimes on both
// sides, run for h simulated hours on the fake clock. Both ends' soft
// lifetimes are randomized (rand_time), so the rekeys spread instead of
// coming all at once; whatever collisions still happen (both ends in the
// same clock step) are settled; and at every simulated hour and at the
// end each side holds exactly n children, the same ones crosswise, with
// 2n SAs in its dataplane: no duplicate, none lost, no hard expire. It
// logs the largest number of child rekeys started in any one second.
func TestRekeySpread(t *testing.T) {
	noLeaks(t)
	n, hours := *scaleChildren, *scaleHours
	clk := clock.NewFake(epoch)
	flow := &flowCounter{}
	counted := withBackend(func(b *nokernel.Backend) kernelops.Backend { return &countingBackend{Backend: b, c: flow} })
	acfg, bcfg := scaleConfigs(t, n)
	r := &rig{t: t, clk: clk, flow: flow}
	r.a = newPeer(t, "a", acfg, withClock(clk), counted, withLogLevel(slog.LevelWarn))
	r.b = newPeer(t, "b", bcfg, withClock(clk), counted, withLogLevel(slog.LevelWarn))
	r.a.ev.Close()
	r.b.ev.Close()
	stats := &spreadStats{rekeys: map[int64]int{}}
	stats.collect(t, r.a)
	stats.collect(t, r.b)

	wall := time.Now()
	ctx := ctxT(t, 10*time.Minute)
	if err := r.a.e.Initiate(ctx, "c0"); err != nil {
		t.Fatal(err)
	}
	var wg sync.WaitGroup
	work := make(chan int)
	errs := make(chan error, n)
	for range 8 {
		wg.Go(func() {
			for i := range work {
				if err := r.a.e.Initiate(ctx, fmt.Sprintf("c%d", i)); err != nil {
					errs <- err
				}
			}
		})
	}
	for i := 1; i < n; i++ {
		work <- i
	}
	close(work)
	wg.Wait()
	close(errs)
	for err := range errs {
		t.Fatal(err)
	}
	r.settle()
	t.Logf("%d children up in %v (wall)", n, time.Since(wall).Round(time.Millisecond))
	r.check(n, "after establishment")

	wallRun := time.Now()
	start := clk.Now()
	steps := 0
	for h := 1; h <= hours; h++ {
		until := start.Add(time.Duration(h) * time.Hour)
		for clk.Now().Before(until) {
			r.step(until)
			steps++
		}
		r.check(n, fmt.Sprintf("after %dh", h))
		if testing.Verbose() {
			stats.mu.Lock()
			t.Logf("after %dh simulated (%v wall, %d steps): %d child rekeys, %d redundant deleted", h,
				time.Since(wallRun).Round(time.Second), steps, stats.total, stats.redundant)
			stats.mu.Unlock()
		}
	}
	simulated := clk.Now().Sub(start)
	took := time.Since(wallRun)

	stats.mu.Lock()
	defer stats.mu.Unlock()
	var secs []int64
	most, at := 0, int64(0)
	for s, c := range stats.rekeys {
		secs = append(secs, s)
		if c > most {
			most, at = c, s
		}
	}
	sort.Slice(secs, func(i, j int) bool { return secs[i] < secs[j] })
	t.Logf("%d children, %v simulated in %v wall (%d clock steps): %d child rekeys started (%d IKE SA rekeys), "+
		"at most %d in one second (at +%v), in %d distinct seconds; %d redundant children deleted after collisions; "+
		"%d hard expires; duplicates 0, lost 0 (checked every simulated hour)",
		n, simulated, took.Round(time.Millisecond), steps, stats.total, stats.ikeRekeys, most,
		time.Duration(at-start.Unix())*time.Second, len(secs), stats.redundant, stats.hardExpires)
	if stats.overruns > 0 {
		t.Errorf("%d event overruns: the counts are incomplete", stats.overruns)
	}
	if stats.hardExpires > 0 {
		t.Errorf("%d children reached their hard lifetime (a rekey failed)", stats.hardExpires)
	}
	if len(stats.failed) > 0 {
		// A rekey that meets the peer's from the other side and finds
		// the child already replaced (TEMPORARY_FAILURE, CHILD_SA_NOT_FOUND)
		// fails, and the peer's stands: no child is lost by it (checked
		// above), it is only reported.
		t.Logf("%d rekey exchanges failed because the peer's rekey of the child came first, e.g. %s", len(stats.failed), stats.failed[0])
	}
	// Every child rekeys about once an hour (an extra exchange per
	// collision).
	if want := n * hours * 9 / 10; stats.total < want {
		t.Errorf("%d child rekeys in %dh, want at least %d", stats.total, hours, want)
	}
	// With the soft lifetimes spread over rand_time (6 minutes), a
	// second carries about n/360 rekeys; all at once would be n.
	if limit := max(10, n/36); most > limit {
		t.Errorf("%d rekeys in one second, more than %d: the lifetimes are not spread", most, limit)
	}
}

// check verifies that each side holds exactly n installed children, a's
// one per configured name, crosswise with b's, and 2n SAs in each
// dataplane (besides the allocated SPIs of children still negotiating).
func (r *rig) check(n int, when string) {
	t := r.t
	t.Helper()
	type pair struct{ in, out uint32 }
	var aKids, bKids map[pair]string
	var aNames map[string]int
	var dup []string
	collect := func(p *peer, names map[string]int) map[pair]string {
		out := map[pair]string{}
		if err := p.e.call(context.Background(), func() {
			for _, sa := range p.e.sas {
				for _, ch := range sa.children {
					if ch.state != childInstalled {
						continue
					}
					k := pair{ch.inSPI, ch.outSPI}
					id := ch.cfg.Name + " " + rangesString(ch.localTS) + "<->" + rangesString(ch.remoteTS)
					out[k] = id
					if names != nil {
						names[ch.cfg.Name]++
						if names[ch.cfg.Name] == 2 {
							dup = append(dup, ch.cfg.Name)
						}
					}
				}
			}
		}); err != nil {
			t.Fatal(err)
		}
		return out
	}
	aNames = map[string]int{}
	aKids = collect(r.a, aNames)
	bKids = collect(r.b, nil)
	if len(dup) > 0 {
		t.Fatalf("%s: a holds children twice: %v", when, dup[:min(5, len(dup))])
	}
	if len(aKids) != n || len(bKids) != n || len(aNames) != n {
		t.Fatalf("%s: a holds %d children (%d names), b %d; want %d", when, len(aKids), len(aNames), len(bKids), n)
	}
	for k, id := range aKids {
		if _, ok := bKids[pair{k.out, k.in}]; !ok {
			t.Fatalf("%s: a's child %s (in %08x out %08x) has no crosswise partner at b", when, id, k.in, k.out)
		}
	}
	for _, p := range []*peer{r.a, r.b} {
		// An exchange that waits to be tried again (TEMPORARY_FAILURE)
		// holds its allocated inbound SPI, a larval SA: those are
		// counted apart and must match the children still negotiating.
		negotiating := 0
		if err := p.e.call(context.Background(), func() {
			for _, sa := range p.e.sas {
				for _, ch := range sa.children {
					if ch.state == childNegotiating && ch.larval {
						negotiating++
					}
				}
			}
		}); err != nil {
			t.Fatal(err)
		}
		sas, larval := 0, 0
		for e, err := range p.b.SAs(context.Background()) {
			if err != nil {
				t.Fatal(err)
			}
			if e.State == kernelops.SALarval {
				larval++
			} else {
				sas++
			}
		}
		if sas != 2*n || larval != negotiating {
			t.Fatalf("%s: %s's dataplane holds %d SAs and %d allocated SPIs, want %d and %d (children negotiating)",
				when, p.name, sas, larval, 2*n, negotiating)
		}
	}
}
