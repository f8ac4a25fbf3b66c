package ike

import (
	"errors"
	"fmt"
	"net/netip"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/keyplane/keyplane/backends/nokernel"
	"github.com/keyplane/keyplane/ike/config"
	"github.com/keyplane/keyplane/ike/message"
	"github.com/keyplane/keyplane/kernelops"
	"github.com/keyplane/keyplane/kernelops/clock"
	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"
)

// vipPair: a pool server (b, pools = p) and a client (a) with one
// connection per identity in ids, each asking for vips.
func vipPair(t *testing.T, pool string, vips string, ids ...string) (clientCfg, serverCfg *config.Config) {
	t.Helper()
	p := freePorts(t, 4)
	env := func(string) (string, bool) { return "a shared secret of some length", true }
	var conns strings.Builder
	for _, id := range ids {
		fmt.Fprintf(&conns, `
	%[1]s {
		local_addrs = 127.0.0.1
		remote_addrs = 127.0.0.1
		local_port = %[2]d
		local_port_nat = %[3]d
		remote_port = %[4]d
		remote_port_nat = %[5]d
		proposals = aes128gcm16-prfsha256-x25519
		psk_env = PSK
		vips = %[6]s
		local {
			id = %[1]s.example.org
		}
		remote {
			id = b.example.org
		}
		children {
			%[1]s-net {
				local_ts = dynamic
				remote_ts = 10.2.0.0/16
				esp_proposals = aes128gcm16
			}
		}
	}`, id, p[0], p[1], p[2], p[3], vips)
	}
	client := fmt.Sprintf("connections {%s\n}\n", conns.String())
	server := fmt.Sprintf(`
pools {
%s
}
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
		pools = p
		local {
			id = b.example.org
		}
		children {
			b-net {
				local_ts = 10.2.0.0/16
				remote_ts = dynamic
				esp_proposals = aes128gcm16
			}
		}
	}
}
`, pool, p[2], p[3], p[0], p[1])
	var err error
	clientCfg, err = config.Parse("client.conf", []byte(client), config.Options{Getenv: env})
	require.NoError(t, err, client)
	serverCfg, err = config.Parse("server.conf", []byte(server), config.Options{Getenv: env})
	require.NoError(t, err, server)
	return clientCfg, serverCfg
}

// loAddrs lists the host addresses on the model's lo beyond its own.
func loAddrs(t *testing.T, p *peer) []string {
	t.Helper()
	as, err := kernelops.As[kernelops.AddrSelector](p.b)
	require.NoError(t, err)
	ifs, err := as.Interfaces(t.Context())
	require.NoError(t, err)
	var out []string
	for _, i := range ifs {
		for _, a := range i.Addrs {
			if i.Name == "lo" && (a.String() == "127.0.0.1/8" || a.String() == "::1/128") {
				continue
			}
			out = append(out, i.Name+":"+a.String())
		}
	}
	slices.Sort(out)
	return out
}

// childTS is the selectors of the installed children named name.
func childTS(t *testing.T, p *peer, name string) []string {
	t.Helper()
	kids, err := p.e.Children(t.Context())
	require.NoError(t, err)
	var out []string
	for _, k := range kids {
		if k.Name == name {
			out = append(out, k.LocalTS+" === "+k.RemoteTS)
		}
	}
	return out
}

func poolLeases(t *testing.T, p *peer) string {
	t.Helper()
	ps, err := p.e.Pools(t.Context())
	require.NoError(t, err)
	var b strings.Builder
	for _, pi := range ps {
		fmt.Fprintf(&b, "%s size=%d online=%d offline=%d", pi.Name, pi.Size, pi.Online, pi.Offline)
		for _, l := range pi.Leases {
			fmt.Fprintf(&b, " %s=%s", l.Identity, l.Addr)
			if !l.Online {
				b.WriteString("(offline)")
			}
		}
		b.WriteString(";")
	}
	return b.String()
}

