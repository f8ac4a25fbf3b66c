package ike

import (
	"context"
	"errors"
	"flag"
	"fmt"
	"log/slog"
	"net/netip"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"

	"github.com/keyplane/keyplane/backends/nokernel"
	"github.com/keyplane/keyplane/ike/config"
	"github.com/keyplane/keyplane/internal/memtest"
	"github.com/keyplane/keyplane/kernelops"
)

// The tunnel benchmark's size; the figures in the docs come from
//
//	go test -run '^$' -bench BenchmarkTunnels -count 6 ./ike | benchstat -col /poll -
var (
	benchTunnels  = flag.Int("bench.tunnels", 1000, "BenchmarkTunnels: IKE SAs brought up per iteration")
	benchInflight = flag.Int("bench.inflight", 64, "BenchmarkTunnels: initiations at once (the tunnel count: one burst)")
	benchSockBuf  = flag.String("bench.sockbuf", "", "BenchmarkTunnels: daemon.ike_socket_buffer on both engines (empty: the default)")
	benchTries    = flag.Int("bench.tries", 0, "BenchmarkTunnels: daemon.retransmit_tries on both engines (0: the default); fewer shows at a smaller burst whether the retransmission rounds suffice")
)

// tunnelConfigs: a has n connections t0..t(n-1), each with its own
// identity and /32 pair, so n IKE SAs with one child each; b has one
// connection for any identity whose child covers them all and narrows
// to each.
func tunnelConfigs(t testing.TB, n int) (*config.Config, *config.Config) {
	// All tunnels come from one address, as from peers behind one NAT:
	// the per-source and half-open limits (strongSwan's defaults) are off
	// on both, so the handshakes are measured, not the DoS protection.
	daemon := "daemon {\n\tcookie_threshold = 0\n\tcookie_threshold_ip = 0\n\tblock_threshold = 0\n\tinit_limit_half_open = 0\n"
	if *benchSockBuf != "" {
		daemon += "\tike_socket_buffer = " + *benchSockBuf + "\n"
	}
	if *benchTries > 0 {
		daemon += fmt.Sprintf("\tretransmit_tries = %d\n", *benchTries)
	}
	daemon += "}\n"
	p := freePorts(t, 4)
	var ac strings.Builder
	for i := range n {
		fmt.Fprintf(&ac, `
	t%d {
		local_addrs = 127.0.0.1
		remote_addrs = 127.0.0.1
		local_port = %d
		local_port_nat = %d
		remote_port = %d
		remote_port_nat = %d
		proposals = aes128gcm16-prfsha256-x25519
		psk_env = PSK
		local {
			id = t%d.a.example.org
		}
		remote {
			id = b.example.org
		}
		children {
			t%d-net {
				local_ts = %s/32
				remote_ts = %s/32
				esp_proposals = aes128gcm16
			}
		}
	}
`, i, p[0], p[1], p[2], p[3], i, i, tunnelAddr(1, i), tunnelAddr(2, i))
	}
	parse := func(name, src string) *config.Config {
		cfg, err := config.Parse(name+".conf", []byte(src), config.Options{Getenv: func(string) (string, bool) { return "tunnels", true }})
		require.NoError(t, err)
		return cfg
	}
	a := parse("a", daemon+"connections {\n"+ac.String()+"}\n")
	bLocal, bRemote := "10.2.0.0/16", "10.1.0.0/16"
	if n > 64000 { // tunnelAddr's second /16s
		bLocal, bRemote = bLocal+",10.6.0.0/16", bRemote+",10.5.0.0/16"
	}
	b := parse("b", daemon+fmt.Sprintf(`
connections {
	b {
		local_addrs = 127.0.0.1
		remote_addrs = 127.0.0.1
		local_port = %d
		local_port_nat = %d
		remote_port = %d
		remote_port_nat = %d
		proposals = aes128gcm16-prfsha256-x25519
		psk_env = PSK
		local {
			id = b.example.org
		}
		remote {
			id = %%any
		}
		children {
			b-net {
				local_ts = %s
				remote_ts = %s
				esp_proposals = aes128gcm16
			}
		}
	}
}
`, p[2], p[3], p[0], p[1], bLocal, bRemote))
	return a, b
}

// tunnelAddr is tunnel i's address in 10.net.0.0/16, then (from the
// 64,000th) in 10.(net+4).0.0/16.
func tunnelAddr(net, i int) netip.Addr {
	hi := i / 250
	return netip.AddrFrom4([4]byte{10, byte(net + 4*(hi>>8)), byte(hi), byte(i%250 + 1)})
}

