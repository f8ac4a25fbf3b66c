package config

import (
	"testing"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"
)

func twoChildConf(a1, a2 string) string {
	return "connections {\n a {\n  local_addrs = 192.0.2.1\n  remote_addrs = 192.0.2.2\n  psk_env = SITE_PSK\n  children {\n" +
		"   a1 {\n" + a1 + "   }\n   a2 {\n" + a2 + "   }\n  }\n }\n}\n"
}

// xfrm_interface: a kernel interface name, with if_id_in = if_id_out
// non-zero; children naming one interface agree on its if_id, and an
// if_id belongs to one interface.
func TestXfrmInterfaceSetting(t *testing.T) {
	const ok42 = "xfrm_interface = xfrm42\nif_id_in = 42\nif_id_out = 42\n"
	cfg, err := Parse("kp.conf", []byte(twoChildConf(ok42, ok42)), testOpts())
	require.NoError(t, err)
	assert.Equal(t, "xfrm42", cfg.Connections[0].Children[0].XfrmInterface)
	assert.Equal(t, "xfrm42", cfg.Connections[0].Children[1].XfrmInterface)
	d, err := Parse("kp.conf", []byte(twoChildConf(ok42, "if_id_in = 42\nif_id_out = 42\n")), testOpts())
	require.NoError(t, err)
	assert.Equal(t, []string{"a2"}, Compare(d, cfg).Changed.Children)

	for _, tc := range []struct{ name, a1, a2, child, msg string }{
		{"no if_id", "xfrm_interface = xfrm42\n", "", "a1", "needs if_id_in and if_id_out set to one non-zero id"},
		{"two if_ids", "xfrm_interface = xfrm42\nif_id_in = 42\nif_id_out = 43\n", "", "a1", "(they are 42 and 43)"},
		{"long name", "xfrm_interface = xfrm4242424242424\nif_id_in = 42\nif_id_out = 42\n", "", "a1", wantXfrmInterface},
		{"slash", "xfrm_interface = \"x/1\"\nif_id_in = 42\nif_id_out = 42\n", "", "a1", wantXfrmInterface},
		{"one name two if_ids", ok42, "xfrm_interface = xfrm42\nif_id_in = 43\nif_id_out = 43\n", "a2", "xfrm42 has if_id 42 in another child and 43 here"},
		{"one if_id two names", ok42, "xfrm_interface = xfrm43\nif_id_in = 42\nif_id_out = 42\n", "a2", "if_id 42 is xfrm_interface xfrm42's in another child"},
	} {
		_, err := Parse("kp.conf", []byte(twoChildConf(tc.a1, tc.a2)), testOpts())
		var ve *Error
		require.ErrorAs(t, err, &ve, tc.name)
		assert.Equal(t, "xfrm_interface", ve.Field, tc.name)
		assert.Equal(t, tc.child, ve.Child, tc.name)
		assert.Contains(t, ve.Msg, tc.msg, tc.name)
	}
}
