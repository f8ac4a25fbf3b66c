package config

import (
	"testing"

	"github.com/keyplane/keyplane/kernelops"
	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"
)

func offloadConf(v string) string {
	s := "connections {\n a {\n  local_addrs = 192.0.2.1\n  remote_addrs = 192.0.2.2\n  psk_env = SITE_PSK\n  children {\n   a1 {\n"
	if v != "" {
		s += "    hw_offload = " + v + "\n"
	}
	return s + "   }\n  }\n }\n}\n"
}

// hw_offload takes swanctl's words (yes is crypto offload) and
// keyplane's packet and auto; anything else is an error naming the
// setting; the default is no.
func TestHWOffload(t *testing.T) {
	for _, c := range []struct {
		v    string
		want kernelops.OffloadMode
		bad  bool
	}{
		{"", kernelops.OffloadNone, false},
		{"no", kernelops.OffloadNone, false},
		{"yes", kernelops.OffloadCrypto, false},
		{"crypto", kernelops.OffloadCrypto, false},
		{"packet", kernelops.OffloadPacket, false},
		{"auto", kernelops.OffloadAuto, false},
		{"turbo", 0, true},
		{`""`, 0, true},
	} {
		cfg, err := Parse("kp.conf", []byte(offloadConf(c.v)), testOpts())
		if c.bad {
			var ve *Error
			require.ErrorAs(t, err, &ve, c.v)
			assert.Equal(t, "hw_offload", ve.Field)
			assert.Contains(t, ve.Msg, wantOffload)
			continue
		}
		require.NoError(t, err, c.v)
		assert.Equal(t, c.want, cfg.Connections[0].Children[0].HWOffload, c.v)
	}
	assert.Equal(t, kernelops.OffloadNone, DefaultChild("x").HWOffload)

	// A Config built in Go is checked too.
	cfg := goConf()
	cfg.Connections[0].Children[0].HWOffload = kernelops.OffloadAuto + 1
	var ve *Error
	require.ErrorAs(t, cfg.Validate(), &ve)
	assert.Equal(t, "hw_offload", ve.Field)

	// A change is a change of the child.
	a, err := Parse("kp.conf", []byte(offloadConf("")), testOpts())
	require.NoError(t, err)
	b, err := Parse("kp.conf", []byte(offloadConf("packet")), testOpts())
	require.NoError(t, err)
	assert.Equal(t, []string{"a1"}, Compare(a, b).Changed.Children)
}

// swanctl's hw_offload is converted as written.
func TestImportHWOffload(t *testing.T) {
	src := "connections {\n a {\n  local_addrs = 192.0.2.1\n  remote_addrs = 192.0.2.2\n  children {\n   a1 {\n    hw_offload = auto\n   }\n  }\n }\n}\n"
	im, err := ImportSwanctl("swanctl.conf", []byte(src))
	require.NoError(t, err)
	for _, s := range im.Skipped {
		assert.NotContains(t, s.Setting, "hw_offload", s.Why)
	}
	cfg, err := Parse("kp.conf", []byte(im.Text), Options{ReadFile: func(string) ([]byte, error) { return []byte("a stand-in key of thirty-two bytes"), nil }})
	require.NoError(t, err, im.Text)
	assert.Equal(t, kernelops.OffloadAuto, cfg.Connections[0].Children[0].HWOffload)
}
