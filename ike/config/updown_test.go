package config

import (
	"testing"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"
)

// updown: a command line kept as written; an empty one is refused; a
// change is a changed child; the importer copies swanctl's.
func TestUpdownSetting(t *testing.T) {
	cfg, err := Parse("kp.conf", []byte(ifIDConf("updown = /usr/lib/ipsec/_updown iptables\n")), testOpts())
	require.NoError(t, err)
	assert.Equal(t, "/usr/lib/ipsec/_updown iptables", cfg.Connections[0].Children[0].Updown)
	d, err := Parse("kp.conf", []byte(ifIDConf("")), testOpts())
	require.NoError(t, err)
	assert.Empty(t, d.Connections[0].Children[0].Updown)
	assert.Equal(t, []string{"a1"}, Compare(d, cfg).Changed.Children)
	_, err = Parse("kp.conf", []byte(ifIDConf("updown = \n")), testOpts())
	var ve *Error
	require.ErrorAs(t, err, &ve)
	assert.Equal(t, "updown", ve.Field)

	src := "connections {\n a {\n  local_addrs = 192.0.2.1\n  remote_addrs = 192.0.2.2\n  children {\n   a1 {\n    updown = /usr/lib/ipsec/_updown iptables\n   }\n  }\n }\n}\n"
	im, err := ImportSwanctl("swanctl.conf", []byte(src))
	require.NoError(t, err)
	c, err := Parse("kp.conf", []byte(im.Text), Options{ReadFile: func(string) ([]byte, error) { return []byte("a stand-in key of thirty-two bytes"), nil }})
	require.NoError(t, err, im.Text)
	assert.Equal(t, "/usr/lib/ipsec/_updown iptables", c.Connections[0].Children[0].Updown)
}
