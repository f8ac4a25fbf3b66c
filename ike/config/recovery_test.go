package config

import (
	"strings"
	"testing"
	"time"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"
)

// recoveryConf is one connection with one child, the given settings
// added to the daemon, the connection and the child.
func recoveryConf(daemon, conn, child string) string {
	for _, a := range []string{"remote_addrs = 127.0.0.2", "local_addrs = 127.0.0.1"} {
		if k, _, _ := strings.Cut(a, " "); !strings.Contains(conn, k) {
			conn = a + "\n" + conn
		}
	}
	return "daemon {\n" + daemon + "\n}\nconnections {\n c1 {\n  psk_env = SITE_PSK\n" + conn +
		"\n  children {\n   ch1 {\n" + child + "\n   }\n  }\n }\n}\n"
}

// TestRecoverySettings: swanctl's recovery settings with their names,
// values and defaults; strongswan.conf's keep_alive and keyplane's
// down_timeout in the daemon section.
func TestRecoverySettings(t *testing.T) {
	for _, tc := range []struct {
		name                string
		daemon, conn, child string
		check               func(t *testing.T, d Daemon, c *Connection, ch *Child)
	}{
		{name: "defaults", check: func(t *testing.T, d Daemon, c *Connection, ch *Child) {
			assert.Equal(t, 20*time.Second, d.KeepAlive)
			assert.Equal(t, time.Duration(0), d.DownTimeout)
			assert.Equal(t, 1, c.KeyingTries)
			assert.Equal(t, UniqueNo, c.Unique)
			assert.Equal(t, time.Duration(0), c.ReauthTime)
			assert.Equal(t, 4*time.Hour, c.RekeyTime)
			assert.Equal(t, 24*time.Minute, c.OverTime, "over_time: a tenth of rekey_time")
			assert.Equal(t, 24*time.Minute, c.RandTime, "rand_time: over_time")
			assert.Equal(t, DPDClear, ch.DPDAction)
			assert.Equal(t, CloseNone, ch.CloseAction)
		}},
		{name: "set", daemon: "keep_alive = 5s\ndown_timeout = 2m",
			conn:  "keyingtries = 0\nunique = replace\nreauth_time = 2h\nrekey_time = 1h\nover_time = 5m\nrand_time = 1m",
			child: "dpd_action = restart\nclose_action = start",
			check: func(t *testing.T, d Daemon, c *Connection, ch *Child) {
				assert.Equal(t, 5*time.Second, d.KeepAlive)
				assert.Equal(t, 2*time.Minute, d.DownTimeout)
				assert.Equal(t, 0, c.KeyingTries)
				assert.Equal(t, UniqueReplace, c.Unique)
				assert.Equal(t, 2*time.Hour, c.ReauthTime)
				assert.Equal(t, time.Hour, c.RekeyTime)
				assert.Equal(t, 5*time.Minute, c.OverTime)
				assert.Equal(t, time.Minute, c.RandTime)
				assert.Equal(t, DPDRestart, ch.DPDAction)
				assert.Equal(t, CloseStart, ch.CloseAction)
			}},
		{name: "reauth alone disables rekeying", conn: "reauth_time = 1h",
			check: func(t *testing.T, d Daemon, c *Connection, ch *Child) {
				assert.Equal(t, time.Duration(0), c.RekeyTime, "swanctl: rekey_time defaults to 0 with reauth_time")
				assert.Equal(t, 6*time.Minute, c.OverTime)
				assert.Equal(t, 6*time.Minute, c.RandTime)
			}},
		{name: "over_time follows the longer", conn: "reauth_time = 1h\nrekey_time = 3h",
			check: func(t *testing.T, d Daemon, c *Connection, ch *Child) {
				assert.Equal(t, 18*time.Minute, c.OverTime)
			}},
		{name: "trap actions", conn: "keyingtries = 3\nunique = keep", child: "dpd_action = trap\nclose_action = trap",
			check: func(t *testing.T, d Daemon, c *Connection, ch *Child) {
				assert.Equal(t, 3, c.KeyingTries)
				assert.Equal(t, UniqueKeep, c.Unique)
				assert.Equal(t, DPDTrap, ch.DPDAction)
				assert.Equal(t, CloseTrap, ch.CloseAction)
			}},
		{name: "never", conn: "unique = never", daemon: "keep_alive = 0",
			check: func(t *testing.T, d Daemon, c *Connection, ch *Child) {
				assert.Equal(t, UniqueNever, c.Unique)
				assert.Equal(t, time.Duration(0), d.KeepAlive)
			}},
	} {
		t.Run(tc.name, func(t *testing.T) {
			cfg, err := Parse("r.conf", []byte(recoveryConf(tc.daemon, tc.conn, tc.child)), testOpts())
			require.NoError(t, err)
			tc.check(t, cfg.Daemon, cfg.Connections[0], cfg.Connections[0].Children[0])
		})
	}
}

// TestRecoverySettingErrors: bad values are refused naming the setting;
// an action that initiates or traps needs the peer's address.
func TestRecoverySettingErrors(t *testing.T) {
	for _, tc := range []struct {
		daemon, conn, child string
		want                string
	}{
		{conn: "unique = sometimes", want: `unique: "sometimes": want no, never, keep or replace`},
		{conn: "keyingtries = -1", want: "keyingtries"},
		{conn: "over_time = soon", want: "over_time"},
		{conn: "reauth_time = x", want: "reauth_time"},
		{child: "dpd_action = hold", want: `dpd_action: "hold": want clear, trap or restart`},
		{child: "close_action = restart", want: `close_action: "restart": want none, trap or start`},
		{daemon: "keep_alive = often", want: "daemon.keep_alive"},
		{daemon: "down_timeout = -1s", want: "daemon.down_timeout"},
		{conn: "remote_addrs = %any", child: "dpd_action = restart", want: "dpd_action: restart needs a remote address"},
		{conn: "remote_addrs = %any", child: "close_action = trap", want: "close_action: trap needs a remote address"},
		{conn: "local_addrs = %any\nlocal {\nid = a.example\n}", child: "dpd_action = trap", want: "dpd_action = trap with dynamic selectors needs local_addrs"},
	} {
		_, err := Parse("r.conf", []byte(recoveryConf(tc.daemon, tc.conn, tc.child)), testOpts())
		if err == nil || !strings.Contains(err.Error(), tc.want) {
			t.Errorf("%q %q %q: error %v, want one saying %q", tc.daemon, tc.conn, tc.child, err, tc.want)
		}
	}
}
