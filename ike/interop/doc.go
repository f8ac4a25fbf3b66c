// Package interop holds keyplane's interoperability tests against
// strongSwan's charon, a real IKEv2 peer run by internal/swan:
//
//   - on the host, keyplane on the nokernel dataplane against charon with
//     kernel-libipsec (the host kernel has no ESP): IKE and CHILD SA
//     establishment and deletion in both roles;
//   - in the VM lab (make vmtest), keyplane on the XFRM backend against
//     charon with kernel-netlink: both roles, two suites (and the groups,
//     SHA-1 and CCM of issue 15), certificates (RSA-PSS, ECDSA, Ed25519
//     with intermediates; wrong CA, expired and revoked ones refused),
//     IKE fragmentation over a lowered MTU, the fallback from a hybrid
//     ML-KEM proposal, ping through the tunnel both ways, `ip -s xfrm state` counters moving on both sides,
//     and deletion from either side leaving no SA or policy behind.
//
// The package has no code of its own; it exists for its tests.
package interop