// A client gets a lease, installs it on the interface towards the
// server through AddrManager and uses it as its selector; the pool is
// bounded; a lease goes offline with the IKE SA, comes back to the same
// identity and, when the pool is full, goes to a new identity; an IKE
// rekey keeps it.
func TestVirtualIPPool(t *testing.T) {
	noLeaks(t)
	cc, sc := vipPair(t, "p {\naddrs = 10.3.0.0/30\ndns = 10.3.9.9, 2001:db8::53\n}", "0.0.0.0", "c1", "c2", "c3")
	a := newPeer(t, "a", cc)
	b := newPeer(t, "b", sc)
	ctx := ctxT(t, 10*time.Second)
	assert.Equal(t, "p size=2 online=0 offline=0;", poolLeases(t, b))

	require.NoError(t, a.e.Initiate(ctx, "c1-net"))
	assert.Equal(t, []string{"lo:10.3.0.1/32"}, loAddrs(t, a), "the vip is on the interface of the route to the peer")
	assert.Equal(t, []string{"10.3.0.1/32 === 10.2.0.0/16"}, childTS(t, a, "c1-net"))
	assert.Equal(t, []string{"10.2.0.0/16 === 10.3.0.1/32"}, childTS(t, b, "b-net"))
	assert.Contains(t, a.logs.String(), `dns=[10.3.9.9]`, "the pool's IPv4 DNS server came with the lease")
	assert.Equal(t, "p size=2 online=1 offline=0 c1.example.org=10.3.0.1;", poolLeases(t, b))

	require.NoError(t, a.e.Initiate(ctx, "c2-net"))
	assert.Equal(t, []string{"lo:10.3.0.1/32", "lo:10.3.0.2/32"}, loAddrs(t, a))
	assert.Equal(t, []string{"10.3.0.2/32 === 10.2.0.0/16"}, childTS(t, a, "c2-net"))

	// Exhausted: the third identity is refused at IKE_AUTH.
	err := a.e.Initiate(ctx, "c3-net")
	var ne *NotifyError
	require.ErrorAs(t, err, &ne)
	assert.Equal(t, message.INTERNAL_ADDRESS_FAILURE, ne.Type)
	assert.True(t, ne.FromPeer)
	assert.Contains(t, b.logs.String(), "pool p (10.3.0.0/30) has all 2 addresses online")
	assert.Equal(t, []string{"lo:10.3.0.1/32", "lo:10.3.0.2/32"}, loAddrs(t, a))

	// An IKE rekey keeps the vip (installed once, leased once).
	var c2 uint32
	for _, s := range a.sas(t) {
		if s.Name == "c2" {
			c2 = s.ID
		}
	}
	require.NoError(t, a.e.RekeyIKESA(ctx, c2))
	waitFor(t, "the IKE rekey", 5*time.Second, func() bool {
		for _, s := range a.sas(t) {
			if s.Name == "c2" && s.ID != c2 && s.State == "established" && len(a.sas(t)) == 2 {
				return true
			}
		}
		return false
	})
	assert.Equal(t, []string{"lo:10.3.0.1/32", "lo:10.3.0.2/32"}, loAddrs(t, a))
	assert.Equal(t, "p size=2 online=2 offline=0 c1.example.org=10.3.0.1 c2.example.org=10.3.0.2;", poolLeases(t, b))
	assert.Equal(t, []string{"10.3.0.2/32 === 10.2.0.0/16"}, childTS(t, a, "c2-net"), "the child moved with its selectors")

	// Delete: the address leaves the interface, the lease goes offline.
	require.NoError(t, a.e.Terminate(ctx, "c1"))
	waitFor(t, "b's SA of c1 gone", 5*time.Second, func() bool { return strings.Contains(poolLeases(t, b), "online=1") })
	assert.Equal(t, []string{"lo:10.3.0.2/32"}, loAddrs(t, a))
	waitFor(t, "the model's address event", 5*time.Second, func() bool {
		return strings.Contains(a.logs.String(), `msg="address removed" peer=a addr=10.3.0.1`)
	})
	assert.Equal(t, "p size=2 online=1 offline=1 c1.example.org=10.3.0.1(offline) c2.example.org=10.3.0.2;", poolLeases(t, b))

	// The same identity gets its address back.
	require.NoError(t, a.e.Initiate(ctx, "c1-net"))
	assert.Equal(t, []string{"lo:10.3.0.1/32", "lo:10.3.0.2/32"}, loAddrs(t, a))
	assert.Contains(t, b.logs.String(), "how=\"its own lease again\"")

	// Full pool: a new identity takes an offline lease.
	require.NoError(t, a.e.Terminate(ctx, "c1"))
	waitFor(t, "c1 offline", 5*time.Second, func() bool { return strings.Contains(poolLeases(t, b), "offline=1") })
	require.NoError(t, a.e.Initiate(ctx, "c3-net"))
	assert.Equal(t, []string{"10.3.0.1/32 === 10.2.0.0/16"}, childTS(t, a, "c3-net"))
	assert.Equal(t, "p size=2 online=2 offline=0 c3.example.org=10.3.0.1 c2.example.org=10.3.0.2;", poolLeases(t, b))

	// A reload that keeps the pool's addresses keeps its leases; one
	// that changes them starts a new pool.
	_, sc2 := vipPair(t, "p {\naddrs = 10.3.0.0/30\ndns = 10.3.9.8\n}", "0.0.0.0", "c1")
	sc2.Connections[0].LocalPort, sc2.Connections[0].LocalNATPort = sc.Connections[0].LocalPort, sc.Connections[0].LocalNATPort
	sc2.Connections[0].RemotePort, sc2.Connections[0].RemoteNATPort = sc.Connections[0].RemotePort, sc.Connections[0].RemoteNATPort
	require.NoError(t, b.e.Reload(ctx, sc2))
	assert.Contains(t, poolLeases(t, b), "online=2")
	_, sc3 := vipPair(t, "p {\naddrs = 10.4.0.10-10.4.0.12\n}", "0.0.0.0", "c1")
	sc3.Connections[0].LocalPort, sc3.Connections[0].LocalNATPort = sc.Connections[0].LocalPort, sc.Connections[0].LocalNATPort
	sc3.Connections[0].RemotePort, sc3.Connections[0].RemoteNATPort = sc.Connections[0].RemotePort, sc.Connections[0].RemoteNATPort
	require.NoError(t, b.e.Reload(ctx, sc3))
	assert.Equal(t, "p size=3 online=0 offline=0;", poolLeases(t, b))

	// Daemon stop: every vip leaves the interface.
	a.e.Close()
	assert.Empty(t, loAddrs(t, a))
}

