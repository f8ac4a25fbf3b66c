//go:build vpp

package main

// VPP is only in binaries built with -tags vpp (it brings GoVPP along).
import _ "github.com/keyplane/keyplane/backends/vpp"
