// Package buildinfo says which keyplane a binary is: its module version,
// the commit it was built from, the Go version and the dataplane backends
// it carries. `keyplane version` prints it and the metrics endpoint
// exports it as keyplane_build_info.
package buildinfo

import (
	"runtime"
	"runtime/debug"
	"slices"
	"strings"
	"sync"

	"github.com/keyplane/keyplane/kernelops"
)

// Set at link time when the build has no VCS stamp (the Makefile builds
// with GOFLAGS=-buildvcs=false):
//
//	go build -ldflags "-X github.com/keyplane/keyplane/internal/buildinfo.commit=$(git rev-parse HEAD)"
var (
	version string // overrides the module version
	commit  string // overrides vcs.revision
)

// Unknown is what a field holds when the binary does not carry it.
const Unknown = "unknown"

// Info describes a binary.
type Info struct {
	// Version is the module version: a tag such as v0.3.1 when built
	// with `go install ...@v0.3.1`, "(devel)" for a build in a checkout.
	Version string `json:"version"`
	// Commit is the VCS revision, or Unknown when the build was not
	// stamped (-buildvcs=false, or built outside a checkout) and none was
	// set with -ldflags -X.
	Commit string `json:"commit"`
	// CommitTime is the revision's time (RFC 3339), when stamped.
	CommitTime string `json:"commit_time,omitempty"`
	// Modified says the checkout had uncommitted changes.
	Modified bool `json:"modified,omitempty"`
	// GoVersion is the toolchain that built the binary.
	GoVersion string `json:"go_version"`
	// Backends are the dataplanes this binary carries.
	Backends []string `json:"backends"`
	// Why says why Commit is Unknown, for humans.
	Why string `json:"commit_note,omitempty"`
}

var (
	once sync.Once
	info Info
)

// Read returns the running binary's Info.
func Read() Info {
	once.Do(func() {
		bi, ok := debug.ReadBuildInfo()
		info = fromBuildInfo(bi, ok)
		info.Backends = append([]string{}, kernelops.Backends()...)
		slices.Sort(info.Backends)
	})
	out := info
	out.Backends = slices.Clone(info.Backends)
	return out
}

// fromBuildInfo is Read's decision, apart from the process.
func fromBuildInfo(bi *debug.BuildInfo, ok bool) Info {
	in := Info{Version: "(devel)", Commit: Unknown, GoVersion: runtime.Version()}
	if ok && bi != nil {
		if bi.Main.Version != "" {
			in.Version = bi.Main.Version
		}
		if bi.GoVersion != "" {
			in.GoVersion = bi.GoVersion
		}
		stamped := false
		for _, s := range bi.Settings {
			switch s.Key {
			case "vcs.revision":
				in.Commit, stamped = s.Value, true
			case "vcs.time":
				in.CommitTime = s.Value
			case "vcs.modified":
				in.Modified = s.Value == "true"
			}
		}
		if !stamped {
			// Go records nothing either way: a build with
			// -buildvcs=false (the Makefile's) and one outside a checkout
			// look the same.
			in.Why = "no VCS stamp: built with -buildvcs=false (as the Makefile does) or outside a git checkout"
		}
	}
	if version != "" {
		in.Version = version
	}
	if commit != "" {
		in.Commit, in.Why = strings.TrimSpace(commit), ""
	}
	return in
}
