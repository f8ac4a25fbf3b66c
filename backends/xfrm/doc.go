// Package xfrm is keyplane's Linux XFRM dataplane: every kernelops facet
// over XFRM netlink (NETLINK_XFRM) and rtnetlink.
//
// It uses github.com/vishvananda/netlink where that library covers the
// need (routes, links, addresses, xfrm interfaces) and its own small codec
// for XFRM messages everywhere else: SA and policy requests, streaming
// dumps that reuse one receive buffer, batched requests with acks matched
// by sequence number, XFRMA_OFFLOAD_DEV, XFRMA_LASTUSED, GETAE/NEWAE
// (xfrm_sync), and the decoding of acquire, expire, policy-expire, mapping,
// migrate and aevent notifications.
//
// The backend registers as "xfrm" on Linux. Params:
//
//	netns         path or name (/run/netns/NAME) of the network namespace to
//	              operate in; empty: the caller's namespace
//	event-rcvbuf  receive buffer of the event sockets in bytes (default 8 MiB)
//	cleanup       "owned" removes keyplane's own SAs and policies at Open
//	              (crash-restart cleanup); "none" (default) leaves them
//
// Ownership: keyplane flushes and cleans up only what it installed. An SA
// is keyplane's when its reqid lies in Options.ReqIDMin..ReqIDMax. A policy
// is keyplane's when one of its templates carries such a reqid, or — for
// pass and block policies, which have no template — when its kernel index
// carries this instance's tag: keyplane chooses the index of every policy
// it installs (the kernel honours a free index whose low bits are the
// direction) as 1<<31 | tag<<21 | serial<<3 | dir, where tag is derived
// from the reqid range. Policies of other daemons get small kernel-chosen
// indexes and are never touched.
//
// The package is empty on other systems.
package xfrm