// A CFG_REPLY without an address fails the IKE SA with the reason; the
// client installs nothing.
func TestVirtualIPNoAddress(t *testing.T) {
	noLeaks(t)
	cc, sc := vipPair(t, "p {\naddrs = 10.3.0.0/30\n}", "0.0.0.0, ::", "c1")
	a := newPeer(t, "a", cc)
	b := newPeer(t, "b", sc)
	require.NoError(t, b.e.call(t.Context(), func() {
		b.e.rewriteResponse = func(req *message.Message, ps []message.Payload) []message.Payload {
			return slices.DeleteFunc(ps, func(p message.Payload) bool { return p.Type() == message.PayloadCP })
		}
	}))
	ctx := ctxT(t, 10*time.Second)
	err := a.e.Initiate(ctx, "c1-net")
	require.ErrorIs(t, err, ErrNoVirtualIP)
	assert.Contains(t, err.Error(), "the IKE_AUTH response has no CFG_REPLY")
	assert.Empty(t, loAddrs(t, a))
	waitFor(t, "both IKE SAs gone", 5*time.Second, func() bool { return len(a.sas(t)) == 0 && len(b.sas(t)) == 0 })
	assert.Equal(t, "p size=2 online=0 offline=1 c1.example.org=10.3.0.1(offline);", poolLeases(t, b))
}

