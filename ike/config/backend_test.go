package config

import (
	"errors"
	"strings"
	"testing"
)

func TestBackendCleanup(t *testing.T) {
	for _, c := range []struct {
		src  string
		want Cleanup
		err  string
	}{
		{"", CleanupOwned, ""},
		{"backend {\n name = xfrm\n}\n", CleanupOwned, ""},
		{"backend {\n name = xfrm\n cleanup = owned\n}\n", CleanupOwned, ""},
		{"backend {\n name = pfkey\n cleanup = none\n}\n", CleanupNone, ""},
		{"backend {\n name = xfrm\n cleanup = all\n}\n", 0, `kp.conf:3: backend.cleanup: "all": want owned or none`},
	} {
		cfg, err := Parse("kp.conf", []byte(c.src), Options{})
		if c.err != "" {
			var ce *Error
			if !errors.As(err, &ce) || !strings.Contains(err.Error(), c.err) {
				t.Errorf("%q: %v, want %s", c.src, err, c.err)
			}
			continue
		}
		if err != nil || cfg.Backend.Cleanup != c.want {
			t.Errorf("%q: %v, %v; want %v", c.src, cfg.Backend.Cleanup, err, c.want)
		}
	}
}
