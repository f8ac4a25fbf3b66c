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
// What the rig settles so tests need not:
//
//   - charon's plugins are listed explicitly (no updown, stroke, curl...);
//     charon.threads stays at its default of 16: with 8, the threads that
//     block for good (receiver, sender, scheduler, watcher, kernel-netlink,
//     libipsec) left none to serve vici and Start hung.
//   - Retransmissions give up after about 4.4 s (timeout 1 s, base 1.4,
//     2 tries), so a broken exchange fails fast; Settings can change that.
//   - Secrets are loaded before connections: a connection with start action
//     "start" initiates the moment it is loaded.
//   - The log comes live from charon's stderr through a pipe, so a line can
//     land a moment after the vici answer to the command that caused it:
//     use WaitLog, not strings.Contains(Log()). The failure tail leaves out
//     the lines the rig's own vici polling causes.
//   - Every vici command runs on a session of its own, so a command
//     abandoned when its context ends cannot confuse the next one, and the
//     socket lives in a short /tmp directory (unix socket paths are limited
//     to 108 bytes; t.TempDir paths of subtests are not).
//   - charon is killed if the test binary dies (Pdeathsig, armed from a
//     thread that lives as long as the binary) and by lab's namespace
//     cleanup. A charon that exits during its test fails the test with
//     its exit status.
//
// With a NAT signalled (always so in LibIPsec mode), charon 5.9.8 as
// initiator moves the remote port to 4500 after IKE_SA_INIT even when
// RemotePort is not 500: a responder on a custom Port keeps PortNATT 4500.
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