// Asked for both families, given IPv4 only (the pool's): the IKE SA
// comes up with the IPv4 vip, the missing family logged.
func TestVirtualIPOneFamily(t *testing.T) {
	noLeaks(t)
	cc, sc := vipPair(t, "p {\naddrs = 10.3.0.7/32\n}", "0.0.0.0, ::", "c1")
	ha, hb := &hookLog{}, &hookLog{}
	a := newPeer(t, "a", cc, withEngineOptions(func(o *Options) { o.Hooks = ha }))
	b := newPeer(t, "b", sc, withEngineOptions(func(o *Options) { o.Hooks = hb }))
	ctx := ctxT(t, 10*time.Second)
	require.NoError(t, a.e.Initiate(ctx, "c1-net"))
	vip := []netip.Addr{netip.MustParseAddr("10.3.0.7")}
	waitFor(t, "the hooks' up calls", 5*time.Second, func() bool {
		ca, _ := ha.get()
		cb, _ := hb.get()
		return len(ca) == 1 && len(cb) == 1
	})
	_, ia := ha.get()
	_, ib := hb.get()
	assert.Equal(t, vip, ia[0].VIPs, "the client's hook sees its vip")
	assert.Empty(t, ia[0].PeerVIPs)
	assert.Equal(t, vip, ib[0].PeerVIPs, "the server's hook sees the lease")
	assert.Empty(t, ib[0].VIPs)
	assert.Equal(t, []string{"lo:10.3.0.7/32"}, loAddrs(t, a))
	assert.Contains(t, a.logs.String(), "the peer assigned no virtual IP of a family asked for")
	assert.Contains(t, b.logs.String(), "no pool of connection b (p) holds IPv6 addresses")
	require.NoError(t, a.e.Terminate(ctx, "c1"))
	a.expectEmpty(t)
	assert.Empty(t, loAddrs(t, a))
}

func TestAddrPoolAcquire(t *testing.T) {
	pc := &config.Pool{Name: "p", Addrs: "10.0.0.1-10.0.0.2", First: netip.MustParseAddr("10.0.0.1"), Last: netip.MustParseAddr("10.0.0.2")}
	p := newAddrPool(pc)
	t0 := time.Unix(1000, 0)
	steps := []struct {
		op, id string
		want   string // address, or the error
	}{
		{"get", "x", "10.0.0.1"},
		{"get", "x", "10.0.0.1"}, // a second SA of x shares it
		{"get", "y", "10.0.0.2"},
		{"get", "z", "exhausted"},
		{"put", "x", ""},
		{"get", "z", "exhausted"}, // x still holds one reference
		{"put", "x", ""},
		{"put", "y", ""},
		{"get", "z", "10.0.0.1"}, // the oldest offline lease (x's)
		{"get", "y", "10.0.0.2"}, // y's own, offline
		{"get", "x", "exhausted"},
	}
	for i, s := range steps {
		t0 = t0.Add(time.Second)
		if s.op == "put" {
			p.release(p.byID[s.id], t0)
			continue
		}
		l, _, err := p.acquire(s.id)
		if s.want == "exhausted" {
			assert.ErrorIs(t, err, ErrPoolExhausted, "step %d", i)
			continue
		}
		require.NoError(t, err, "step %d", i)
		assert.Equal(t, s.want, l.addr.String(), "step %d", i)
	}
	assert.Len(t, p.byAddr, 2, "the table is bounded by the pool's size")
	assert.False(t, errors.Is(nil, ErrPoolExhausted))
}

// through sends one packet from src (a's side) to dst through a's and
// b's models: protected by a's policy and SA, delivered by b's.
func through(t *testing.T, a, b *peer, src, dst string) string {
	t.Helper()
	s, d := netip.MustParseAddr(src), netip.MustParseAddr(dst)
	out, err := a.b.Inject(t.Context(), nokernel.Packet{Src: s, Dst: d, Proto: 17, Len: 100})
	require.NoError(t, err)
	if out.Verdict != nokernel.Protected || len(out.SAs) == 0 {
		return "out: " + out.Verdict.String() + " " + out.Reason
	}
	in, err := b.b.Inject(t.Context(), nokernel.Packet{Dir: kernelops.DirIn, SA: out.SAs[0], Src: s, Dst: d, Proto: 17, Len: 100})
	require.NoError(t, err)
	return "in: " + in.Verdict.String()
}

