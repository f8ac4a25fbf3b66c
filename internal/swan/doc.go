// Package swan runs strongSwan's charon as a real IKEv2 peer for keyplane's
// interop tests.
//
// Start launches one charon inside a lab network namespace, in its own mount
// namespace with a fresh tmpfs on /run (charon's pid file is fixed at
// /var/run/charon.pid, so two instances would otherwise collide), with a
// per-instance strongswan.conf, vici socket and log. Nothing of the host's
// /etc/strongswan* or /etc/swanctl is read: the configuration is generated
// from Options and the connections and secrets are loaded over vici (govici).
// The instance is stopped in t.Cleanup and, when the test failed, the tail
// of its log is printed.
//
// Two dataplanes:
//
//   - LibIPsec (host): the host kernel has no ESP, so charon uses its
//     userspace IPsec (plugin kernel-libipsec) over a TUN device. Two things
//     are required (docs: LAB.md): each side needs an address inside its
//     local traffic selector in its namespace (libipsec routes through the
//     TUN with that source), and ESP must be UDP-encapsulated, which
//     libipsec 5.9.8 always does; the rig therefore sets encap = yes on every
//     connection so that charon signals a NAT even when there is none.
//   - KernelNetlink (VM lab): kernel ESP through XFRM (plugin
//     kernel-netlink), for tests that run with lab.RequireVM.
//
// Typical use:
//
//	p := lab.NewPair(t)
//	c := swan.Start(t, swan.Options{NS: p.B, Conns: []swan.Conn{{
//		Name: "kp", Local: p.B4.String(), Remote: p.A4.String(),
//		PSK: "secret", IKEProposal: "aes128gcm16-prfsha256-x25519",
//		LocalTS: []string{"10.10.2.1/32"}, RemoteTS: []string{"10.10.1.1/32"},
//	}}})
//	// ... keyplane initiates from p.A ...
//	sa, err := c.WaitIKE(ctx, "kp", "ESTABLISHED")
package swan
