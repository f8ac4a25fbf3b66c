#!/usr/bin/env python3
"""Turns the output of capture.sh into the golden files of this directory.

    python3 extract.py CAPTUREDIR PREFIX

For each connection of capture.sh it writes PREFIX-<connection>.txt with the
messages of the exchange (UDP payloads, non-ESP marker removed) and the key
material charon logged at "ike 4" on the initiator (A.log). Line format:

    msg <i|r> <src ip:port> <dst ip:port> <hex>   # i: sent by the initiator
    <name> <hex>                                  # logged value
"""
import re, struct, sys, os

CONNS = [  # name, IKE proposal, ESP proposal: as in capture.sh
    ("gcm128-x25519", "aes128gcm16-prfsha256-x25519", "aes128gcm16"),
    ("gcm256-ecp256", "aes256gcm16-prfsha384-ecp256", "aes256gcm16"),
    ("cbc-modp2048", "aes256-sha256-prfsha256-modp2048", "aes128-sha256"),
    ("chacha-x25519", "chacha20poly1305-prfsha512-x25519", "chacha20poly1305"),
    ("empty-fqdn", "aes128gcm16-prfsha256-x25519", "aes128gcm16"),
]
PSK = "keyplane-interop-psk"

def packets(path):
    data = open(path, "rb").read()
    magic = struct.unpack("<I", data[:4])[0]
    assert magic == 0xA1B2C3D4, hex(magic)
    link = struct.unpack("<I", data[20:24])[0]
    assert link == 1, link  # Ethernet
    pos = 24
    while pos < len(data):
        _, _, incl, _ = struct.unpack("<IIII", data[pos:pos + 16])
        frame = data[pos + 16:pos + 16 + incl]
        pos += 16 + incl
        assert struct.unpack(">H", frame[12:14])[0] == 0x0800
        ip = frame[14:]
        ihl = (ip[0] & 15) * 4
        assert ip[9] == 17
        src, dst = ".".join(map(str, ip[12:16])), ".".join(map(str, ip[16:20]))
        udp = ip[ihl:]
        sport, dport, ulen = struct.unpack(">HHH", udp[:6])
        payload = udp[8:ulen]
        if 5000 in (sport, dport):
            continue  # capture.sh's replayed half-open request
        if sport == 4500 or dport == 4500:
            if payload[:4] != b"\0\0\0\0":
                continue  # ESP in UDP, not IKE
            payload = payload[4:]
        yield f"{src}:{sport}", f"{dst}:{dport}", payload

def groups(pkts):
    """Groups messages by IKE SA (initiator SPI); a group that only holds an
    unencrypted IKE_SA_INIT answer with a single Notify (INVALID_KE_PAYLOAD,
    COOKIE) belongs to the exchange that follows it."""
    order, by = [], {}
    for src, dst, p in pkts:
        spi = p[:8]
        if spi not in by:
            by[spi] = []
            order.append(spi)
        by[spi].append((src, dst, p))
    out, pending = [], []
    for spi in order:
        g = by[spi]
        retry = len(g) >= 2 and g[-1][2][16] == 41 and g[-1][2][18] == 34 and \
            struct.unpack(">H", g[-1][2][30:32])[0] + 28 == len(g[-1][2]) and \
            all(m[2][18] == 34 for m in g)
        if retry:
            pending += g
            continue
        out.append(pending + g)
        pending = []
    assert not pending
    return out

def logged(path):
    """Yields (name, bytes) for each hex dump in a charon log."""
    lines = open(path, errors="replace").read().splitlines()
    i = 0
    head = re.compile(r"^\d+\[(?:IKE|CHD|LIB)\] (.*?) => (\d+) bytes @")
    row = re.compile(r"^\d+\[(?:IKE|CHD|LIB)\]\s+\d+: ((?:[0-9A-F]{2} ?)+)")
    while i < len(lines):
        m = head.match(lines[i])
        i += 1
        if not m:
            continue
        n, want = m.group(1), int(m.group(2))
        buf = b""
        while len(buf) < want and i < len(lines):
            r = row.match(lines[i])
            if not r:
                break
            buf += bytes.fromhex(r.group(1).strip()[:47].replace(" ", ""))
            i += 1
        yield n, buf[:want]

NAMES = {
    "shared Diffie Hellman secret": "dh_secret", "SKEYSEED": "skeyseed",
    "Sk_d secret": "sk_d", "Sk_ai secret": "sk_ai", "Sk_ar secret": "sk_ar",
    "Sk_ei secret": "sk_ei", "Sk_er secret": "sk_er", "Sk_pi secret": "sk_pi",
    "Sk_pr secret": "sk_pr",
    "encryption initiator key": "child_encr_i", "encryption responder key": "child_encr_r",
    "integrity initiator key": "child_integ_i", "integrity responder key": "child_integ_r",
}

def main():
    cap, prefix = sys.argv[1], sys.argv[2]
    gs = groups(list(packets(os.path.join(cap, "exchange.pcap"))))
    assert len(gs) == len(CONNS), len(gs)
    # Split the log's values per IKE SA: each starts at a DH secret.
    per, cur = [], None
    for n, v in logged(os.path.join(cap, "A.log")):
        if n == "shared Diffie Hellman secret":
            cur = []
            per.append(cur)
        if cur is None:
            continue
        if n.startswith("AUTH = prf(prf(secret, keypad), octets)"):
            cur.append(("auth_i" if not any(k == "auth_i" for k, _ in cur) else "auth_r", v))
        elif n in NAMES:
            cur.append((NAMES[n], v))
    assert len(per) == len(CONNS), len(per)
    for (name, prop, esp), g, vals in zip(CONNS, gs, per):
        init = g[0][0].split(":")[0]
        with open(f"{prefix}-{name}.txt", "w") as f:
            f.write(f"# strongSwan 5.9.8 exchange {name}, captured by capture.sh, written by extract.py\n")
            f.write(f"proposal {prop}\nesp {esp}\npsk {PSK.encode().hex()}\n")
            for src, dst, p in g:
                f.write(f"msg {'i' if src.split(':')[0] == init else 'r'} {src} {dst} {p.hex()}\n")
            for k, v in vals:
                f.write(f"{k} {v.hex()}\n")

main()
