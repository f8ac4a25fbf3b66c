package config

import (
	"errors"
	"net/netip"
	"strings"
	"testing"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"
)

func poolConf(pools, conn string) string {
	return pools + "connections {\n a {\n  local_addrs = 192.0.2.1\n  remote_addrs = 192.0.2.2\n  psk_env = SITE_PSK\n" + conn +
		"  children {\n   a1 {\n   }\n  }\n }\n}\n"
}

func TestPoolAddrs(t *testing.T) {
	for _, c := range []struct {
		in, first, last string
		size            int
		err             string
	}{
		{in: "10.3.0.0/24", first: "10.3.0.1", last: "10.3.0.254", size: 254},
		{in: "10.3.0.5/24", first: "10.3.0.5", last: "10.3.0.254", size: 250},
		{in: "10.3.0.0/30", first: "10.3.0.1", last: "10.3.0.2", size: 2},
		{in: "10.3.0.0/31", first: "10.3.0.1", last: "10.3.0.1", size: 1},
		{in: "10.3.0.7/32", first: "10.3.0.7", last: "10.3.0.7", size: 1},
		{in: "10.3.0.10-10.3.0.12", first: "10.3.0.10", last: "10.3.0.12", size: 3},
		{in: "fd00::/120", first: "fd00::1", last: "fd00::ff", size: 255},
		{in: "fd00::/64", first: "fd00::1", last: "fd00::ffff:ffff:ffff:ffff", size: MaxPoolSize},
		{in: "10.3.0.12-10.3.0.10", err: "the range ends before it starts"},
		{in: "10.3.0.1-fd00::1", err: "two address families"},
		{in: "10.3.0.0", err: "want a prefix"},
		{in: "pool", err: "want a prefix"},
	} {
		first, last, err := parsePoolAddrs(c.in)
		if c.err != "" {
			require.Error(t, err, c.in)
			assert.Contains(t, err.Error(), c.err, c.in)
			continue
		}
		require.NoError(t, err, c.in)
		assert.Equal(t, c.first, first.String(), c.in)
		assert.Equal(t, c.last, last.String(), c.in)
		p := &Pool{First: first, Last: last}
		assert.Equal(t, c.size, p.Size(), c.in)
		assert.True(t, p.Contains(first) && p.Contains(last), c.in)
	}
}

// pools and vips parse; mistakes are errors naming the setting.
func TestPoolsSettings(t *testing.T) {
	pools := "pools {\n vpn {\n  addrs = 10.3.0.0/24\n  dns = 10.3.0.53, fd00::53\n }\n v6 {\n  addrs = fd00::/120\n }\n}\n"
	cfg, err := Parse("kp.conf", []byte(poolConf(pools, "  pools = vpn, v6\n  vips = 0.0.0.0, ::\n")), testOpts())
	require.NoError(t, err)
	require.Len(t, cfg.Pools, 2)
	assert.Equal(t, []netip.Addr{netip.MustParseAddr("10.3.0.53"), netip.MustParseAddr("fd00::53")}, cfg.Pool("vpn").DNS)
	c := cfg.Connections[0]
	assert.Equal(t, []string{"vpn", "v6"}, c.Pools)
	assert.Equal(t, []netip.Addr{netip.IPv4Unspecified(), netip.IPv6Unspecified()}, c.VIPs)

	for _, bad := range []struct{ pools, conn, field, msg string }{
		{"", "  pools = nope\n", "pools", `no pool named "nope" (none are defined)`},
		{pools, "  pools = vpn, nope\n", "pools", `no pool named "nope" (defined: vpn, v6)`},
		{"", "  vips = 0.0.0.0, 10.1.1.1\n", "vips", "one virtual IP per address family"},
		{"", "  vips = any\n", "vips", "want IPv4 or IPv6 addresses"},
		{"", "  vips = 0.0.0.0\n  children {\n   t1 {\n    start_action = trap\n   }\n  }\n", "start_action", "trap with vips and a dynamic local_ts"},
		{"pools {\n p {\n  addrs = 10.3.0.0/33\n }\n}\n", "", "pools.p.addrs", "want a prefix"},
		{"pools {\n p {\n  dns = 10.3.0.53\n }\n}\n", "", "pools.p.addrs", "missing"},
		{"pools {\n p {\n  addrs = 10.3.0.0/24\n  dns = ns1\n }\n}\n", "", "pools.p.dns", "want IPv4 or IPv6 addresses"},
		{"pools {\n p {\n  addrs = 10.3.0.0/24\n  netmask = 24\n }\n}\n", "", "netmask", "unknown setting"},
		{"pools {\n p {\n  addrs = 10.3.0.0/24\n }\n q {\n  addrs = 10.3.0.200-10.3.1.10\n }\n}\n", "", "pools.q.addrs", "overlaps pool p"},
	} {
		_, err := Parse("kp.conf", []byte(poolConf(bad.pools, bad.conn)), testOpts())
		var es Errors
		require.True(t, errors.As(err, &es), "%s%s: %v", bad.pools, bad.conn, err)
		found := false
		for _, e := range es {
			found = found || (e.Field == bad.field && strings.Contains(e.Msg, bad.msg))
		}
		assert.True(t, found, "want %s: %s in %v", bad.field, bad.msg, err)
	}
}

