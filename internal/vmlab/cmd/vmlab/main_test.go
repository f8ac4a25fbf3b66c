package main

import (
	"testing"

	"github.com/stretchr/testify/assert"
)

// TestForwardedEnv: the guest gets keyplane's and Go's settings, the go
// command's caches among them, and not the lab's own settings or the rest
// of the host's environment.
func TestForwardedEnv(t *testing.T) {
	got := forwardedEnv([]string{
		"KEYPLANE_VM=1", "KEYPLANE_LAB_CACHE=/c", "KEYPLANE_SKIP_VM=1", "KEYPLANE_X=a=b",
		"GOMODCACHE=/fresh/mod", "GOCACHE=/fresh/build", "GOPATH=/fresh", "GOFLAGS=-buildvcs=false",
		"GORACE=halt_on_error=1", "GOTRACEBACK=all",
		"HOME=/root", "PATH=/bin", "GOROOT=/usr/local/go", "SSH_AUTH_SOCK=/s",
	})
	assert.Equal(t, []string{
		"KEYPLANE_SKIP_VM=1", "KEYPLANE_X=a=b",
		"GOMODCACHE=/fresh/mod", "GOCACHE=/fresh/build", "GOPATH=/fresh", "GOFLAGS=-buildvcs=false",
		"GORACE=halt_on_error=1", "GOTRACEBACK=all",
	}, got)
}
