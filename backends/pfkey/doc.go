// Package pfkey is keyplane's PF_KEY v2 dataplane (RFC 2367 with the KAME
// extensions), registered as "pfkey" on Linux (af_key), FreeBSD, NetBSD
// and macOS. The wire codec, portable and fuzzed, is package sadb; the
// per-OS files (os_linux.go, os_freebsd.go, os_netbsd.go, os_darwin.go,
// os_openbsd.go) hold the socket numbers and what each kernel can do.
// OpenBSD speaks another dialect (flows, no reqids) and is not
// implemented.
//
// # How it talks to the kernel
//
// Requests go out on a pool of PF_KEY sockets and replies are matched by
// sequence number, pid and type: the kernels broadcast most replies to
// every PF_KEY socket. Dumps get a socket to themselves (the kernel numbers
// dump replies on its own) and stream. Events come on one more socket,
// registered with SADB_REGISTER for ESP, AH and IPcomp. Writes are
// serialised (see writeMu): the kernel processes requests one at a time
// anyway, and concurrent writers lost replies in the lab.
//
// PF_KEY's FLUSH empties the whole SAD or SPD; FlushSAs and FlushPolicies
// instead dump and delete what keyplane owns. Ownership is the reqid: the
// kernels rewrite policy reqids above 0x3fff, so owned reqids are mapped
// onto the kernel window 0x800..0x3fff (Params "reqid-base") and back.
//
// # Capabilities
//
//	                          Linux af_key   FreeBSD   NetBSD   macOS
//	sad spd events batch idle      yes          yes       yes      yes
//	holes trap tunnel transport    yes          yes       yes      yes
//	addr-select keys-readable      yes          yes       yes      yes
//	lifetime-time, -bytes          yes          yes       yes      yes
//	lifetime-packets, counters     yes          no        no       no
//	sockets (bypass, NAT-T)        yes          yes       yes      no
//	udp-encap                      yes          yes       yes      no
//	esn                            no           yes       no       no
//	policy-priority                yes          yes       no       no
//	policy-lifetime                no           yes       yes      yes
//	mapping-events                 yes          no        no       no
//	migrate                        yes          no        no       no
//	migrate-events           initial netns      no        no       no
//	max replay window (packets)    32     4294967256    2040     2040
//	last-used, sync, offload, marks, if-id, sa-dir,
//	xfrm-interfaces, change-events, addr-manage:    no anywhere
//
// Capabilities.Notes says why for each absence. Algorithms are the
// dialect's table narrowed to what the kernel's SADB_REGISTER reply lists;
// on Linux af_key that is at most 3DES, NULL, AES-CBC and AES-CTR with
// HMAC-MD5-96, HMAC-SHA1-96, HMAC-SHA2-384-192, HMAC-SHA2-512-256 and
// AES-XCBC-96: af_key cannot install AEADs (they are not in xfrm's ealg
// list) and installs hmac(sha256) with a 96-bit ICV, which is not
// AUTH_HMAC_SHA2_256_128, so the backend refuses it.
//
// Linux was tested for real in the VM lab (af_key on Debian's kernel,
// traffic between network namespaces); the FreeBSD, NetBSD and macOS
// columns are verified by build only.
package pfkey
