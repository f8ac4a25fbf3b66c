// Package vpp is keyplane's dataplane backend for FD.io VPP, driven over
// VPP's binary API socket with GoVPP (go.fd.io/govpp v0.13.0, whose binapi
// was generated from VPP 25.10) and reading SA counters from VPP's stats
// segment.
//
// The backend is compiled only with the build tag "vpp" (go build -tags
// vpp), so default keyplane binaries do not carry GoVPP. With the tag it
// registers itself as "vpp" with kernelops.Register.
//
// VPP keeps SAs and SPDs but raises no IPsec events: no acquire, no expire
// and no last-used time. The backend reports trap policies as unsupported,
// derives last-used from counter changes between bulk reads of the stats
// segment, and restores what keyplane owns after VPP restarts. See
// README.md for parameters, capabilities and what was (and was not) tested.
package vpp
