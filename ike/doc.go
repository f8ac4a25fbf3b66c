// Package ike is keyplane's IKEv2 engine (RFC 7296): IKE_SA_INIT with
// COOKIE and INVALID_KE_PAYLOAD, IKE_AUTH with pre-shared keys or
// certificates and signatures (RFC 7427, auth_pubkey.go) and the
// first CHILD_SA with traffic-selector narrowing, IKE fragmentation (RFC
// 7383, fragments.go), additional key exchanges such as ML-KEM in
// IKE_INTERMEDIATE and IKE_FOLLOWUP_KE (RFC 9242, RFC 9370,
// intermediate.go, followup.go), CREATE_CHILD_SA for
// children and child rekeys (PFS enforced both ways, INVALID_KE_PAYLOAD
// retried) and IKE SA rekeys, simultaneous rekeys settled by nonces
// (§2.8.1, §2.8.2), INFORMATIONAL delete and liveness, retransmission
// with exponential backoff, TEMPORARY_FAILURE and INVALID_IKE_SPI
// answers (§2.25, §2.21.4), NAT detection with the float to the NAT-T
// port and UDP-encapsulated ESP, in both roles; NAT keepalives and
// following a NAT rebinding; recovery after a dead peer, a peer's delete
// or a failed initiation, make-before-break reauthentication, a hard
// IKE SA lifetime, uniqueness and INITIAL_CONTACT, with swanctl's
// settings.
//
// Its parts: the message window of each IKE SA (window.go), proposal and
// child selection as pure functions (proposals.go, childselect.go),
// errors that carry the notify (*NotifyError), rekey collisions
// (collision.go), randomized lifetimes (lifetime.go), recovery
// (recovery.go: keyingtries, dpd_action, close_action, down_timeout),
// reauthentication and over_time (reauth.go), uniqueness (unique.go),
// keepalives (keepalive.go), following the peer (natmove.go); what anyone
// can send before authenticating is bounded by the half-open limits
// (halfopen.go, cookies.go), the datagram intake (ingress.go) and the
// pre-authentication log (prelog.go); a reload closes the IKE SAs whose
// authentication settings changed (reload.go).
//
// It drives the dataplane only through kernelops, found by facet on the
// kernelops.Backend it is given, and never imports a backend: inbound SPIs
// come from AllocSPI, a child installs its inbound and outbound SAs and
// its out/in/fwd policies, and everything a child added is removed when it
// goes — or rolled back when any step of its installation fails, after
// which the peer is told. Dataplane events drive it too: an acquire from a
// trap policy initiates, a hard expire deletes the child and tells the
// peer, a soft expire rekeys it, and an overrun makes it
// re-read the SAD and SPD and reconcile.
//
// All state lives on one goroutine (the loop); sockets, timers, dataplane
// events and API calls post work to it. Wire encoding and cryptography are
// ike/message and ike/ikecrypto; configuration is ike/config.
package ike