// A Config built in Go with a pool whose bounds are unset is refused.
func TestPoolsValidateGo(t *testing.T) {
	cfg, err := Parse("kp.conf", []byte(poolConf("pools {\n p {\n  addrs = 10.3.0.0/24\n }\n}\n", "  pools = p\n")), testOpts())
	require.NoError(t, err)
	cfg.Pools[0].Last = netip.Addr{}
	err = cfg.Validate()
	require.Error(t, err)
	assert.Contains(t, err.Error(), `pools.p.addrs: "10.3.0.0/24" leaves First and Last unset or reversed`)
}

// A reload sees changed pools and a connection's changed vips or pools.
func TestPoolsCompare(t *testing.T) {
	parse := func(pools, conn string) *Config {
		cfg, err := Parse("kp.conf", []byte(poolConf(pools, conn)), testOpts())
		require.NoError(t, err)
		return cfg
	}
	p1 := "pools {\n vpn {\n  addrs = 10.3.0.0/24\n }\n}\n"
	p2 := "pools {\n vpn {\n  addrs = 10.3.0.0/24\n  dns = 10.3.0.53\n }\n}\n"
	a := parse(p1, "  pools = vpn\n")
	assert.Empty(t, Compare(a, parse(p1, "  pools = vpn\n")).Settings)
	assert.Equal(t, []string{"pools"}, Compare(a, parse(p2, "  pools = vpn\n")).Settings)
	assert.Equal(t, []string{"a"}, Compare(a, parse(p1, "")).Changed.Connections)
	assert.Equal(t, []string{"a"}, Compare(a, parse(p1, "  pools = vpn\n  vips = 0.0.0.0\n")).Changed.Connections)
}

// config import copies vips, pools and a pools section's addrs and dns.
func TestImportPools(t *testing.T) {
	src := `connections {
    rw {
        local_addrs = 192.0.2.1
        remote_addrs = 192.0.2.2
        vips = 0.0.0.0
        pools = vpn
        children {
            rw1 {
            }
        }
    }
}
pools {
    vpn {
        addrs = 10.3.0.0/24
        dns = 10.3.0.53
        split_include = 10.0.0.0/8
    }
}
`
	im, err := ImportSwanctl("swanctl.conf", []byte(src))
	require.NoError(t, err)
	assert.Empty(t, im.Errors)
	require.Len(t, im.Skipped, 1)
	assert.Equal(t, "pools.vpn.split_include", im.Skipped[0].Setting)
	cfg, err := Parse("kp.conf", []byte(im.Text), Options{ReadFile: func(string) ([]byte, error) { return []byte("a stand-in key of thirty-two bytes"), nil }})
	require.NoError(t, err, im.Text)
	assert.Equal(t, []string{"vpn"}, cfg.Connections[0].Pools)
	assert.Equal(t, []netip.Addr{netip.IPv4Unspecified()}, cfg.Connections[0].VIPs)
	require.NotNil(t, cfg.Pool("vpn"))
	assert.Equal(t, "10.3.0.1", cfg.Pool("vpn").First.String())
	assert.Equal(t, []netip.Addr{netip.MustParseAddr("10.3.0.53")}, cfg.Pool("vpn").DNS)
}
