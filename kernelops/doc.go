// Package kernelops is the narrow interface between keyplane's IKE engine and a
// packet-processing dataplane (Linux XFRM, PF_KEY v2, VPP, or the in-memory
// nokernel model).
//
// A dataplane is opened by name through the registry ([Open]) and returns a
// [Backend]. The Backend value implements the facets its dataplane has — [SAD],
// [SPD], [EventSource], [Sockets], [AddrSelector], [AddrManager], [Holes],
// [Offloader], [Syncer], [IdleWatcher], [Migrator], [XfrmInterfaces] — and
// the caller finds them by type assertion, as wireguard-go's conn and tun
// packages do with their optional abilities. [Backend.Capabilities] states,
// honestly, what the running dataplane can do. An operation the dataplane
// cannot perform returns an error for which errors.Is(err, ErrNotSupported)
// holds; it is never a silent no-op.
//
// Every failing call returns a *[Error] that names the backend, the
// operation, the object, the errno and the kernel's own detail text, and
// wraps one of the sentinel errors so callers can use errors.Is.
//
// Algorithms are named by their IANA IKEv2 transform identifiers, the same
// numbers the IKE engine negotiates; each backend maps them onto its own names
// and rejects the ones it lacks with ErrNotSupported.
package kernelops

//go:generate go run golang.org/x/tools/cmd/stringer@v0.52.0 -type=Proto,Mode,Direction,LimitKind,OffloadMode,SAState,Action,OpKind,SyncReason -linecomment -output=enums_string.go
