package sadb

import (
	"encoding/binary"

	"github.com/keyplane/keyplane/iana"
)

// The dialects below carry values from the kernels' own headers, read for
// facts only. Where a header defines an algorithm the kernel does not run
// (or runs differently from the IKEv2 transform of the same name) the
// table leaves it out and says why; at Open the backend further narrows
// the list to what the running kernel answers SADB_REGISTER with.

// Linux is af_key (net/key/af_key.c) with the values of
// /usr/include/linux/pfkeyv2.h and linux/ipsec.h, and the algorithm ids
// of net/xfrm/xfrm_algo.c (the entries with pfkey_supported set).
var Linux = Dialect{
	Name:     "linux",
	Order:    binary.NativeEndian,
	Sockaddr: SockaddrLinux,
	AFInet:   2,  // AF_INET
	AFInet6:  10, // AF_INET6 (linux/socket.h)
	// struct sadb_x_ipsecrequest: len, proto (u16), mode, level (u8),
	// reserved1 (u16), reqid (u32), reserved2 (u32).
	RequestLen: 16,
	// af_key: x->props.replay_window = min(sadb_sa_replay, 32): packets.
	ReplayInBytes: false,
	// af_key has no ESN flag: it never allocates replay_esn.
	FlagESN: 0,

	MsgNATTNewMapping: 23, // SADB_X_NAT_T_NEW_MAPPING
	MsgMigrate:        24, // SADB_X_MIGRATE
	MsgMax:            24, // SADB_MAX

	ExtNATTType:  20, // SADB_X_EXT_NAT_T_TYPE
	ExtNATTSport: 21,
	ExtNATTDport: 22,
	ExtNATTOA:    23,
	ExtSecCtx:    24, // SADB_X_EXT_SEC_CTX
	ExtKMAddress: 25, // SADB_X_EXT_KMADDRESS
	ExtFilter:    26, // SADB_X_EXT_FILTER
	ExtMax:       26,

	// af_key looks ciphers up in xfrm's ealg_list only: the AEADs
	// (rfc4106(gcm(aes)), rfc4309(ccm(aes)), rfc7539esp(chacha20,poly1305))
	// live in aead_list and cannot be installed over PF_KEY.
	Encr: []EncrAlg{
		{iana.EncrDES3, 3},    // SADB_EALG_3DESCBC, cbc(des3_ede)
		{iana.EncrNull, 11},   // SADB_EALG_NULL, ecb(cipher_null)
		{iana.EncrAESCBC, 12}, // SADB_X_EALG_AESCBC, cbc(aes)
		{iana.EncrAESCTR, 13}, // SADB_X_EALG_AESCTR, rfc3686(ctr(aes))
	},
	// SADB_X_AALG_SHA2_256HMAC (5) is left out on purpose: xfrm_algo.c
	// gives hmac(sha256) icv_truncbits = 96, the pre-RFC 4868 draft, and
	// af_key has no way to ask for 128; installing it would not
	// interoperate with AUTH_HMAC_SHA2_256_128.
	Auth: []AuthAlg{
		{iana.IntegHMACMD5_96, 2},     // SADB_AALG_MD5HMAC, 96-bit ICV
		{iana.IntegHMACSHA1_96, 3},    // SADB_AALG_SHA1HMAC, 96-bit ICV
		{iana.IntegHMACSHA384_192, 6}, // SADB_X_AALG_SHA2_384HMAC, 192-bit ICV
		{iana.IntegHMACSHA512_256, 7}, // SADB_X_AALG_SHA2_512HMAC, 256-bit ICV
		{iana.IntegAESXCBC96, 9},      // SADB_X_AALG_AES_XCBC_MAC, xcbc(aes)
	},
	EncrNull: 11,
}

