package config

import (
	"testing"
	"time"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"
)

// The lifetime jitter settings keyplane shares with swanctl are
// converted as written; a connection with over_time and no rand_time
// keeps swanctl's default jitter (over_time) instead of taking
// keyplane's (a tenth of rekey_time).
func TestImportRandSettings(t *testing.T) {
	src := `connections {
    a {
        local_addrs = 192.0.2.1
        remote_addrs = 192.0.2.2
        rekey_time = 2h
        rand_time = 5m
        over_time = 20m
        children {
            a1 {
                rekey_time = 30m
                rand_time = 1m
                rekey_bytes = 1M
                rand_bytes = 64k
                rekey_packets = 1000
                rand_packets = 50
            }
        }
    }
    b {
        local_addrs = 192.0.2.1
        remote_addrs = 192.0.2.3
        rekey_time = 2h
        over_time = 20m
        children {
            b1 {
            }
        }
    }
}
`
	im, err := ImportSwanctl("swanctl.conf", []byte(src))
	require.NoError(t, err)
	for _, s := range im.Skipped {
		assert.NotContains(t, s.Setting, "rand_", "%s skipped: %s", s.Setting, s.Why)
	}
	assert.Empty(t, im.Errors)
	cfg, err := Parse("kp.conf", []byte(im.Text), Options{ReadFile: func(string) ([]byte, error) { return []byte("a stand-in key of thirty-two bytes"), nil }})
	require.NoError(t, err, im.Text)
	a, b := cfg.Connection("a"), cfg.Connection("b")
	assert.Equal(t, 5*time.Minute, a.RandTime, "rand_time as written, not over_time")
	assert.Equal(t, 20*time.Minute, b.RandTime, "swanctl's default rand_time: over_time")
	ch := a.Children[0]
	assert.Equal(t, time.Minute, ch.RandTime)
	assert.Equal(t, uint64(64<<10), ch.RandBytes)
	assert.Equal(t, uint64(50), ch.RandPackets)
	// Defaults that agree with swanctl's are left to the parser.
	assert.Equal(t, 6*time.Minute, b.Children[0].RandTime)
}

// swanctl's recovery settings are keyplane's too: copied as written,
// values keyplane does not take left as comments.
func TestImportRecoverySettings(t *testing.T) {
	src := `connections {
    a {
        local_addrs = 192.0.2.1
        remote_addrs = 192.0.2.2
        reauth_time = 3h
        over_time = 10m
        keyingtries = 0
        unique = replace
        children {
            a1 {
                dpd_action = restart
                close_action = trap
            }
            a2 {
                dpd_action = hold
                close_action = start
            }
        }
    }
}
`
	im, err := ImportSwanctl("swanctl.conf", []byte(src))
	require.NoError(t, err)
	var skipped []string
	for _, s := range im.Skipped {
		skipped = append(skipped, s.Setting)
	}
	assert.Equal(t, []string{"connections.a.children.a2.dpd_action"}, skipped)
	assert.Empty(t, im.Errors)
	cfg, err := Parse("kp.conf", []byte(im.Text), Options{ReadFile: func(string) ([]byte, error) { return []byte("a stand-in key of thirty-two bytes"), nil }})
	require.NoError(t, err, im.Text)
	a := cfg.Connection("a")
	assert.Equal(t, 3*time.Hour, a.ReauthTime)
	assert.Equal(t, time.Duration(0), a.RekeyTime, "rekey_time: 0 with reauth_time, as in swanctl")
	assert.Equal(t, 10*time.Minute, a.OverTime)
	assert.Equal(t, 10*time.Minute, a.RandTime, "rand_time: over_time")
	assert.Equal(t, 0, a.KeyingTries)
	assert.Equal(t, UniqueReplace, a.Unique)
	assert.Equal(t, DPDRestart, a.Children[0].DPDAction)
	assert.Equal(t, CloseTrap, a.Children[0].CloseAction)
	assert.Equal(t, DPDClear, a.Children[1].DPDAction)
	assert.Equal(t, CloseStart, a.Children[1].CloseAction)
}
