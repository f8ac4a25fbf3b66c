package config

import (
	"strings"
	"testing"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"
)

func ifIDConf(extra string) string {
	return "connections {\n a {\n  local_addrs = 192.0.2.1\n  remote_addrs = 192.0.2.2\n  psk_env = SITE_PSK\n  children {\n   a1 {\n" +
		extra + "   }\n  }\n }\n}\n"
}

// if_id_in and if_id_out: decimal or 0x hex, 0 for none; swanctl's
// %unique is refused with the reason.
func TestIfIDSettings(t *testing.T) {
	cfg, err := Parse("kp.conf", []byte(ifIDConf("if_id_in = 42\nif_id_out = 0x2b\n")), testOpts())
	require.NoError(t, err)
	ch := cfg.Connections[0].Children[0]
	assert.Equal(t, [2]uint32{42, 0x2b}, [2]uint32{ch.IfIDIn, ch.IfIDOut})
	d, err := Parse("kp.conf", []byte(ifIDConf("")), testOpts())
	require.NoError(t, err)
	assert.Equal(t, [2]uint32{0, 0}, [2]uint32{d.Connections[0].Children[0].IfIDIn, d.Connections[0].Children[0].IfIDOut})
	assert.Equal(t, []string{"a1"}, Compare(d, cfg).Changed.Children)
	for _, bad := range []string{"if_id_in = %unique", "if_id_out = -1", "if_id_out = 4294967296", "if_id_in = eth0"} {
		_, err := Parse("kp.conf", []byte(ifIDConf(bad+"\n")), testOpts())
		var ve *Error
		require.ErrorAs(t, err, &ve, bad)
		assert.Equal(t, strings.Fields(bad)[0], ve.Field)
		assert.Contains(t, ve.Msg, wantIfID, bad)
	}
}

// The importer copies numeric if_ids and comments %unique out.
func TestImportIfID(t *testing.T) {
	src := "connections {\n a {\n  local_addrs = 192.0.2.1\n  remote_addrs = 192.0.2.2\n  children {\n   a1 {\n    if_id_in = 42\n    if_id_out = %unique\n   }\n  }\n }\n}\n"
	im, err := ImportSwanctl("swanctl.conf", []byte(src))
	require.NoError(t, err)
	cfg, err := Parse("kp.conf", []byte(im.Text), Options{ReadFile: func(string) ([]byte, error) { return []byte("a stand-in key of thirty-two bytes"), nil }})
	require.NoError(t, err, im.Text)
	ch := cfg.Connections[0].Children[0]
	assert.Equal(t, uint32(42), ch.IfIDIn)
	assert.Equal(t, uint32(0), ch.IfIDOut)
	var skipped []string
	for _, s := range im.Skipped {
		skipped = append(skipped, s.Setting)
	}
	assert.Contains(t, skipped, "connections.a.children.a1.if_id_out")
}
