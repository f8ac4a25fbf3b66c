package config

import (
	"bytes"
	"fmt"
	"slices"
)

// Names lists connections and children by name.
type Names struct {
	Connections []string `json:"connections"`
	Children    []string `json:"children"`
}

// Empty reports whether no name is listed.
func (n Names) Empty() bool { return len(n.Connections) == 0 && len(n.Children) == 0 }

// Diff is what changed from one configuration to the next: for a
// reload's answer.
type Diff struct {
	Added   Names `json:"added"`
	Removed Names `json:"removed"`
	// Changed are connections whose own settings differ (addresses,
	// identities, key, proposals, timers) and children whose settings
	// differ or that moved to another connection.
	Changed Names `json:"changed"`
	// Settings are the daemon and backend settings that differ, by their
	// file names (daemon.log_level, backend.name, ...).
	Settings []string `json:"settings"`
}

// Compare returns what changed from old to nc. Lists are in the order of
// the files (removed ones in old's order) and never nil.
func Compare(old, nc *Config) Diff {
	d := Diff{Added: names(), Removed: names(), Changed: names(), Settings: []string{}}
	for _, c := range nc.Connections {
		oc := old.Connection(c.Name)
		switch {
		case oc == nil:
			d.Added.Connections = append(d.Added.Connections, c.Name)
		case !sameConnection(oc, c):
			d.Changed.Connections = append(d.Changed.Connections, c.Name)
		}
		for _, ch := range c.Children {
			ocn, och := old.Child(ch.Name)
			switch {
			case och == nil:
				d.Added.Children = append(d.Added.Children, ch.Name)
			case ocn.Name != c.Name || !sameChild(och, ch):
				d.Changed.Children = append(d.Changed.Children, ch.Name)
			}
		}
	}
	for _, oc := range old.Connections {
		if nc.Connection(oc.Name) == nil {
			d.Removed.Connections = append(d.Removed.Connections, oc.Name)
		}
		for _, och := range oc.Children {
			if _, ch := nc.Child(och.Name); ch == nil {
				d.Removed.Children = append(d.Removed.Children, och.Name)
			}
		}
	}
	od, nd := old.Daemon, nc.Daemon
	for _, s := range []struct {
		name string
		same bool
	}{
		{"daemon.control", od.Control == nd.Control},
		{"daemon.log_level", od.LogLevel == nd.LogLevel},
		{"daemon.log_format", od.LogFormat == nd.LogFormat},
		{"daemon.metrics", od.Metrics == nd.Metrics},
		{"daemon.retransmit_timeout", od.RetransmitTimeout == nd.RetransmitTimeout},
		{"daemon.retransmit_base", od.RetransmitBase == nd.RetransmitBase},
		{"daemon.retransmit_tries", od.RetransmitTries == nd.RetransmitTries},
		{"daemon.cookie_threshold", od.CookieThreshold == nd.CookieThreshold},
		{"daemon.cookie_threshold_ip", od.CookieThresholdIP == nd.CookieThresholdIP},
		{"daemon.block_threshold", od.BlockThreshold == nd.BlockThreshold},
		{"daemon.init_limit_half_open", od.InitLimitHalfOpen == nd.InitLimitHalfOpen},
		{"daemon.max_packet", od.MaxPacket == nd.MaxPacket},
		{"daemon.half_open_timeout", od.HalfOpenTimeout == nd.HalfOpenTimeout},
		{"daemon.revive_rate", od.ReviveRate == nd.ReviveRate},
		{"daemon.revive_burst", od.ReviveBurst == nd.ReviveBurst},
		{"daemon.down_queue_limit", od.DownQueueLimit == nd.DownQueueLimit},
		{"daemon.down_queue_max_age", od.DownQueueMaxAge == nd.DownQueueMaxAge},
		{"daemon.fragment_size", od.FragmentSize == nd.FragmentSize},
		{"daemon.down_timeout", od.DownTimeout == nd.DownTimeout},
		{"daemon.keep_alive", od.KeepAlive == nd.KeepAlive},
		{"daemon.ike_socket_buffer", od.IKESocketBuffer == nd.IKESocketBuffer},
		{"backend.name", old.Backend.Name == nc.Backend.Name},
		{"backend.params", fmt.Sprint(old.Backend.Params) == fmt.Sprint(nc.Backend.Params)},
		{"backend.cleanup", old.Backend.Cleanup == nc.Backend.Cleanup},
		{"ha", sameHA(old.HA, nc.HA)},
		{"pools", samePools(old.Pools, nc.Pools)},
	} {
		if !s.same {
			d.Settings = append(d.Settings, s.name)
		}
	}
	return d
}

