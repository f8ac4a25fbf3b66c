package config

import (
	"testing"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"
)

func mobikeConf(extra string) string {
	return "connections {\n a {\n  local_addrs = 192.0.2.1\n  remote_addrs = 192.0.2.2\n  psk_env = SITE_PSK\n" + extra +
		"  children {\n   a1 {\n   }\n  }\n }\n}\n"
}

// mobike: swanctl's default yes, yes/no read, anything else refused
// naming the setting; a change is a change of the connection.
func TestMOBIKESetting(t *testing.T) {
	for _, tc := range []struct {
		line string
		want bool
	}{{"", true}, {"  mobike = yes\n", true}, {"  mobike = no\n", false}} {
		cfg, err := Parse("kp.conf", []byte(mobikeConf(tc.line)), testOpts())
		require.NoError(t, err, tc.line)
		assert.Equal(t, tc.want, cfg.Connections[0].MOBIKE, tc.line)
	}
	assert.True(t, DefaultConnection("x").MOBIKE)
	on, err := Parse("kp.conf", []byte(mobikeConf("")), testOpts())
	require.NoError(t, err)
	off, err := Parse("kp.conf", []byte(mobikeConf("  mobike = no\n")), testOpts())
	require.NoError(t, err)
	assert.Equal(t, []string{"a"}, Compare(on, off).Changed.Connections)
	_, err = Parse("kp.conf", []byte(mobikeConf("  mobike = maybe\n")), testOpts())
	var ve *Error
	require.ErrorAs(t, err, &ve)
	assert.Equal(t, "mobike", ve.Field)
}

// The importer copies mobike as it is.
func TestImportMOBIKE(t *testing.T) {
	src := "connections {\n a {\n  local_addrs = 192.0.2.1\n  remote_addrs = 192.0.2.2\n  mobike = no\n  children {\n   a1 {\n   }\n  }\n }\n}\n"
	im, err := ImportSwanctl("swanctl.conf", []byte(src))
	require.NoError(t, err)
	assert.Contains(t, im.Text, "mobike = no\n")
	cfg, err := Parse("kp.conf", []byte(im.Text), Options{ReadFile: func(string) ([]byte, error) { return []byte("a stand-in key of thirty-two bytes"), nil }})
	require.NoError(t, err, im.Text)
	assert.False(t, cfg.Connections[0].MOBIKE)
	for _, s := range im.Skipped {
		assert.NotContains(t, s.Setting, "mobike")
	}
}
