package main

import (
	"strings"
	"testing"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"
)

// pools list: east leases west a virtual IP; the table and -json show
// the pool, its counts and the lease by identity; a reload reports the
// pools change.
func TestPoolsList(t *testing.T) {
	p, logs := startPair(t, nil)
	west, east := p.sock("west"), p.sock("east")
	p.edit(t, "east", func(s string) string {
		s = strings.Replace(s, "\t\tpsk_file = demo.psk\n", "\t\tpsk_file = demo.psk\n\t\tpools = vpn\n", 1)
		s = strings.Replace(s, "\t\t\t\tremote_ts = 10.1.0.0/16\n", "\t\t\t\tremote_ts = dynamic\n", 1)
		return s + "pools {\n\tvpn {\n\t\taddrs = 10.3.0.0/24\n\t\tdns = 10.3.0.53\n\t}\n}\n"
	})
	p.edit(t, "west", func(s string) string {
		s = strings.Replace(s, "\t\tpsk_file = demo.psk\n", "\t\tpsk_file = demo.psk\n\t\tvips = 0.0.0.0\n", 1)
		return strings.Replace(s, "\t\t\t\tlocal_ts = 10.1.0.0/16\n", "\t\t\t\tlocal_ts = dynamic\n", 1)
	})
	code, out, errs := runCLI(t, "reload", "-s", east)
	require.Equal(t, 0, code, errs)
	assert.Contains(t, out, "settings: pools")
	code, _, errs = runCLI(t, "reload", "-s", west)
	require.Equal(t, 0, code, errs)

	code, out, errs = runCLI(t, "pools", "list", "-s", east)
	require.Equal(t, 0, code, errs)
	assert.Regexp(t, `vpn\s+10\.3\.0\.0/24\s+254\s+0\s+0\s+-`, out)

	code, _, errs = runCLI(t, "initiate", "-s", west, "-q", "west-net")
	require.Equal(t, 0, code, errs, "%s\n%s", logs["west"], logs["east"])
	code, out, errs = runCLI(t, "pools", "list", "-s", east)
	require.Equal(t, 0, code, errs)
	assert.Regexp(t, `vpn\s+10\.3\.0\.0/24\s+254\s+1\s+0\s+west\.example\.org\s+10\.3\.0\.1\s+online`, out)
	assert.Contains(t, out, "1 pools, 1 leases")
	code, out, _ = runCLI(t, "pools", "list", "-s", east, "-json")
	require.Equal(t, 0, code)
	ps := jsonArray(t, out)
	require.Len(t, ps, 1)
	assert.Equal(t, "vpn", ps[0]["name"])
	assert.EqualValues(t, 254, ps[0]["size"])
	assert.EqualValues(t, 1, ps[0]["online"])
	leases, _ := ps[0]["leases"].([]any)
	require.Len(t, leases, 1)
	assert.Equal(t, map[string]any{"identity": "west.example.org", "addr": "10.3.0.1", "online": true}, leases[0])
	_, out, _ = runCLI(t, "child", "list", "-s", west)
	assert.Contains(t, out, "10.3.0.1/32")

	code, _, errs = runCLI(t, "terminate", "-s", west, "west")
	require.Equal(t, 0, code, errs)
	waitFor(t, "the lease offline", func() bool {
		_, out, _ := runCLI(t, "pools", "list", "-s", east)
		return strings.Contains(out, "offline")
	})
}
