package config

import (
	"errors"
	"net/netip"
	"os"
	"testing"
	"time"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"
)

func haOptions(key []byte) Options {
	return Options{ReadFile: func(p string) ([]byte, error) {
		if p != "/etc/keyplane/cluster.key" {
			return nil, os.ErrNotExist
		}
		return append([]byte(nil), key...), nil
	}}
}

const haConf = `ha {
	node = gw1
	endpoints = https://10.0.0.1:2379, https://10.0.0.2:2379
	vip = 192.0.2.10/24
	interface = eth0
	cluster_key = /etc/keyplane/cluster.key
	lease_ttl = 3s
	sync_packets = 500
	sync_interval = 200ms
	tls {
		ca = /etc/keyplane/etcd-ca.pem
		cert = /etc/keyplane/etcd.pem
		key = /etc/keyplane/etcd.key
	}
}
`

func TestHAParse(t *testing.T) {
	key := make([]byte, HAKeySize)
	key[0] = 7
	cfg, err := Parse("kp.conf", []byte(haConf), haOptions(key))
	require.NoError(t, err)
	require.NotNil(t, cfg.HA)
	h := cfg.HA
	assert.Equal(t, "gw1", h.Node)
	assert.Equal(t, []string{"https://10.0.0.1:2379", "https://10.0.0.2:2379"}, h.Endpoints)
	assert.Equal(t, netip.MustParsePrefix("192.0.2.10/24"), h.VIP)
	assert.Equal(t, "eth0", h.Interface)
	assert.Equal(t, key, h.ClusterKey)
	assert.Equal(t, 3*time.Second, h.LeaseTTL)
	assert.Equal(t, uint32(500), h.SyncPackets)
	assert.Equal(t, 200*time.Millisecond, h.SyncInterval)
	assert.Equal(t, "/etc/keyplane/etcd.key", h.Key)
	require.NoError(t, cfg.Validate())

	// Defaults where unset; no section: no HA.
	cfg, err = Parse("kp.conf", []byte("ha {\n node = a\n endpoints = http://127.0.0.1:2379\n cluster_key = /etc/keyplane/cluster.key\n}\n"), haOptions(key))
	require.NoError(t, err)
	assert.Equal(t, DefaultHALeaseTTL, cfg.HA.LeaseTTL)
	assert.Equal(t, uint32(DefaultHASyncPackets), cfg.HA.SyncPackets)
	cfg, err = Parse("kp.conf", nil, Options{})
	require.NoError(t, err)
	assert.Nil(t, cfg.HA)

	// Wipe clears the cluster key.
	cfg, err = Parse("kp.conf", []byte(haConf), haOptions(key))
	require.NoError(t, err)
	k := cfg.HA.ClusterKey
	cfg.Wipe()
	assert.Equal(t, make([]byte, HAKeySize), k)
}

func TestHAErrors(t *testing.T) {
	key := make([]byte, HAKeySize)
	for _, c := range []struct {
		name, src string
		key       []byte
		field     string
	}{
		{"short key", haConf, key[:16], "ha.cluster_key"},
		{"no node", "ha {\n endpoints = http://127.0.0.1:2379\n cluster_key = /etc/keyplane/cluster.key\n}\n", key, "ha.node"},
		{"no endpoints", "ha {\n node = a\n cluster_key = /etc/keyplane/cluster.key\n}\n", key, "ha.endpoints"},
		{"bad endpoint", "ha {\n node = a\n endpoints = 10.0.0.1:2379\n cluster_key = /etc/keyplane/cluster.key\n}\n", key, "ha.endpoints"},
		{"fraction ttl", "ha {\n node = a\n endpoints = http://127.0.0.1:2379\n cluster_key = /etc/keyplane/cluster.key\n lease_ttl = 2500ms\n}\n", key, "ha.lease_ttl"},
		{"vip without interface", "ha {\n node = a\n endpoints = http://127.0.0.1:2379\n cluster_key = /etc/keyplane/cluster.key\n vip = 192.0.2.1/24\n}\n", key, "ha.interface"},
		{"unknown", "ha {\n node = a\n endpoints = http://127.0.0.1:2379\n cluster_key = /etc/keyplane/cluster.key\n colour = red\n}\n", key, "colour"},
		{"missing key file", "ha {\n node = a\n endpoints = http://127.0.0.1:2379\n cluster_key = /nope\n}\n", key, "ha.cluster_key"},
	} {
		t.Run(c.name, func(t *testing.T) {
			_, err := Parse("kp.conf", []byte(c.src), haOptions(c.key))
			var errs Errors
			require.True(t, errors.As(err, &errs), "%v", err)
			var fields []string
			for _, e := range errs {
				fields = append(fields, e.Field)
			}
			assert.Contains(t, fields, c.field)
		})
	}
}

func TestHACompare(t *testing.T) {
	key := make([]byte, HAKeySize)
	a, err := Parse("kp.conf", []byte(haConf), haOptions(key))
	require.NoError(t, err)
	b, err := Parse("kp.conf", []byte(haConf), haOptions(key))
	require.NoError(t, err)
	assert.Empty(t, Compare(a, b).Settings)
	b.HA.LeaseTTL = 10 * time.Second
	assert.Equal(t, []string{"ha"}, Compare(a, b).Settings)
	c, err := Parse("kp.conf", nil, Options{})
	require.NoError(t, err)
	assert.Equal(t, []string{"ha"}, Compare(a, c).Settings)
}
