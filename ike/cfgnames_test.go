package ike

import (
	"testing"

	"github.com/stretchr/testify/assert"

	"github.com/keyplane/keyplane/ike/config"
)

// TestCfgNames: the index finds what config.Config's scans find (the
// first of a name), follows a new Config and still finds, the slow way,
// a name it does not hold.
func TestCfgNames(t *testing.T) {
	mk := func(names ...string) *config.Config {
		cfg := &config.Config{}
		for _, n := range names {
			cfg.Connections = append(cfg.Connections, &config.Connection{Name: n, Children: []*config.Child{{Name: n + "-net"}}})
		}
		return cfg
	}
	e := &Engine{cfg: mk("a", "b", "a")}
	for _, n := range []string{"a", "b", "zz"} {
		assert.Same(t, e.cfg.Connection(n), e.connection(n), n)
		c1, ch1 := e.cfg.Child(n + "-net")
		c2, ch2 := e.child(n + "-net")
		assert.Same(t, c1, c2, n)
		assert.Same(t, ch1, ch2, n)
	}
	e.cfg = mk("c")
	assert.Nil(t, e.connection("a"))
	assert.Equal(t, "c", e.connection("c").Name)
	e.cfg.Connections = append(e.cfg.Connections, &config.Connection{Name: "late"})
	assert.Equal(t, "late", e.connection("late").Name)
}
