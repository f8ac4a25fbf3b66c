package ike

import (
	"net/netip"
	"testing"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"

	"github.com/keyplane/keyplane/backends/nokernel"
	"github.com/keyplane/keyplane/ike/config"
	"github.com/keyplane/keyplane/ike/ikecrypto"
	"github.com/keyplane/keyplane/kernelops"
)

// goConfig is a Config built in Go from the defaults: one connection
// on loopback with a child.
func goConfig(t *testing.T) *config.Config {
	p := freePorts(t, 4)
	cfg := config.Defaults()
	c := config.DefaultConnection("site")
	c.LocalAddr, c.RemoteAddr = netip.MustParseAddr("127.0.0.1"), netip.MustParseAddr("127.0.0.1")
	c.LocalPort, c.LocalNATPort, c.RemotePort, c.RemoteNATPort = p[0], p[1], p[2], p[3]
	c.LocalID = config.AddrIdentity(c.LocalAddr)
	c.PSK = ikecrypto.Key("a long enough pre-shared key")
	c.Children = append(c.Children, config.DefaultChild("lan"))
	cfg.Connections = append(cfg.Connections, c)
	return cfg
}

// TestNewValidates: New and Reload check a Config built in Go as the
// parser checks a file. A zero HalfOpenTimeout (which would remove
// every half-open IKE SA at once) is refused with the parser's typed
// error naming the setting; the engine keeps its configuration.
func TestNewValidates(t *testing.T) {
	noLeaks(t)
	b, err := nokernel.Open(t.Context(), kernelops.Options{})
	require.NoError(t, err)
	t.Cleanup(func() { b.Close() })

	bad := goConfig(t)
	bad.Daemon.HalfOpenTimeout = 0
	_, err = New(t.Context(), Options{Backend: b, Config: bad})
	var ce *config.Error
	require.ErrorAs(t, err, &ce)
	assert.Equal(t, "daemon.half_open_timeout", ce.Field)
	var all config.Errors
	require.ErrorAs(t, err, &all)
	assert.Len(t, all, 1)

	good := goConfig(t)
	e, err := New(t.Context(), Options{Backend: b, Config: good})
	require.NoError(t, err)
	defer e.Close()
	worse := goConfig(t)
	worse.Daemon.HalfOpenTimeout = -1
	worse.Connections[0].PSK = nil
	err = e.Reload(t.Context(), worse)
	require.ErrorAs(t, err, &all)
	fields := []string{}
	for _, x := range all {
		fields = append(fields, x.Field)
	}
	assert.Contains(t, fields, "daemon.half_open_timeout")
	assert.Len(t, all, 2, "every error in one pass: %v", err)
	var running *config.Config
	require.NoError(t, e.call(t.Context(), func() { running = e.cfg }))
	assert.Same(t, good, running, "the running configuration is kept")
}
