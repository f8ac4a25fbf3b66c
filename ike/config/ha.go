package config

import (
	"fmt"
	"net/netip"
	"net/url"
	"slices"
	"strings"
	"time"
)

// HA is the ha { } section: an active/standby pair sharing state through
// etcd (package ha). A nil *HA in Config means no HA.
type HA struct {
	Node      string   // this node's name, unique in the cluster
	Endpoints []string // etcd client URLs
	// TLS client settings for etcd (files); all empty: plain http.
	CA, Cert, Key string
	VIP           netip.Prefix // the address the active node holds; invalid: none
	Interface     string       // where the VIP goes
	// ClusterKeyFile holds the 32-byte AES-256-GCM key that seals every
	// record in etcd; ClusterKey is what it read.
	ClusterKeyFile string
	ClusterKey     []byte
	LeaseTTL       time.Duration // the election's lease; whole seconds
	// The dataplane sends a sync event (kernelops.SyncThresholds) every
	// SyncPackets packets or SyncInterval, whichever comes first.
	SyncPackets  uint32
	SyncInterval time.Duration
}

// HAKeySize is the cluster key's size in bytes (AES-256).
const HAKeySize = 32

const (
	minHALeaseTTL    = 2 * time.Second
	maxHALeaseTTL    = time.Hour
	maxHASyncPackets = 1 << 30
	wantHALeaseTTL   = "want whole seconds from 2s to 1h"
	wantHAEndpoint   = "want http:// or https:// URLs of etcd, such as https://10.0.0.1:2379"
)

var haSettings = []string{"node", "endpoints", "vip", "interface", "cluster_key", "lease_ttl",
	"sync_packets", "sync_interval"}

// haSection reads ha { }.
func (b *builder) haSection(s *section) *HA {
	h := DefaultHA()
	b.known(s, haSettings, []string{"tls"})
	for _, kv := range s.settings {
		field := "ha." + kv.key
		b.at(kv, field)
		switch kv.key {
		case "node":
			h.Node = kv.value
		case "endpoints":
			h.Endpoints = splitList(kv.value)
		case "vip":
			p, err := netip.ParsePrefix(kv.value)
			if err != nil {
				b.fail(kv.line, field, "%q: want an address with its prefix length, such as 192.0.2.10/24", kv.value)
			}
			h.VIP = p
		case "interface":
			h.Interface = kv.value
		case "cluster_key":
			h.ClusterKeyFile = kv.value
			key, err := b.o.ReadFile(kv.value)
			switch {
			case err != nil:
				b.fail(kv.line, field, "%v", err)
			case len(key) != HAKeySize:
				clear(key)
				b.fail(kv.line, field, "%s holds %d bytes: want exactly %d (head -c %d /dev/urandom > FILE)", kv.value, len(key), HAKeySize, HAKeySize)
			default:
				h.ClusterKey = key
			}
		case "lease_ttl":
			h.LeaseTTL = b.duration(kv, field, true)
		case "sync_packets":
			h.SyncPackets = uint32(b.uint(kv, field, 1, maxHASyncPackets))
		case "sync_interval":
			h.SyncInterval = b.duration(kv, field, true)
		}
	}
	if t := s.sub("tls"); t != nil {
		b.known(t, []string{"ca", "cert", "key"}, nil)
		for _, kv := range t.settings {
			b.at(kv, "ha.tls."+kv.key)
			switch kv.key {
			case "ca":
				h.CA = kv.value
			case "cert":
				h.Cert = kv.value
			case "key":
				h.Key = kv.value
			}
		}
	}
	return h
}

// validate reports what is wrong with an ha section.
func (h *HA) validate(add func(field, msg string)) {
	if h == nil {
		return
	}
	if h.Node == "" || strings.ContainsAny(h.Node, "/ \t") {
		add("node", fmt.Sprintf("%q: want this node's name, without spaces or slashes", h.Node))
	}
	if len(h.Endpoints) == 0 {
		add("endpoints", "none: "+wantHAEndpoint)
	}
	for _, e := range h.Endpoints {
		u, err := url.Parse(e)
		if err != nil || (u.Scheme != "http" && u.Scheme != "https") || u.Host == "" {
			add("endpoints", fmt.Sprintf("%q: %s", e, wantHAEndpoint))
		}
	}
	if (h.Cert == "") != (h.Key == "") {
		add("tls", "cert and key go together")
	}
	if h.VIP.IsValid() && h.Interface == "" {
		add("interface", "vip needs the interface to put it on")
	}
	if len(h.ClusterKey) != HAKeySize {
		add("cluster_key", fmt.Sprintf("want a file of exactly %d bytes", HAKeySize))
	}
	if h.LeaseTTL < minHALeaseTTL || h.LeaseTTL > maxHALeaseTTL || h.LeaseTTL%time.Second != 0 {
		add("lease_ttl", fmt.Sprintf("%v: %s", h.LeaseTTL, wantHALeaseTTL))
	}
	if h.SyncPackets == 0 || h.SyncPackets > maxHASyncPackets {
		add("sync_packets", fmt.Sprintf("%d: %s", h.SyncPackets, wantWhole(1, maxHASyncPackets)))
	}
	if h.SyncInterval <= 0 {
		add("sync_interval", fmt.Sprintf("%v: %s", h.SyncInterval, wantPositiveDur))
	}
}

// sameHA reports whether two ha sections are the same settings.
func sameHA(a, b *HA) bool {
	if a == nil || b == nil {
		return a == b
	}
	return a.Node == b.Node && slices.Equal(a.Endpoints, b.Endpoints) && a.CA == b.CA && a.Cert == b.Cert &&
		a.Key == b.Key && a.VIP == b.VIP && a.Interface == b.Interface && a.ClusterKeyFile == b.ClusterKeyFile &&
		string(a.ClusterKey) == string(b.ClusterKey) && a.LeaseTTL == b.LeaseTTL &&
		a.SyncPackets == b.SyncPackets && a.SyncInterval == b.SyncInterval
}
