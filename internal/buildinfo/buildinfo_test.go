package buildinfo

import (
	"runtime/debug"
	"testing"

	"github.com/stretchr/testify/assert"
)

func TestFromBuildInfo(t *testing.T) {
	stamped := &debug.BuildInfo{GoVersion: "go1.26.8", Main: debug.Module{Version: "v0.0.0-20261205074036-dbc511d2f89d+dirty"},
		Settings: []debug.BuildSetting{{Key: "vcs", Value: "git"}, {Key: "vcs.revision", Value: "dbc511d2f89d908b8a15f4cecd41a3959ced16ce"},
			{Key: "vcs.time", Value: "2026-12-05T07:40:36Z"}, {Key: "vcs.modified", Value: "true"}}}
	in := fromBuildInfo(stamped, true)
	assert.Equal(t, "dbc511d2f89d908b8a15f4cecd41a3959ced16ce", in.Commit)
	assert.Equal(t, "2026-12-05T07:40:36Z", in.CommitTime)
	assert.True(t, in.Modified)
	assert.Equal(t, "go1.26.8", in.GoVersion)
	assert.Empty(t, in.Why)

	// -buildvcs=false: no vcs settings at all.
	in = fromBuildInfo(&debug.BuildInfo{GoVersion: "go1.26.8", Main: debug.Module{Version: "(devel)"}}, true)
	assert.Equal(t, Unknown, in.Commit)
	assert.Equal(t, "(devel)", in.Version)
	assert.Contains(t, in.Why, "-buildvcs=false")

	// -ldflags -X fills what the stamp lacks.
	commit, version = "abc123\n", "v1.2.3"
	defer func() { commit, version = "", "" }()
	in = fromBuildInfo(nil, false)
	assert.Equal(t, "abc123", in.Commit)
	assert.Equal(t, "v1.2.3", in.Version)
	assert.Empty(t, in.Why)
}

// The test binary itself: built by go test, it has Go's version and the
// backends registered in this package's imports (none here).
func TestRead(t *testing.T) {
	in := Read()
	assert.NotEmpty(t, in.GoVersion)
	assert.NotEmpty(t, in.Version)
	assert.NotNil(t, in.Backends)
}
