// Package sadb encodes and decodes PF_KEY version 2 messages (RFC 2367)
// with the KAME extensions (SADB_X_SPD*, X_POLICY with ipsecrequests,
// SA2, NAT-T, SA_REPLAY, KMADDRESS, ...) that Linux's af_key, FreeBSD,
// NetBSD and macOS speak.
//
// It is pure Go and builds on every OS: the numbers that differ between
// kernels (extension and message types past the common ones, algorithm
// ids, the sockaddr layout, the size of sadb_x_ipsecrequest, the unit of
// sadb_sa_replay, byte order) live in a [Dialect], so a Linux host can
// encode and test a FreeBSD message byte for byte.
//
// Wire rules the codec enforces: a message is a 16-byte sadb_msg followed
// by extensions; every length field counts 64-bit units (except
// sadb_x_ipsecrequest_len, which counts bytes); every extension is padded
// to 8 bytes; integers are in host byte order except SPIs, ports and
// addresses, which are in network order. [Parse] is strict: a length that
// does not add up, a truncated or duplicated extension, an address whose
// family or prefix length does not fit is an error that errors.Is one of
// the Err* sentinels and says where (a *[ParseError]).
package sadb
