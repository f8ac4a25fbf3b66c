#!/bin/sh
# Captures real IKEv2 exchanges between two strongSwan charon daemons
# (Debian's strongswan-charon 5.9.8 with kernel-libipsec), for the golden
# tests of ike/message and ike/ikecrypto. Needs root; creates two network
# namespaces joined by a veth pair and removes them at the end. Traffic stays
# inside those namespaces.
#
#   sh capture.sh OUTDIR [cookie SEED]
#
# OUTDIR receives exchange.pcap (tcpdump on the initiator's veth) and the
# charon logs A.log and B.log at "ike 4" (key material, nonces, DH secrets).
# With "cookie SEED", the responder demands a COOKIE once one IKE SA is
# half-open; one is made half-open first by replaying, from port 5000, the
# first initiator message of SEED (a file written by extract.py) with a fresh
# initiator SPI.
set -eu
OUT=$(realpath "$1")
MODE=${2:-plain}
W=$(mktemp -d /tmp/kp-capture.XXXXXX)
mkdir -p "$OUT"
PSK=keyplane-interop-psk

cleanup() {
	for n in A B; do
		[ -f "$W/$n.pid" ] && kill "$(cat "$W/$n.pid")" 2>/dev/null || true
	done
	[ -f "$W/tcpdump.pid" ] && kill "$(cat "$W/tcpdump.pid")" 2>/dev/null || true
	sleep 1
	ip netns del kpA 2>/dev/null || true
	ip netns del kpB 2>/dev/null || true
}
trap cleanup EXIT

ip netns add kpA
ip netns add kpB
ip link add kpvA netns kpA type veth peer name kpvB netns kpB
ip -n kpA addr add 10.99.0.1/24 dev kpvA
ip -n kpB addr add 10.99.0.2/24 dev kpvB
ip -n kpA link set kpvA up
ip -n kpB link set kpvB up
ip -n kpA link set lo up
ip -n kpB link set lo up
ip -n kpA addr add 10.10.1.1/32 dev lo
ip -n kpB addr add 10.10.2.1/32 dev lo

cookie=""
[ "$MODE" = cookie ] && cookie="cookie_threshold = 1"

for n in A B; do
	cat >"$W/$n.conf" <<CONF
charon {
	load = random nonce aes sha1 sha2 hmac gcm chapoly curve25519 gmp openssl kdf pem pkcs1 x509 pubkey kernel-libipsec kernel-netlink socket-default vici updown
	install_virtual_ip = no
	retransmit_tries = 2
	$( [ $n = B ] && echo "$cookie" )
	filelog {
		log {
			path = $OUT/$n.log
			default = 1
			ike = 4
			enc = 2
			cfg = 2
			chd = 4
			lib = 4
			flush_line = yes
		}
	}
	plugins {
		vici {
			socket = unix://$W/$n.vici
		}
	}
}
CONF
done

# name proposals esp_proposals idtypeA idtypeB
conns() {
	cat <<C
gcm128-x25519 aes128gcm16-prfsha256-x25519 aes128gcm16 @a.example.org @b.example.org
gcm256-ecp256 aes256gcm16-prfsha384-ecp256 aes256gcm16 alice@a.example.org bob@b.example.org
cbc-modp2048 aes256-sha256-prfsha256-modp2048 aes128-sha256 10.99.0.1 10.99.0.2
chacha-x25519 chacha20poly1305-prfsha512-x25519 chacha20poly1305 @#0102030405 @#a0b0c0d0e0
empty-fqdn aes128gcm16-prfsha256-x25519 aes128gcm16 @ @
C
}

mkswan() { # side local remote
	side=$1
	{
		echo "connections {"
		conns | while read -r name prop esp ida idb; do
			if [ "$side" = A ]; then lid=$ida; rid=$idb; la=10.99.0.1; ra=10.99.0.2; lts=10.10.1.1/32; rts=10.10.2.1/32
			else lid=$idb; rid=$ida; la=10.99.0.2; ra=10.99.0.1; lts=10.10.2.1/32; rts=10.10.1.1/32; fi
			kprop=$prop
			# INVALID_KE_PAYLOAD: the initiator's first KE is ecp256 for the
			# x25519 connection, which the responder does not accept.
			[ "$side" = A ] && [ "$name" = gcm128-x25519 ] && kprop="aes128gcm16-prfsha256-ecp256-x25519"
			encap=""
			[ "$side" = A ] && encap="encap = yes"
			cat <<S
	$name {
		version = 2
		local_addrs = $la
		remote_addrs = $ra
		proposals = $kprop
		$encap
		local {
			auth = psk
			id = "$lid"
		}
		remote {
			auth = psk
			id = "$rid"
		}
		children {
			$name {
				local_ts = $lts
				remote_ts = $rts
				esp_proposals = $esp
			}
		}
	}
S
		done
		echo "}"
		printf 'secrets {\n\tike-all {\n\t\tsecret = "%s"\n\t}\n}\n' "$PSK"
	} >"$W/$side-swanctl.conf"
}
mkswan A
mkswan B

for n in A B; do
	ns=kp$n
	ip netns exec $ns unshare -m sh -c "mount -t tmpfs tmpfs /run && STRONGSWAN_CONF=$W/$n.conf exec /usr/lib/ipsec/charon" >"$W/$n.out" 2>&1 &
	echo $! >"$W/$n.pid"
done
sleep 2
ip netns exec kpA tcpdump -i kpvA -U -w "$OUT/exchange.pcap" udp port 500 or udp port 4500 >"$W/tcpdump.out" 2>&1 &
echo $! >"$W/tcpdump.pid"
sleep 1
for n in A B; do
	ip netns exec kp$n swanctl --load-all --file "$W/$n-swanctl.conf" --uri "unix://$W/$n.vici" 2>&1 | grep -v "opening directory" >"$W/$n-load.out" || true
done
if [ "$MODE" = cookie ]; then
	hex=$(awk '$1 == "msg" { print $5; exit }' "$3")
	ip netns exec kpA python3 -c 'import socket, sys
b = bytearray.fromhex(sys.argv[1]); b[0:8] = bytes.fromhex("00c0ffee00c0ffee")
s = socket.socket(socket.AF_INET, socket.SOCK_DGRAM); s.bind(("10.99.0.1", 5000))
s.sendto(bytes(b), ("10.99.0.2", 500))' "$hex"
	sleep 1
fi
conns | while read -r name rest; do
	ip netns exec kpA swanctl --initiate --child "$name" --timeout 10 --uri "unix://$W/A.vici" >"$OUT/initiate-$name.out" 2>&1 || echo "initiate $name failed" >&2
	ip netns exec kpA swanctl --terminate --ike "$name" --timeout 10 --uri "unix://$W/A.vici" >/dev/null 2>&1 || true
done
sleep 1
