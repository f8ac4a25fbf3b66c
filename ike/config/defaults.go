package config

import (
	"log/slog"
	"time"

	"github.com/keyplane/keyplane/kernelops"
)

// The defaults of the file's settings, in one place: the parser starts
// from these values, and a program that builds a Config in Go starts
// from Defaults, DefaultConnection and DefaultChild, then calls Validate.
// They follow strongSwan's where a setting has a swanctl counterpart.
const (
	DefaultRetransmitTimeout = 4 * time.Second
	DefaultRetransmitBase    = 1.8
	DefaultRetransmitTries   = 5
	DefaultHalfOpenTimeout   = 30 * time.Second
	DefaultBackend           = "nokernel"
	DefaultIKEProposals      = "aes128gcm16-prfsha256-x25519, aes256-sha256-ecp256"
	DefaultESPProposals      = "aes128gcm16, aes256-sha256"
	DefaultIKEPort           = 500
	DefaultNATPort           = 4500
	DefaultChildRekeyTime    = time.Hour
	DefaultReplayWindow      = 32
	DefaultKeyingTries       = 1
	// DefaultIKESocketBuffer holds what arrives while the socket readers
	// wait for the CPU (docs/config.md, daemon.ike_socket_buffer).
	DefaultIKESocketBuffer = 8 << 20
)

// Defaults of the half-open limits (see Daemon): strongSwan's, but for
// InitLimitHalfOpen (charon's 0 is no limit; strongswan.conf(5)
// suggests 1000 for a responder that makes 100 IKE SAs a second).
const (
	DefaultCookieThreshold   = 30
	DefaultCookieThresholdIP = 3
	DefaultBlockThreshold    = 5
	DefaultInitLimitHalfOpen = 1000
	DefaultMaxPacket         = 10000
)

// Defaults returns a configuration with the daemon's and the backend's
// defaults and no connections.
func Defaults() *Config {
	return &Config{
		Daemon: Daemon{
			Control: DefaultControl, LogLevel: slog.LevelInfo,
			RetransmitTimeout: DefaultRetransmitTimeout, RetransmitBase: DefaultRetransmitBase,
			RetransmitTries: DefaultRetransmitTries, CookieThreshold: DefaultCookieThreshold,
			CookieThresholdIP: DefaultCookieThresholdIP, BlockThreshold: DefaultBlockThreshold,
			InitLimitHalfOpen: DefaultInitLimitHalfOpen, MaxPacket: DefaultMaxPacket,
			HalfOpenTimeout: DefaultHalfOpenTimeout,
			ReviveRate:      DefaultReviveRate, ReviveBurst: DefaultReviveBurst,
			DownQueueLimit: DefaultDownQueueLimit, DownQueueMaxAge: DefaultDownQueueMaxAge,
			FragmentSize:    DefaultFragmentSize,
			KeepAlive:       DefaultKeepAlive,
			IKESocketBuffer: DefaultIKESocketBuffer,
		},
		Backend: Backend{Name: DefaultBackend},
	}
}

// DefaultConnection returns a connection with the defaults of every
// setting: %any at both ends, ports 500 and 4500, the default IKE
// proposals, rekey time, no reauthentication, over_time a tenth of the
// rekey time and rand_time over_time (swanctl's defaults), one keying
// try, unique = no, mobike = yes. Its caller sets at least a key, an identity (or a
// local address and LocalID = AddrIdentity of it) and a child; a caller
// that changes RekeyTime or ReauthTime sets OverTime and RandTime too
// (the parser's defaults follow the file's rekey_time and reauth_time).
func DefaultConnection(name string) *Connection {
	props, err := ParseProposals(DefaultIKEProposals, true)
	if err != nil {
		panic("config: default IKE proposals: " + err.Error())
	}
	return &Connection{Name: name, LocalPort: DefaultIKEPort, RemotePort: DefaultIKEPort,
		LocalNATPort: DefaultNATPort, RemoteNATPort: DefaultNATPort, RekeyTime: DefaultIKERekeyTime,
		OverTime: ikeOverTime(DefaultIKERekeyTime, 0), RandTime: ikeOverTime(DefaultIKERekeyTime, 0),
		KeyingTries: DefaultKeyingTries, RemoteID: Identity{Any: true}, Proposals: props, MOBIKE: true}
}

// DefaultChild returns a child with the defaults of every setting:
// dynamic selectors, tunnel mode, the default ESP proposals, rekeyed
// after an hour less a random part of rand_time and expired 10% after
// the hour (swanctl's life_time), rand_time the difference (swanctl's),
// no volume limits, a replay window of 32. A caller that changes a rekey
// limit sets the life limit and rand range that go with it too (the
// parser's defaults follow the file's rekey_* settings).
func DefaultChild(name string) *Child {
	props, err := ParseProposals(DefaultESPProposals, false)
	if err != nil {
		panic("config: default ESP proposals: " + err.Error())
	}
	ch := &Child{Name: name, Mode: kernelops.ModeTunnel, ReplayWindow: DefaultReplayWindow,
		LocalTS: []TS{{Dynamic: true}}, RemoteTS: []TS{{Dynamic: true}}, ESPProposals: props}
	ch.Lifetime.Soft.AddTime = DefaultChildRekeyTime
	ch.Lifetime.Hard.AddTime = lifeAfter(ch.Lifetime.Soft.AddTime)
	ch.RandTime = randRange(ch.Lifetime.Soft.AddTime, ch.Lifetime.Hard.AddTime)
	return ch
}

// lifeAfter is swanctl's default life limit of a child (life_time,
// life_bytes, life_packets): 110% of its rekey limit.
func lifeAfter[T time.Duration | uint64](rekey T) T { return rekey + rekey/10 }

// randRange is swanctl's default rand range of a child (rand_time,
// rand_bytes, rand_packets): its life limit minus its rekey limit, none
// when the life limit is not above it.
func randRange[T time.Duration | uint64](rekey, life T) T {
	if life > rekey {
		return life - rekey
	}
	return 0
}

// ikeOverTime is swanctl's default over_time of an IKE SA (and so its
// default rand_time): a tenth of the longer of rekey_time and
// reauth_time.
func ikeOverTime(rekey, reauth time.Duration) time.Duration { return max(rekey, reauth, 0) / 10 }

// Defaults of the ha { } section (docs/config.md).
const (
	DefaultHALeaseTTL     = 5 * time.Second
	DefaultHASyncPackets  = 1000
	DefaultHASyncInterval = time.Second
)

// DefaultHA returns an ha section with the defaults; Node, Endpoints and
// ClusterKey have none.
func DefaultHA() *HA {
	return &HA{LeaseTTL: DefaultHALeaseTTL, SyncPackets: DefaultHASyncPackets, SyncInterval: DefaultHASyncInterval}
}
