// Package xfrm is keyplane's Linux XFRM dataplane: every kernelops facet
// over XFRM netlink (NETLINK_XFRM) and rtnetlink.
//
// It uses github.com/vishvananda/netlink where that library covers the
// need (routes, links, addresses, xfrm interfaces) and its own small codec
// for XFRM messages everywhere else: SA and policy requests, streaming
// dumps that reuse one receive buffer, batched requests with acks matched
// by sequence number, XFRMA_OFFLOAD_DEV, XFRMA_LASTUSED, GETAE/NEWAE
// (xfrm_sync), MIGRATE, and the decoding of acquire, expire,
// policy-expire, mapping, migrate and aevent notifications. Every decoder
// is bounds-checked and fuzzed.
//
// The backend registers as "xfrm" on Linux. Params:
//
//	netns         path or name (/run/netns/NAME) of the network namespace to
//	              operate in; empty: the caller's namespace
//	event-rcvbuf  receive buffer of the event sockets in bytes (default 8 MiB,
//	              set with SO_RCVBUFFORCE when running as root)
//	cleanup       "owned" removes keyplane's own SAs and policies at Open
//	              (crash-restart cleanup); "none" (default) leaves them
//
// # Capabilities
//
// Capabilities describe the running kernel, probed once per process by
// installing throwaway SAs in a private network namespace: whether ESP,
// AH and IPComp exist, which algorithms the crypto API instantiates,
// whether MIGRATE and xfrm interfaces exist, the tick rate (XFRMA_ETIMER
// is written in jiffies), and whether a packet through an SA sets
// XFRMA_LASTUSED (Linux 6.2 started to). Without ESP every SA-level
// capability is absent and SA operations fail with ErrNotSupported and
// EPROTONOSUPPORT, naming the missing protocol. XFRMA_SA_DIR is used from
// Linux 6.10 on.
//
// # SAs
//
// AddSA fills an AllocSPI reservation (the kernel's larval SA) with
// XFRM_MSG_UPDSA and installs any other SA with XFRM_MSG_NEWSA; a larval
// SA left by an earlier life of the daemon is filled too. UpdateSA is
// XFRM_MSG_UPDSA: the kernel takes new lifetimes, selector and NAT-T
// ports, never new keys. Algorithms are mapped from IANA ids to the
// kernel's names (rfc4106(gcm(aes)) with 64/96/128-bit ICVs, cbc(aes),
// rfc3686(ctr(aes)), rfc4309(ccm(aes)), rfc4543(gcm(aes)),
// rfc7539esp(chacha20,poly1305), hmac(sha256) truncated to 128 bits, ...).
//
// Offload: Auto tries packet offload (Linux >= 6.2), then crypto offload,
// then software, and reports what it got in SA.Offload.Active. An explicit
// mode the kernel refuses fails with a *kernelops.OffloadError carrying
// the device, the mode and the kernel's extack text; a crypto request the
// kernel quietly installs in software is read back, removed and refused
// the same way.
//
// # Events
//
// The first Subscribe opens one XFRM multicast socket (acquire, expire,
// sa, policy, aevents, report, migrate, mapping) and one rtnetlink socket
// (links, IPv4/IPv6 addresses and routes). A read failing with ENOBUFS
// (the kernel dropped notifications) publishes an OverrunEvent and reading
// goes on. Echoes of NEWAE writes are not reported as SyncEvents.
//
// xfrm_sync: SAs are installed with both aevent thresholds at 0, so none
// sends SyncEvents until SetSyncThresholds asks (the kernel defaults would
// send one every two packets while anyone listens). The kernel arms the
// aevent timer when a replay-threshold event goes out, so a Timer fires
// after the first ReplayDiff event, reporting later changes.
//
// # Ownership
//
// keyplane flushes and cleans up only what it installed. An SA is
// keyplane's when its reqid lies in Options.ReqIDMin..ReqIDMax. A policy
// is keyplane's when one of its templates carries such a reqid, or — for
// pass and block policies, which have no template — when its kernel index
// carries this instance's tag: keyplane chooses the index of every policy
// it installs (the kernel honours a free index whose low bits are the
// direction) as 1<<31 | tag<<21 | serial<<3 | dir, where tag is derived
// from the reqid range. Policies of other daemons get small kernel-chosen
// indexes and are never touched.
//
// The kernel stores no "trap" action: a policy reads back as a trap when
// this process installed it as one, or when its priority lies in the trap
// band (kernelops.PriorityBandTrap), where AutoPriority puts traps.
//
// Selectors read back in one canonical spelling: a /0 prefix is the zero
// (any) prefix, and an IPv6 match-all keeps ::/0 on both sides.
//
// # Sockets
//
// IKE sockets are kernelops/ikesock's (local address from packet info,
// non-ESP marker framing) with per-socket "allow" policies in both
// directions (IP_XFRM_POLICY / IPV6_XFRM_POLICY); the NAT-T socket has
// UDP_ENCAP_ESPINUDP.
//
// # Testing
//
// Host tests (root) run in fresh network namespaces; what needs ESP skips
// there and runs in the VM lab (make vmtest), which also runs the whole
// conformance suite with real traffic (internal/kerneltest). Benchmarks:
// go test -run '^$' -bench . -benchtime 5x ./backends/xfrm.
//
// The package is empty on other systems.
package xfrm
