// Package ikecrypto is the cryptography of IKEv2 (RFC 7296): Diffie-Hellman
// key exchange with public value validation, the PRFs and prf+, the IKE SA
// and Child SA key derivation, the ciphers of the Encrypted payload, the
// pre-shared key AUTH computation and the NAT detection hash.
//
// It uses only the standard library and golang.org/x/crypto. Supported:
//
//   - key exchange: group 31 (Curve25519, RFC 8031), 19, 20 and 21
//     (ECP-256/384/521, RFC 5903), 14, 15 and 16 (MODP-2048/3072/4096,
//     RFC 3526), and the key encapsulation methods ML-KEM-768 and
//     ML-KEM-1024 (FIPS 203, transform IDs 36 and 37 of the IANA Key
//     Exchange Methods registry, draft-ietf-ipsecme-ikev2-mlkem), all
//     behind the KeyExchange interface (NewKeyExchange, Respond);
//   - PRF: HMAC-SHA2-256/384/512 (RFC 4868), HMAC-SHA1 (RFC 2104) for
//     legacy peers;
//   - IKE and ESP encryption: ENCR_AES_GCM_16 with 128, 192 or 256-bit keys
//     (RFC 5282, RFC 4106), ENCR_CHACHA20_POLY1305 (RFC 7634), and
//     ENCR_AES_CBC with AUTH_HMAC_SHA2_256_128, _384_192 or _512_256
//     (RFC 3602, RFC 4868) or AUTH_HMAC_SHA1_96 (RFC 2404);
//   - ESP only: ENCR_AES_CCM_8/12/16 (RFC 4309; key material for the
//     kernel, which does the encryption);
//
// Public key authentication (Sign, Verify): RFC 7427 Digital Signatures
// (AUTH method 14) with RSASSA-PSS and RSASSA-PKCS1-v1_5 over SHA-2,
// ECDSA on P-256/384/521 and Ed25519 (RFC 8420), and the classic methods 1
// (RSA, SHA-1) and 9 to 11 (ECDSA, RFC 4754). The keys are crypto.Signer,
// so a key may live in an HSM.
//
// Multiple key exchanges (RFC 9370) and IKE_INTERMEDIATE (RFC 9242) are
// pure functions here (DeriveIntermediateIKEKeys, DeriveRekeyedIKEKeysMulti,
// DeriveChildKeysMulti, IntAuth, AppendIntAuth); the exchange state is the
// engine's.
//
// Secret values are Key, whose formatting (fmt, log/slog, encoding/json)
// never shows the bytes.
package ikecrypto
