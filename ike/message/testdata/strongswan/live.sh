#!/bin/sh
# Runs TestStrongSwanLive (ike/ikecrypto/live_test.go) against a real
# strongSwan charon (Debian's strongswan-charon 5.9.8, kernel-libipsec).
# Needs root and Go; creates two network namespaces joined by a veth pair and
# removes them at the end. Traffic stays inside those namespaces.
#
#   sh live.sh gcm|cbc|chacha [cookie]
#
# The suite selects the proposals (see liveSuites in live_test.go):
#   gcm     aes128gcm16-prfsha256-x25519       ESP aes128gcm16
#   cbc     aes256-sha256-prfsha256-modp2048   ESP aes128-sha256
#   chacha  chacha20poly1305-prfsha512-ecp256  ESP chacha20poly1305
#
# With "cookie", charon demands a COOKIE: one IKE SA is made half-open first
# by replaying a captured request from port 5000.
set -eu
HERE=$(cd "$(dirname "$0")" && pwd)
PKG=$(cd "$HERE/../../../ikecrypto" && pwd)
SUITE=${1:-gcm}
MODE=${2:-plain}
case $SUITE in
gcm) IKE=aes128gcm16-prfsha256-x25519; ESP=aes128gcm16 ;;
cbc) IKE=aes256-sha256-prfsha256-modp2048; ESP=aes128-sha256 ;;
chacha) IKE=chacha20poly1305-prfsha512-ecp256; ESP=chacha20poly1305 ;;
*) echo "unknown suite $SUITE" >&2; exit 2 ;;
esac
if [ "$MODE" = cookie ] && [ "$SUITE" != gcm ]; then
	echo "cookie mode replays a captured gcm request: use suite gcm" >&2
	exit 2
fi
W=$(mktemp -d /tmp/kp-live.XXXXXX)
PSK=keyplane-live-psk

cleanup() {
	[ -f "$W/B.pid" ] && kill "$(cat "$W/B.pid")" 2>/dev/null || true
	sleep 1
	ip netns del kpLA 2>/dev/null || true
	ip netns del kpLB 2>/dev/null || true
}
trap cleanup EXIT

(cd "$PKG" && go test -c -o "$W/ikecrypto.test" .)

ip netns add kpLA
ip netns add kpLB
ip link add kplA netns kpLA type veth peer name kplB netns kpLB
ip -n kpLA addr add 10.98.0.1/24 dev kplA
ip -n kpLB addr add 10.98.0.2/24 dev kplB
for n in A B; do
	ip -n kpL$n link set kpl$n up
	ip -n kpL$n link set lo up
done
ip -n kpLB addr add 10.10.2.1/32 dev lo

cookie=""
[ "$MODE" = cookie ] && cookie="cookie_threshold = 1"
frag=""
# With chacha, charon fragments its IKE_AUTH answer (RFC 7383).
[ "$SUITE" = chacha ] && frag="fragment_size = 160"
cat >"$W/B.conf" <<CONF
charon {
	$frag
	load = random nonce aes sha1 sha2 hmac gcm chapoly curve25519 gmp openssl kdf pem pkcs1 x509 pubkey kernel-libipsec kernel-netlink socket-default vici updown
	$cookie
	filelog {
		log {
			path = $W/B.log
			default = 1
			ike = 2
			chd = 4
			flush_line = yes
		}
	}
	plugins {
		vici {
			socket = unix://$W/B.vici
		}
	}
}
CONF
cat >"$W/swanctl.conf" <<CONF
connections {
	keyplane {
		version = 2
		local_addrs = 10.98.0.2
		remote_addrs = 10.98.0.1
		proposals = $IKE
		local {
			auth = psk
			id = strongswan.example.org
		}
		remote {
			auth = psk
			id = keyplane.example.org
		}
		children {
			keyplane {
				local_ts = 10.10.2.1/32
				remote_ts = 10.10.1.1/32
				esp_proposals = $ESP
			}
		}
	}
}
secrets {
	ike-keyplane {
		secret = "$PSK"
	}
}
CONF
ip netns exec kpLB unshare -m sh -c "mount -t tmpfs tmpfs /run && STRONGSWAN_CONF=$W/B.conf exec /usr/lib/ipsec/charon" >"$W/B.out" 2>&1 &
echo $! >"$W/B.pid"
sleep 2
ip netns exec kpLB swanctl --load-all --file "$W/swanctl.conf" --uri "unix://$W/B.vici" 2>&1 | grep -v "opening directory" >"$W/load.out" || true

if [ "$MODE" = cookie ]; then
	# The x25519 retry of a captured exchange: a request this responder accepts.
	hex=$(awk '$1 == "msg" && $2 == "i" && ++n == 2 { print $5; exit }' "$HERE/plain-gcm128-x25519.txt")
	ip netns exec kpLA python3 -c 'import socket, sys
b = bytearray.fromhex(sys.argv[1]); b[0:8] = bytes.fromhex("00c0ffee00c0ffee")
s = socket.socket(socket.AF_INET, socket.SOCK_DGRAM); s.bind(("10.98.0.1", 5000))
s.sendto(bytes(b), ("10.98.0.2", 500))' "$hex"
	sleep 1
fi

rc=0
ip netns exec kpLA env KEYPLANE_STRONGSWAN_PEER=10.98.0.2:500 KEYPLANE_STRONGSWAN_LOCAL=10.98.0.1:500 \
	KEYPLANE_STRONGSWAN_PSK=$PSK KEYPLANE_STRONGSWAN_SUITE=$SUITE KEYPLANE_STRONGSWAN_KEYS_OUT="$W/keys.txt" \
	${cookie:+KEYPLANE_STRONGSWAN_COOKIE=1} ${frag:+KEYPLANE_STRONGSWAN_EXPECT_FRAGMENTS=1} \
	"$W/ikecrypto.test" -test.run '^TestStrongSwanLive$' -test.v -test.count=1 || rc=$?
sleep 1
kill "$(cat "$W/B.pid")" 2>/dev/null || true
rm -f "$W/B.pid"
sleep 1
grep -E "IKE_SA .* established|CHILD_SA .* established|authentication of|deleting IKE_SA|received DELETE" "$W/B.log" || true
# The Child SA keys charon derived must equal the test's.
python3 - "$W/B.log" "$W/keys.txt" <<'PY' || rc=1
import re, sys
log = open(sys.argv[1], errors="replace").read().splitlines()
want = dict(l.split() for l in open(sys.argv[2]))
got, i = {}, 0
while i < len(log):
    m = re.match(r"^\d+\[CHD\] (encryption|integrity) (initiator|responder) key => (\d+) bytes", log[i])
    i += 1
    if not m:
        continue
    buf = ""
    while len(buf) < 2 * int(m.group(3)):
        buf += re.match(r"^\d+\[CHD\]\s+\d+: ((?:[0-9A-F]{2} ?)+)", log[i]).group(1).strip()[:47].replace(" ", "").lower()
        i += 1
    got["child_" + {"encryption": "encr", "integrity": "integ"}[m.group(1)] + "_" + m.group(2)[0]] = buf
for k in want:
    print(k, "match" if got.get(k) == want[k] else "DIFFER", file=sys.stderr)
    if got.get(k) != want[k]:
        sys.exit(1)
PY
exit $rc