// bringUp initiates t0..t(n-1) on a, at most inflight at once, and
// waits for each child.
func bringUp(ctx context.Context, a *Engine, n, inflight int) error {
	sem := make(chan struct{}, inflight)
	errs := make(chan error, n)
	for i := range n {
		sem <- struct{}{}
		go func() {
			defer func() { <-sem }()
			errs <- a.Initiate(ctx, fmt.Sprintf("t%d-net", i))
		}()
	}
	var first error
	for range n {
		if err := <-errs; err != nil && first == nil {
			first = err
		}
	}
	return first
}

// poll lists the children of each engine every interval until ctx ends,
// as a monitoring script running `keyplane child list -json` does, and
// counts the listings.
func poll(ctx context.Context, every time.Duration, n *atomic.Int64, es ...*Engine) {
	tk := time.NewTicker(every)
	defer tk.Stop()
	for {
		for _, e := range es {
			if _, err := e.Children(ctx); err == nil {
				n.Add(1)
			}
		}
		select {
		case <-ctx.Done():
			return
		case <-tk.C:
		}
	}
}

// pollChanges lists what changed of each engine's children every
// interval until ctx ends, as a monitor running `keyplane child list
// --since CURSOR -json` with the cursor of its last listing does (the
// first listing, and one after an expired cursor, is everything), and
// counts the listings and the children they listed.
func pollChanges(ctx context.Context, every time.Duration, n, listed *atomic.Int64, es ...*Engine) {
	tk := time.NewTicker(every)
	defer tk.Stop()
	cur := make([]Cursor, len(es))
	for {
		for i, e := range es {
			c, err := e.Changes(ctx, cur[i], ChangeOptions{})
			if errors.Is(err, ErrCursorExpired) {
				cur[i] = Cursor{}
				continue
			}
			if err != nil {
				continue
			}
			var kids []ChildInfo
			for ch, err := range c.Children(ctx) {
				if err != nil {
					break
				}
				kids = append(kids, ch)
			}
			cur[i] = c.Next
			n.Add(1)
			listed.Add(int64(len(kids)))
		}
		select {
		case <-ctx.Done():
			return
		case <-tk.C:
		}
	}
}

// BenchmarkTunnels brings up -bench.tunnels IKE SAs (one child each)
// between two engines on nokernel over loopback, without and with both
// engines' children listed every 0.2 s throughout: in full (poll=200ms)
// or what changed since the last listing (poll=since-200ms, listed/op
// the children those listings carried). The ratio to poll=off
// (benchstat -col /poll) is what status listings cost the bring-up: in
// tunnels/s, and in the process's CPU per tunnel (cpu-µs/tunnel, both
// engines and the listings), which other load on the machine moves less.
// Every tunnel must be up at both ends (none lost). It also reports the
// live heap the tunnels added per IKE SA + child (B/tunnel, as
// BenchmarkTunnelMemory) and, with -bench.heapprofile, writes the heap
// profile with all of them up (poll=off). make bench-100k runs it at
// 100,000.
func BenchmarkTunnels(b *testing.B) {
	n := *benchTunnels
	for _, mode := range []struct {
		every time.Duration
		since bool
	}{{0, false}, {200 * time.Millisecond, false}, {200 * time.Millisecond, true}} {
		every := mode.every
		name := "poll=off"
		switch {
		case mode.since:
			name = "poll=since-" + every.String()
		case every > 0:
			name = "poll=" + every.String()
		}
		b.Run(name, func(b *testing.B) {
			ca, cb := tunnelConfigs(b, n)
			var lists, listed atomic.Int64
			var drops, behind uint64
			var cpu time.Duration
			var heap float64
			for b.Loop() {
				b.StopTimer()
				a := newPeer(b, "a", ca, withLogLevel(slog.LevelWarn))
				z := newPeer(b, "b", cb, withLogLevel(slog.LevelWarn))
				ctx, cancel := context.WithCancel(b.Context())
				var wg sync.WaitGroup
				switch {
				case mode.since:
					wg.Go(func() { pollChanges(ctx, every, &lists, &listed, a.e, z.e) })
				case every > 0:
					wg.Go(func() { poll(ctx, every, &lists, a.e, z.e) })
				}
				before := memtest.LiveHeap()
				b.StartTimer()
				cpu0 := cpuTime()
				err := bringUp(b.Context(), a.e, n, *benchInflight)
				cpu += cpuTime() - cpu0
				b.StopTimer()
				cancel()
				wg.Wait()
				if err != nil {
					b.Fatal(err)
				}
				for _, e := range []*Engine{a.e, z.e} {
					ikes, kids, err := e.StateCounts(b.Context())
					require.NoError(b, err)
					require.Equal(b, map[IKEState]int{IKEEstablished: n}, ikes, "IKE SAs")
					require.Equal(b, map[ChildState]int{ChildInstalled: n}, kids, "children")
				}
				heap += float64(memtest.LiveHeap()-before) / float64(2*n)
				if every == 0 {
					memtest.WriteHeapProfile(b, *benchHeapProfile)
				}
				for _, e := range []*Engine{a.e, z.e} {
					st, err := e.SocketStats(b.Context())
					require.NoError(b, err)
					for _, s := range st {
						drops += s.Drops
						behind += s.Behind
					}
				}
				require.NoError(b, a.e.Close())
				require.NoError(b, z.e.Close())
				b.StartTimer()
			}
			b.ReportMetric(float64(n)*float64(b.N)/b.Elapsed().Seconds(), "tunnels/s")
			b.ReportMetric(float64(cpu.Microseconds())/float64(n*b.N), "cpu-µs/tunnel")
			b.ReportMetric(float64(lists.Load())/float64(b.N), "lists/op")
			if mode.since {
				b.ReportMetric(float64(listed.Load())/float64(b.N), "listed/op")
			}
			b.ReportMetric(heap/float64(b.N), "B/tunnel")
			b.ReportMetric(float64(drops)/float64(b.N), "socket-drops/op")
			b.ReportMetric(float64(behind)/float64(b.N), "behind-drops/op")
		})
	}
}

