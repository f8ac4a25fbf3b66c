package config

import (
	"strings"
	"testing"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"

	"github.com/keyplane/keyplane/kernelops"
)

// mark_in and mark_out: VALUE[/MASK] as swanctl writes them, the mask
// all ones when left out, 0 for none; %unique and friends and values
// outside their mask are refused with the reason.
func TestMarkSettings(t *testing.T) {
	for _, tc := range []struct {
		in   string
		want kernelops.Mark
	}{
		{"42", kernelops.Mark{Value: 42, Mask: 0xffffffff}},
		{"0x2a/0xff", kernelops.Mark{Value: 0x2a, Mask: 0xff}},
		{"7/15", kernelops.Mark{Value: 7, Mask: 15}},
		{"0", kernelops.Mark{}},
		{"0/0xff", kernelops.Mark{}},
	} {
		cfg, err := Parse("kp.conf", []byte(ifIDConf("mark_in = "+tc.in+"\nmark_out = "+tc.in+"\n")), testOpts())
		require.NoError(t, err, tc.in)
		ch := cfg.Connections[0].Children[0]
		assert.Equal(t, tc.want, ch.MarkIn, tc.in)
		assert.Equal(t, tc.want, ch.MarkOut, tc.in)
	}
	d, err := Parse("kp.conf", []byte(ifIDConf("")), testOpts())
	require.NoError(t, err)
	c, err := Parse("kp.conf", []byte(ifIDConf("mark_out = 9\n")), testOpts())
	require.NoError(t, err)
	assert.Equal(t, []string{"a1"}, Compare(d, c).Changed.Children)
	for _, bad := range []string{"mark_in = %unique", "mark_out = %unique-dir", "mark_in = %same", "mark_out = 0x100/0xff",
		"mark_in = -1", "mark_in = 4294967296", "mark_in = 1/x", "mark_out = fw"} {
		_, err := Parse("kp.conf", []byte(ifIDConf(bad+"\n")), testOpts())
		var ve *Error
		require.ErrorAs(t, err, &ve, bad)
		assert.Equal(t, strings.Fields(bad)[0], ve.Field)
		assert.Contains(t, ve.Msg, wantMark, bad)
	}
	// A Config built in Go is checked the same way.
	cfg, err := Parse("kp.conf", []byte(ifIDConf("")), testOpts())
	require.NoError(t, err)
	cfg.Connections[0].Children[0].MarkOut = kernelops.Mark{Value: 3, Mask: 1}
	var ve *Error
	require.ErrorAs(t, cfg.Validate(), &ve)
	assert.Equal(t, "mark_out", ve.Field)
}

// The importer copies marks and comments %unique out.
func TestImportMark(t *testing.T) {
	src := "connections {\n a {\n  local_addrs = 192.0.2.1\n  remote_addrs = 192.0.2.2\n  children {\n   a1 {\n    mark_in = 0x2a/0xff\n    mark_out = %unique\n   }\n  }\n }\n}\n"
	im, err := ImportSwanctl("swanctl.conf", []byte(src))
	require.NoError(t, err)
	cfg, err := Parse("kp.conf", []byte(im.Text), Options{ReadFile: func(string) ([]byte, error) { return []byte("a stand-in key of thirty-two bytes"), nil }})
	require.NoError(t, err, im.Text)
	ch := cfg.Connections[0].Children[0]
	assert.Equal(t, kernelops.Mark{Value: 0x2a, Mask: 0xff}, ch.MarkIn)
	assert.Equal(t, kernelops.Mark{}, ch.MarkOut)
	var skipped []string
	for _, s := range im.Skipped {
		skipped = append(skipped, s.Setting)
	}
	assert.Contains(t, skipped, "connections.a.children.a1.mark_out")
}
