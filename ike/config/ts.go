package config

import (
	"fmt"
	"net/netip"
	"strconv"
	"strings"
)

// TS is a configured traffic selector: a prefix (or Dynamic: the IKE
// address of that side) with an optional protocol and port, written as
// swanctl does: 10.1.0.0/16, 10.1.0.5[tcp/443], dynamic[udp], 0.0.0.0/0.
type TS struct {
	Dynamic bool
	Prefix  netip.Prefix
	Proto   uint8
	Port    uint16 // 0: any
}

func (t TS) String() string {
	s := "dynamic"
	if !t.Dynamic {
		s = t.Prefix.String()
	}
	if t.Proto != 0 || t.Port != 0 {
		p := "any"
		if t.Proto != 0 {
			p = protoName(t.Proto)
		}
		if t.Port != 0 {
			p += "/" + strconv.Itoa(int(t.Port))
		}
		s += "[" + p + "]"
	}
	return s
}

// MarshalText writes the selector as configured.
func (t TS) MarshalText() ([]byte, error) { return []byte(t.String()), nil }

var protoNames = map[string]uint8{"icmp": 1, "tcp": 6, "udp": 17, "ipv6-icmp": 58, "icmp6": 58, "sctp": 132, "any": 0}

func protoName(p uint8) string {
	for n, v := range protoNames {
		if v == p && n != "icmp6" && n != "any" {
			return n
		}
	}
	return strconv.Itoa(int(p))
}

// ParseTSList reads a comma-separated selector list.
func ParseTSList(s string) ([]TS, error) {
	var out []TS
	for part := range strings.SplitSeq(s, ",") {
		t, err := parseTS(strings.TrimSpace(part))
		if err != nil {
			return nil, err
		}
		out = append(out, t)
	}
	return out, nil
}

func parseTS(s string) (TS, error) {
	var t TS
	addr, spec, hasSpec := strings.Cut(s, "[")
	if hasSpec {
		var ok bool
		spec, ok = strings.CutSuffix(spec, "]")
		if !ok {
			return t, fmt.Errorf("traffic selector %q: missing ']'", s)
		}
		proto, port, _ := strings.Cut(spec, "/")
		if v, ok := protoNames[strings.ToLower(proto)]; ok {
			t.Proto = v
		} else if n, err := strconv.ParseUint(proto, 10, 8); err == nil {
			t.Proto = uint8(n)
		} else if proto != "" {
			return t, fmt.Errorf("traffic selector %q: unknown protocol %q", s, proto)
		}
		if port != "" && port != "%any" {
			n, err := strconv.ParseUint(port, 10, 16)
			if err != nil || n == 0 {
				return t, fmt.Errorf("traffic selector %q: port %q: want 1-65535 or %%any", s, port)
			}
			if t.Proto != 6 && t.Proto != 17 && t.Proto != 132 {
				return t, fmt.Errorf("traffic selector %q: a port needs tcp, udp or sctp", s)
			}
			t.Port = uint16(n)
		}
	}
	switch addr {
	case "":
		return t, fmt.Errorf("empty traffic selector")
	case "dynamic":
		t.Dynamic = true
		return t, nil
	}
	if p, err := netip.ParsePrefix(addr); err == nil {
		if p.Masked() != p {
			return t, fmt.Errorf("traffic selector %q: host bits set (did you mean %s?)", s, p.Masked())
		}
		t.Prefix = p
		return t, nil
	}
	if a, err := netip.ParseAddr(addr); err == nil {
		t.Prefix = netip.PrefixFrom(a, a.BitLen())
		return t, nil
	}
	return t, fmt.Errorf("traffic selector %q: want a prefix, an address or dynamic", s)
}