// The vip carries traffic in the models (the client's policy matches
// packets from it, the server's delivers them); a second child,
// negotiated by CREATE_CHILD_SA, takes it as its local selector too; a
// reauthentication (make before break) gets the same address back for
// the same identity and the address never leaves the interface meanwhile.
func TestVirtualIPChildrenAndReauth(t *testing.T) {
	noLeaks(t)
	clk := clock.NewFake(epoch)
	cc, sc := vipPair(t, "p {\naddrs = 10.3.0.0/30\n}", "0.0.0.0", "c1")
	cc = withSecondChild(t, cc, "c1-net2", "dynamic", "10.5.0.0/16")
	sc = withSecondChild(t, sc, "b-net2", "10.5.0.0/16", "dynamic")
	c := cc.Connections[0]
	c.ReauthTime, c.RekeyTime, c.RandTime, c.OverTime = time.Hour, 0, 0, 10*time.Minute
	for _, ch := range append(c.Children, sc.Connections[0].Children...) {
		ch.Lifetime.Soft.AddTime, ch.Lifetime.Hard.AddTime, ch.RandTime = 10*time.Hour, 11*time.Hour, 0
	}
	require.NoError(t, cc.Validate())
	require.NoError(t, sc.Validate())
	a := newPeer(t, "a", cc, withClock(clk), withLongLarval())
	b := newPeer(t, "b", sc, withClock(clk), withLongLarval())
	establish(t, a, b, "c1-net")
	ctx := ctxT(t, 10*time.Second)
	require.NoError(t, a.e.Initiate(ctx, "c1-net2"))
	assert.Equal(t, []string{"10.3.0.1/32 === 10.5.0.0/16"}, childTS(t, a, "c1-net2"))
	assert.Equal(t, []string{"10.5.0.0/16 === 10.3.0.1/32"}, childTS(t, b, "b-net2"))
	assert.Equal(t, "in: delivered", through(t, a, b, "10.3.0.1", "10.2.0.9"))
	assert.Equal(t, "in: delivered", through(t, a, b, "10.3.0.1", "10.5.0.9"))
	assert.True(t, strings.HasPrefix(through(t, a, b, "127.0.0.1", "10.2.0.9"), "out: passed"), "the IKE address is not the selector: sent in the clear")

	before := a.sas(t)
	require.Len(t, before, 1)
	step(t, clk, time.Hour, time.Minute, a, b)
	waitFor(t, "the reauthenticated IKE SA with both children", 5*time.Second, func() bool {
		s := a.sas(t)
		return len(s) == 1 && s[0].ID != before[0].ID && len(s[0].Children) == 2 && len(b.sas(t)) == 1
	})
	assert.Equal(t, []string{"lo:10.3.0.1/32"}, loAddrs(t, a))
	assert.Equal(t, []string{"10.3.0.1/32 === 10.5.0.0/16"}, childTS(t, a, "c1-net2"))
	assert.Equal(t, "p size=2 online=1 offline=0 c1.example.org=10.3.0.1;", poolLeases(t, b))
	assert.Contains(t, a.logs.String(), "virtual IP released", "the old IKE SA let go of its reference")
	assert.NotContains(t, a.logs.String(), `msg="address removed" peer=a addr=10.3.0.1`, "the address stayed all along")
	assert.Equal(t, "in: delivered", through(t, a, b, "10.3.0.1", "10.2.0.9"))
}

const noAddrNote = "this test's dataplane cannot add addresses"

// vips on a dataplane that cannot add addresses: refused at load,
// quoting the backend's note.
func TestVirtualIPNeedsAddrManager(t *testing.T) {
	noLeaks(t)
	cc, _ := vipPair(t, "p {\naddrs = 10.3.0.0/30\n}", "0.0.0.0", "c1")
	b, err := nokernel.Open(t.Context(), kernelops.Options{})
	require.NoError(t, err)
	defer b.Close()
	_, err = New(t.Context(), Options{Backend: lacking{b, kernelops.CapAddrManage, noAddrNote}, Config: cc})
	require.ErrorIs(t, err, ErrFacetMissing)
	assert.Contains(t, err.Error(), "connection c1: vips = [0.0.0.0]")
	assert.Contains(t, err.Error(), noAddrNote)
}
