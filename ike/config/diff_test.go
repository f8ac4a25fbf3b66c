package config

import (
	"testing"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"
)

func TestCompare(t *testing.T) {
	parse := func(src string) *Config {
		t.Helper()
		cfg, err := Parse("kp.conf", []byte(src), testOpts())
		require.NoError(t, err)
		return cfg
	}
	conn := func(name, children, extra string) string {
		return "  " + name + " {\n   local_addrs = 192.0.2.1\n   remote_addrs = 192.0.2.2\n   psk_env = SITE_PSK\n" + extra + "   children {\n" + children + "   }\n  }\n"
	}
	child := func(name, extra string) string { return "    " + name + " {\n" + extra + "    }\n" }
	file := func(daemon string, conns ...string) string {
		s := "daemon {\n" + daemon + "}\nconnections {\n"
		for _, c := range conns {
			s += c
		}
		return s + "}\n"
	}
	old := parse(file("", conn("a", child("a1", "")+child("a2", ""), ""), conn("b", child("b1", ""), "")))
	same := Compare(old, old)
	assert.True(t, same.Added.Empty() && same.Removed.Empty() && same.Changed.Empty())
	assert.Equal(t, []string{}, same.Settings)

	nc := parse(file("  log_level = debug\n",
		conn("a", child("a1", "     start_action = start\n")+child("a3", "")+child("b1", ""), "   dpd_delay = 30s\n"),
		conn("c", child("c1", ""), "")))
	d := Compare(old, nc)
	assert.Equal(t, Names{Connections: []string{"c"}, Children: []string{"a3", "c1"}}, d.Added)
	assert.Equal(t, Names{Connections: []string{"b"}, Children: []string{"a2"}}, d.Removed)
	// a: dpd_delay; a1: start_action; b1 moved from b to a.
	assert.Equal(t, Names{Connections: []string{"a"}, Children: []string{"a1", "b1"}}, d.Changed)
	assert.Equal(t, []string{"daemon.log_level"}, d.Settings)

	// A new key is a change (and is not printed anywhere).
	o2 := Options{Getenv: func(string) (string, bool) { return "another key", true }}
	k2, err := Parse("kp.conf", []byte(file("", conn("a", child("a1", "")+child("a2", ""), ""), conn("b", child("b1", ""), ""))), o2)
	require.NoError(t, err)
	assert.Equal(t, []string{"a", "b"}, Compare(old, k2).Changed.Connections)

	// The lifetime jitter is a setting like the others.
	rt := parse(file("", conn("a", child("a1", "     rand_bytes = 1k\n")+child("a2", ""), "   rand_time = 1m\n"), conn("b", child("b1", "     rand_time = 0\n"), "")))
	assert.Equal(t, Names{Connections: []string{"a"}, Children: []string{"a1", "b1"}}, Compare(old, rt).Changed)

	// So are the recovery settings (issue 13).
	rc := parse(file("  keep_alive = 5s\n  down_timeout = 1m\n",
		conn("a", child("a1", "     dpd_action = restart\n")+child("a2", "     close_action = trap\n"), "   reauth_time = 2h\n   keyingtries = 0\n"),
		conn("b", child("b1", ""), "   unique = replace\n   over_time = 5m\n")))
	rd := Compare(old, rc)
	assert.Equal(t, Names{Connections: []string{"a", "b"}, Children: []string{"a1", "a2"}}, rd.Changed)
	assert.Equal(t, []string{"daemon.down_timeout", "daemon.keep_alive"}, rd.Settings)

	// The half-open limits too.
	ho := parse(file("  cookie_threshold = 1\n  cookie_threshold_ip = 0\n  block_threshold = 9\n  init_limit_half_open = 50\n  max_packet = 2000\n",
		conn("a", child("a1", "")+child("a2", ""), ""), conn("b", child("b1", ""), "")))
	assert.Equal(t, []string{"daemon.cookie_threshold", "daemon.cookie_threshold_ip", "daemon.block_threshold",
		"daemon.init_limit_half_open", "daemon.max_packet"}, Compare(old, ho).Settings)

	bk := parse("backend {\n name = xfrm\n params {\n  netns = x\n }\n cleanup = none\n}\n")
	assert.Equal(t, []string{"backend.name", "backend.params", "backend.cleanup"}, Compare(parse(""), bk).Settings)
}
