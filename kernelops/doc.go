// Package kernelops is the narrow interface between keyplane's IKE engine and a
// packet-processing dataplane (Linux XFRM, PF_KEY v2, VPP, or the in-memory
// nokernel model).
//
// A dataplane is opened by name through the registry ([Open]) and returns a
// [Backend]: the checked front end, a [*Handle] (or a backend type that
// embeds one), over the backend's [Driver], in the manner of database/sql
// over database/sql/driver. The Handle implements every facet — [SAD],
// [SPD], [EventSource], [Sockets], [AddrSelector], [AddrManager], [Holes],
// [Offloader], [Syncer], [IdleWatcher], [Migrator], [XfrmInterfaces],
// [Batcher] — and [Backend.Capabilities] states, honestly, what the running
// dataplane can do. One table ([Facets]) ties each facet to its capability:
// [As] finds a facet only when it is claimed, and a facet whose capability
// is not claimed fails every call with an error for which
// errors.Is(err, ErrNotSupported) holds, quoting the backend's note; it is
// never a silent no-op.
//
// Every failing call returns a *[Error] that names the backend, the
// operation, the object, the errno and the kernel's own detail text, and
// wraps one of the sentinel errors so callers can use errors.Is.
//
// Algorithms are named by their IANA IKEv2 transform identifiers (package
// iana), the same numbers the IKE engine negotiates; each backend maps them
// onto its own names and claims the ones it has.
//
// docs/backend.md says how to write a backend; backends/example is the
// smallest complete one.
package kernelops

//go:generate go run golang.org/x/tools/cmd/stringer@v0.52.0 -type=Proto,Mode,Direction,LimitKind,OffloadMode,SAState,Action,OpKind,SyncReason -linecomment -output=enums_string.go