// countGetSA is a test double over the nokernel model that counts GetSA
// calls: a listing must not make them.
type countGetSA struct {
	*nokernel.Backend
	n atomic.Int64
}

func (c *countGetSA) GetSA(ctx context.Context, id kernelops.SAID) (*kernelops.SAEntry, error) {
	c.n.Add(1)
	return c.Backend.GetSA(ctx, id)
}

// TestStatusWhilePolled: 100 tunnels come up while both engines' children
// are listed every 5 ms; the listings never read the dataplane per SA,
// and once traffic has moved they show each child's bytes and packets,
// in and out, as the dataplane counted them.
func TestStatusWhilePolled(t *testing.T) {
	const n = 100
	ca, cb := tunnelConfigs(t, n)
	var ga, gb *countGetSA
	a := newPeer(t, "a", ca, withLogLevel(slog.LevelWarn), withBackend(func(b *nokernel.Backend) kernelops.Backend {
		ga = &countGetSA{Backend: b}
		return ga
	}))
	z := newPeer(t, "b", cb, withLogLevel(slog.LevelWarn), withBackend(func(b *nokernel.Backend) kernelops.Backend {
		gb = &countGetSA{Backend: b}
		return gb
	}))
	ctx, cancel := context.WithCancel(t.Context())
	var lists atomic.Int64
	var wg sync.WaitGroup
	wg.Go(func() { poll(ctx, 5*time.Millisecond, &lists, a.e, z.e) })
	err := bringUp(t.Context(), a.e, n, 64)
	cancel()
	wg.Wait()
	require.NoError(t, err)
	assert.Positive(t, lists.Load())

	// Tunnel i carries i+1 packets of 100+i bytes from a to b.
	for i := range n {
		for range i + 1 {
			res, err := a.b.Inject(t.Context(), nokernel.Packet{Dir: kernelops.DirOut, Src: tunnelAddr(1, i), Dst: tunnelAddr(2, i),
				Proto: 17, SrcPort: 5000, DstPort: 53, Len: 100 + i})
			require.NoError(t, err)
			require.Equal(t, nokernel.Protected, res.Verdict, "tunnel %d", i)
			res, err = z.b.Inject(t.Context(), nokernel.Packet{Dir: kernelops.DirIn, SA: res.SAs[0], Src: tunnelAddr(1, i), Dst: tunnelAddr(2, i),
				Proto: 17, SrcPort: 5000, DstPort: 53, Len: 100 + i})
			require.NoError(t, err)
			require.Equal(t, nokernel.Delivered, res.Verdict, "tunnel %d", i)
		}
	}
	ac, err := a.e.Children(t.Context())
	require.NoError(t, err)
	bc, err := z.e.Children(t.Context())
	require.NoError(t, err)
	require.Len(t, ac, n)
	require.Len(t, bc, n)
	byTS := map[string]ChildInfo{}
	for _, c := range bc {
		byTS[c.RemoteTS] = c
	}
	for _, c := range ac {
		var i int
		_, err := fmt.Sscanf(c.Name, "t%d-net", &i)
		require.NoError(t, err)
		want := ChildInfo{BytesOut: uint64((i + 1) * (100 + i)), PacketsOut: uint64(i + 1)}
		assert.Empty(t, c.CounterErr)
		assert.Equal(t, want, ChildInfo{BytesIn: c.BytesIn, PacketsIn: c.PacketsIn, BytesOut: c.BytesOut, PacketsOut: c.PacketsOut}, "a's %s", c.Name)
		r, ok := byTS[c.LocalTS]
		require.True(t, ok, "b has no child for %s", c.LocalTS)
		assert.Equal(t, c.SPIOut, r.SPIIn)
		assert.Equal(t, ChildInfo{BytesIn: want.BytesOut, PacketsIn: want.PacketsOut},
			ChildInfo{BytesIn: r.BytesIn, PacketsIn: r.PacketsIn, BytesOut: r.BytesOut, PacketsOut: r.PacketsOut}, "b's child for %s", c.LocalTS)
	}
	assert.Zero(t, ga.n.Load(), "GetSA calls on a")
	assert.Zero(t, gb.n.Load(), "GetSA calls on b")
	t.Logf("%d listings while %d tunnels came up", lists.Load(), n)

	// A child whose SA left the dataplane behind the engine's back says so.
	victim := ac[0]
	var id kernelops.SAID
	for u, err := range kernelops.ReadUsage(t.Context(), a.b) {
		require.NoError(t, err)
		if fmt.Sprintf("%08x", u.ID.SPI) == victim.SPIOut {
			id = u.ID
		}
	}
	require.NoError(t, a.b.DeleteSA(t.Context(), id))
	ac, err = a.e.Children(t.Context())
	require.NoError(t, err)
	found := false
	for _, c := range ac {
		if c.SPIOut == victim.SPIOut {
			found = true
			assert.ErrorContains(t, errorString(c.CounterErr), kernelops.ErrNotFound.Error())
		} else {
			assert.Empty(t, c.CounterErr)
		}
	}
	assert.True(t, found, "the engine keeps the child (it hears of no delete)")
}

