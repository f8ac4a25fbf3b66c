#!/bin/sh
# Signatures made by OpenSSL 3 over a fixed message, for ikecrypto's
# cross-implementation tests: an RSA-3072 RSASSA-PSS (SHA-256, salt 32) and
# an ECDSA P-384 (SHA-384, DER) signature, with the public keys.
set -e
printf 'keyplane signed octets: RealMessage1 | NonceRData | MACedIDForI' > msg.bin
openssl genpkey -algorithm RSA -pkeyopt rsa_keygen_bits:3072 -out rsa.key 2>/dev/null
openssl pkey -in rsa.key -pubout -out rsa3072.pub.pem
openssl dgst -sha256 -sigopt rsa_padding_mode:pss -sigopt rsa_pss_saltlen:32 -sign rsa.key -out rsa3072-pss-sha256.sig msg.bin
openssl genpkey -algorithm EC -pkeyopt ec_paramgen_curve:P-384 -out ec.key
openssl pkey -in ec.key -pubout -out ecp384.pub.pem
openssl dgst -sha384 -sign ec.key -out ecp384-sha384.der.sig msg.bin
openssl genpkey -algorithm ED25519 -out ed.key
openssl pkey -in ed.key -pubout -out ed25519.pub.pem
openssl pkeyutl -sign -inkey ed.key -rawin -in msg.bin -out ed25519.sig
rm -f rsa.key ec.key ed.key