// FreeBSD is sys/net/pfkeyv2.h and netipsec/ipsec.h of FreeBSD 13/14.
var FreeBSD = Dialect{
	Name:     "freebsd",
	Order:    binary.NativeEndian,
	Sockaddr: SockaddrBSD,
	AFInet:   2,
	AFInet6:  28, // sys/socket.h
	// KAME struct sadb_x_ipsecrequest: len, proto (u16), mode, level
	// (u8), reqid (u16).
	RequestLen: 8,
	// key.c: sadb_sa_replay is the bitmap size in bytes; larger windows
	// go in SADB_X_EXT_SA_REPLAY, in packets.
	ReplayInBytes: true,
	FlagESN:       0x400, // SADB_X_SAFLAGS_ESN

	// No SADB_X_NAT_T_NEW_MAPPING and no SADB_X_MIGRATE: SADB_MAX is 22.
	MsgMax: 22,

	ExtNATTType:      20,
	ExtNATTSport:     21,
	ExtNATTDport:     22,
	ExtNATTOA:        23, // SADB_X_EXT_NAT_T_OAI
	ExtNATTOAR:       24,
	ExtNATTFrag:      25,
	ExtSAReplay:      26, // SADB_X_EXT_SA_REPLAY
	ExtNewAddressSrc: 27,
	ExtNewAddressDst: 28,
	ExtMax:           28,

	Encr: []EncrAlg{
		{iana.EncrDES3, 3},              // SADB_EALG_3DESCBC (gone from the kernel in 14)
		{iana.EncrNull, 11},             // SADB_EALG_NULL
		{iana.EncrAESCBC, 12},           // SADB_X_EALG_AES
		{iana.EncrAESCTR, 13},           // SADB_X_EALG_AESCTR
		{iana.EncrChaCha20Poly1305, 15}, // SADB_X_EALG_CHACHA20POLY1305
		{iana.EncrAESGCM8, 18},          // SADB_X_EALG_AESGCM8
		{iana.EncrAESGCM12, 19},         // SADB_X_EALG_AESGCM12
		{iana.EncrAESGCM16, 20},         // SADB_X_EALG_AESGCM16
		{iana.EncrNullAuthAESGMAC, 23},  // SADB_X_EALG_AESGMAC
	},
	Auth: []AuthAlg{
		{iana.IntegHMACMD5_96, 2},
		{iana.IntegHMACSHA1_96, 3},
		{iana.IntegHMACSHA256_128, 5}, // SADB_X_AALG_SHA2_256, RFC 4868 truncation
		{iana.IntegHMACSHA384_192, 6},
		{iana.IntegHMACSHA512_256, 7},
		{iana.IntegAESXCBC96, 9}, // SADB_X_AALG_AES_XCBC_MAC
	},
	EncrNull: 11,
}

// NetBSD is sys/net/pfkeyv2.h (1.34) and netipsec/ipsec.h of NetBSD 9/10.
var NetBSD = Dialect{
	Name:          "netbsd",
	Order:         binary.NativeEndian,
	Sockaddr:      SockaddrBSD,
	AFInet:        2,
	AFInet6:       24,
	RequestLen:    8,
	ReplayInBytes: true,
	FlagESN:       0, // no ESN flag in NetBSD's header

	MsgNATTNewMapping: 23, // SADB_X_NAT_T_NEW_MAPPING; SADB_X_MIGRATE is #if 0
	MsgMax:            23,

	ExtNATTType:  20,
	ExtNATTSport: 21,
	ExtNATTDport: 22,
	ExtNATTOA:    23, // SADB_X_EXT_NAT_T_OAI
	ExtNATTOAR:   24,
	ExtNATTFrag:  25,
	ExtMax:       25,

	Encr: []EncrAlg{
		{iana.EncrDES3, 3},
		{iana.EncrNull, 11},
		{iana.EncrAESCBC, 12},
		{iana.EncrAESCTR, 13},
		{iana.EncrAESGCM8, 18},
		{iana.EncrAESGCM12, 19},
		{iana.EncrAESGCM16, 20},
		{iana.EncrNullAuthAESGMAC, 23},
	},
	Auth: []AuthAlg{
		{iana.IntegHMACMD5_96, 2},
		{iana.IntegHMACSHA1_96, 3},
		{iana.IntegHMACSHA256_128, 5},
		{iana.IntegHMACSHA384_192, 6},
		{iana.IntegHMACSHA512_256, 7},
		{iana.IntegAESXCBC96, 9},
	},
	EncrNull: 11,
}

// Darwin is XNU's bsd/net/pfkeyv2.h. Apple renumbered the algorithms
// (SADB_AALG_MD5HMAC is 1, not 2) and carries NAT-T in a private
// sadb_sa_2 rather than the KAME NAT_T extensions.
var Darwin = Dialect{
	Name:          "darwin",
	Order:         binary.NativeEndian,
	Sockaddr:      SockaddrBSD,
	AFInet:        2,
	AFInet6:       30,
	RequestLen:    8,
	ReplayInBytes: true,
	FlagESN:       0,

	// SADB_MIGRATE is 26 but carries Apple's own
	// SADB_EXT_MIGRATE_ADDRESS_* extensions; not decoded here.
	MsgMax: 26,
	ExtMax: 29,

	Encr: []EncrAlg{
		{iana.EncrDES3, 2},              // SADB_EALG_3DESCBC
		{iana.EncrNull, 3},              // SADB_EALG_NULL
		{iana.EncrAESCBC, 12},           // SADB_X_EALG_AESCBC
		{iana.EncrAESGCM16, 13},         // SADB_X_EALG_AES_GCM (16-byte ICV)
		{iana.EncrChaCha20Poly1305, 14}, // SADB_X_EALG_CHACHA20POLY1305
		{iana.EncrNullAuthAESGMAC, 15},  // SADB_X_EALG_AES_GMAC
	},
	Auth: []AuthAlg{
		{iana.IntegHMACMD5_96, 1},     // SADB_AALG_MD5HMAC
		{iana.IntegHMACSHA1_96, 2},    // SADB_AALG_SHA1HMAC
		{iana.IntegHMACSHA256_128, 6}, // SADB_X_AALG_SHA2_256
		{iana.IntegHMACSHA384_192, 7}, // SADB_X_AALG_SHA2_384
		{iana.IntegHMACSHA512_256, 8}, // SADB_X_AALG_SHA2_512
	},
	EncrNull: 3,
}