func names() Names { return Names{Connections: []string{}, Children: []string{}} }

func sameConnection(a, b *Connection) bool {
	level := func(l *Connection) string {
		if l.LogLevel == nil {
			return ""
		}
		return l.LogLevel.String()
	}
	return slices.Equal(a.LocalAddrs, b.LocalAddrs) && slices.Equal(a.RemoteAddrs, b.RemoteAddrs) &&
		a.LocalAddr == b.LocalAddr && a.RemoteAddr == b.RemoteAddr &&
		a.LocalPort == b.LocalPort && a.RemotePort == b.RemotePort &&
		a.LocalNATPort == b.LocalNATPort && a.RemoteNATPort == b.RemoteNATPort &&
		sameID(a.LocalID, b.LocalID) && sameID(a.RemoteID, b.RemoteID) &&
		bytes.Equal(a.PSK, b.PSK) && fmt.Sprint(a.Proposals) == fmt.Sprint(b.Proposals) &&
		a.Encap == b.Encap && a.DPDDelay == b.DPDDelay && a.RekeyTime == b.RekeyTime && a.RandTime == b.RandTime &&
		a.ReauthTime == b.ReauthTime && a.OverTime == b.OverTime && a.KeyingTries == b.KeyingTries && a.Unique == b.Unique &&
		level(a) == level(b) && samePubkey(a, b) && a.Fragmentation == b.Fragmentation && a.MOBIKE == b.MOBIKE &&
		slices.Equal(a.VIPs, b.VIPs) && slices.Equal(a.Pools, b.Pools)
}

// samePubkey compares the public key settings by content: a reload that
// reads a renewed certificate, key or CRL from the same file is a change.
func samePubkey(a, b *Connection) bool {
	if a.LocalAuth != b.LocalAuth || a.RemoteAuth != b.RemoteAuth || a.Revocation != b.Revocation {
		return false
	}
	certs := func(cs []Cert) [][]byte {
		out := make([][]byte, 0, len(cs))
		for _, c := range cs {
			out = append(out, c.X509.Raw)
		}
		return out
	}
	local := make([]Cert, 0, len(a.LocalCerts))
	for _, lc := range a.LocalCerts {
		local = append(local, lc.Cert)
	}
	blocal := make([]Cert, 0, len(b.LocalCerts))
	for _, lc := range b.LocalCerts {
		blocal = append(blocal, lc.Cert)
	}
	keys := func(cs []LocalCert) []string {
		out := make([]string, 0, len(cs))
		for _, c := range cs {
			out = append(out, c.KeyFile)
		}
		return out
	}
	crls := func(cs []CRL) [][]byte {
		out := make([][]byte, 0, len(cs))
		for _, c := range cs {
			out = append(out, c.X509.Raw)
		}
		return out
	}
	eq := func(x, y [][]byte) bool { return slices.EqualFunc(x, y, bytes.Equal) }
	return eq(certs(local), certs(blocal)) && slices.Equal(keys(a.LocalCerts), keys(b.LocalCerts)) &&
		eq(certs(a.Intermediates), certs(b.Intermediates)) && eq(certs(a.CACerts), certs(b.CACerts)) &&
		eq(crls(a.CRLs), crls(b.CRLs))
}

func sameID(a, b Identity) bool {
	return a.Type == b.Type && a.Any == b.Any && bytes.Equal(a.Data, b.Data)
}

func sameChild(a, b *Child) bool {
	return fmt.Sprint(a.LocalTS, a.RemoteTS, a.ESPProposals) == fmt.Sprint(b.LocalTS, b.RemoteTS, b.ESPProposals) &&
		a.StartAction == b.StartAction && a.DPDAction == b.DPDAction && a.CloseAction == b.CloseAction && a.Mode == b.Mode && a.Lifetime == b.Lifetime &&
		a.RandTime == b.RandTime && a.RandBytes == b.RandBytes && a.RandPackets == b.RandPackets &&
		a.ReplayWindow == b.ReplayWindow && a.ReqID == b.ReqID && a.HWOffload == b.HWOffload &&
		a.IfIDIn == b.IfIDIn && a.IfIDOut == b.IfIDOut && a.MarkIn == b.MarkIn && a.MarkOut == b.MarkOut && a.XfrmInterface == b.XfrmInterface &&
		a.Updown == b.Updown
}
