// Package vppharness builds conformance harnesses for keyplane's VPP
// backend: against the vpptest test double (what `go test -tags vpp`
// runs), and against a live VPP's API socket (what `keyplane conformance
// --backend vpp --vpp-socket PATH` runs). It is compiled only with the
// build tag "vpp".
package vppharness