type errorString string

func (e errorString) Error() string { return string(e) }

// BenchmarkChildList lists the children of an engine holding
// -bench.tunnels established tunnels, while a probe keeps asking the
// loop for a no-op: loop-wait-µs is the probe's mean wait, what each
// handshake message waits behind the listings, and the figure to
// compare (benchstat) between versions of the listing.
func BenchmarkChildList(b *testing.B) {
	n := *benchTunnels
	ca, cb := tunnelConfigs(b, n)
	a := newPeer(b, "a", ca, withLogLevel(slog.LevelWarn))
	newPeer(b, "b", cb, withLogLevel(slog.LevelWarn))
	require.NoError(b, bringUp(b.Context(), a.e, n, *benchInflight))
	ctx, cancel := context.WithCancel(b.Context())
	var probes, waited atomic.Int64
	var wg sync.WaitGroup
	wg.Go(func() {
		for ctx.Err() == nil {
			t0 := time.Now()
			if a.e.call(ctx, func() {}) == nil {
				waited.Add(int64(time.Since(t0)))
				probes.Add(1)
			}
			time.Sleep(100 * time.Microsecond)
		}
	})
	b.ResetTimer()
	for b.Loop() {
		cs, err := a.e.Children(b.Context())
		if err != nil || len(cs) != n {
			b.Fatalf("%d children, %v", len(cs), err)
		}
	}
	b.StopTimer()
	cancel()
	wg.Wait()
	if p := probes.Load(); p > 0 {
		b.ReportMetric(float64(waited.Load())/float64(p)/1e3, "loop-wait-µs")
	}
}

func TestHexSPI(t *testing.T) {
	for _, tc := range []struct {
		v      uint64
		digits int
	}{{0, 8}, {0xc0ffee, 8}, {0xffffffff, 8}, {0, 16}, {0x1, 16}, {0xdeadbeefcafef00d, 16}, {0x0123456789abcdef, 16}} {
		assert.Equal(t, fmt.Sprintf("%0*x", tc.digits, tc.v), hexSPI(tc.v, tc.digits))
	}
}
