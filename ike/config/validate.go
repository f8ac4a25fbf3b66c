package config

import (
	"fmt"
	"time"

	"github.com/keyplane/keyplane/ike/pki"
	"github.com/keyplane/keyplane/kernelops"
)

// Bounds of the numeric settings, shared by the parser and Validate so a
// file and a Config built in Go get the same errors.
const (
	minRetransmitBase  = 1
	maxRetransmitBase  = 10
	maxRetransmitTries = 20
	maxCookieThreshold = 1 << 20 // also cookie_threshold_ip, block_threshold, init_limit_half_open
	minMaxPacket       = 1280    // IPv6's minimum MTU: an IKE_SA_INIT fits
	maxMaxPacket       = 65535
	minReviveRate      = 0.01
	maxReviveRate      = 1e6
	maxReviveBurst     = 1 << 20
	maxDownQueueLimit  = 1024
	maxReplayWindow    = 4096
	maxFragmentSize    = 65535
	maxKeyingTries     = 1 << 20
	maxIKESocketBuffer = 1 << 30
)

// The wording of the errors both the parser and Validate give; the
// parser quotes the text as written, Validate prints the value.
const (
	wantDuration     = "want a duration such as 30s, 10m, 1h or 1d"
	wantPositiveDur  = "want a duration above zero, such as 30s, 10m, 1h or 1d"
	wantBase         = "want a number from 1 to 10"
	wantReviveRate   = "want liveness checks per second, from 0.01 to 1000000"
	wantPSK          = "no pre-shared key: set psk_file = PATH or psk_env = VARIABLE"
	wantLocalID      = "no local identity: set local.id or local_addrs"
	wantStartAction  = "want none, start or trap"
	wantDPDAction    = "want clear, trap or restart"
	wantCloseAction  = "want none, trap or start"
	wantUnique       = "want no, never, keep or replace"
	wantMode         = "want tunnel or transport"
	wantOffload      = "want no, yes (crypto), crypto, packet or auto"
	wantCleanup      = "want owned or none"
	wantLogFormat    = "want text or json"
	wantLocalCerts   = "auth = pubkey needs certs = FILE (the certificate, and its intermediate CAs)"
	wantCACerts      = "auth = pubkey needs cacerts = FILE (the CAs that issue the peer's certificate)"
	wantSocketBuffer = "want bytes from 0 (the OS default) to 1G, such as 16M"
)

func wantWhole(lo, hi uint64) string { return fmt.Sprintf("want a whole number from %d to %d", lo, hi) }

// Validate checks a configuration built in Go (from Defaults,
// DefaultConnection and DefaultChild) as the parser checks a file, with
// the same errors: every setting in range, every connection complete
// (a key, an identity, proposals, at least one child) and coherent
// (address families, NAT port, start actions). It returns Errors listing
// everything wrong, or nil. Parse calls it too.
func (c *Config) Validate() error { return c.ValidateWith(ValidateOptions{}) }

// ValidateOptions relax Validate for what a program supplies outside
// the configuration.
type ValidateOptions struct {
	// ExternalPSK: a connection that authenticates with a pre-shared key
	// needs none in the configuration (the engine asks the program's
	// ike.Credentials for it).
	ExternalPSK bool
	// ExternalCerts: a connection that authenticates with pubkey needs
	// no local.certs (local.auth) and no remote.cacerts (remote.auth) in
	// the configuration (the engine asks the program's
	// ike.CertCredentials for them).
	ExternalCerts bool
}

// ValidateWith is Validate with options.
func (c *Config) ValidateWith(o ValidateOptions) error {
	var errs []*Error
	c.validate(func(line int, conn, child, field, msg string) {
		if o.ExternalPSK && field == "psk_file" && msg == wantPSK {
			return
		}
		if o.ExternalCerts && (field == "local.certs" && msg == wantLocalCerts || field == "remote.cacerts" && msg == wantCACerts) {
			return
		}
		if len(errs) < MaxErrors {
			errs = append(errs, &Error{File: c.File, Line: line, Conn: conn, Child: child, Field: field, Msg: msg})
		}
	})
	if len(errs) == 0 {
		return nil
	}
	sortErrors(errs)
	return Errors(errs)
}

// validate reports each problem to add, with the line of the connection
// or child it belongs to (0 for a Config built in Go).
func (c *Config) validate(add func(line int, conn, child, field, msg string)) {
	d := &c.Daemon
	daemon := func(field, format string, args ...any) { add(0, "", "", "daemon."+field, fmt.Sprintf(format, args...)) }
	c.HA.validate(func(field, msg string) { add(0, "", "", "ha."+field, msg) })
	if d.Control == "" {
		daemon("control", "empty path")
	}
	if d.RetransmitTimeout <= 0 {
		daemon("retransmit_timeout", "%s: %s", d.RetransmitTimeout, wantPositiveDur)
	}
	if !(d.RetransmitBase >= minRetransmitBase && d.RetransmitBase <= maxRetransmitBase) {
		daemon("retransmit_base", "%v: %s", d.RetransmitBase, wantBase)
	}
	if d.RetransmitTries < 0 || d.RetransmitTries > maxRetransmitTries {
		daemon("retransmit_tries", "%d: %s", d.RetransmitTries, wantWhole(0, maxRetransmitTries))
	}
	if d.CookieThreshold < 0 || d.CookieThreshold > maxCookieThreshold {
		daemon("cookie_threshold", "%d: %s", d.CookieThreshold, wantWhole(0, maxCookieThreshold))
	}
	for _, l := range []struct {
		field string
		n     int
	}{
		{"cookie_threshold_ip", d.CookieThresholdIP},
		{"block_threshold", d.BlockThreshold},
		{"init_limit_half_open", d.InitLimitHalfOpen},
	} {
		if l.n < 0 || l.n > maxCookieThreshold {
			daemon(l.field, "%d: %s", l.n, wantWhole(0, maxCookieThreshold))
		}
	}
	if d.MaxPacket < minMaxPacket || d.MaxPacket > maxMaxPacket {
		daemon("max_packet", "%d: %s", d.MaxPacket, wantWhole(minMaxPacket, maxMaxPacket))
	}
	if d.HalfOpenTimeout <= 0 {
		// Zero would remove every half-open IKE SA at once.
		daemon("half_open_timeout", "%s: %s", d.HalfOpenTimeout, wantPositiveDur)
	}
	if !(d.ReviveRate >= minReviveRate && d.ReviveRate <= maxReviveRate) {
		daemon("revive_rate", "%v: %s", d.ReviveRate, wantReviveRate)
	}
	if d.ReviveBurst < 1 || d.ReviveBurst > maxReviveBurst {
		daemon("revive_burst", "%d: %s", d.ReviveBurst, wantWhole(1, maxReviveBurst))
	}
	if d.DownQueueLimit < 0 || d.DownQueueLimit > maxDownQueueLimit {
		daemon("down_queue_limit", "%d: %s", d.DownQueueLimit, wantWhole(0, maxDownQueueLimit))
	}
	if d.DownQueueMaxAge <= 0 {
		daemon("down_queue_max_age", "%s: %s", d.DownQueueMaxAge, wantPositiveDur)
	}
	if d.DownTimeout < 0 {
		daemon("down_timeout", "%s: %s", d.DownTimeout, wantDuration)
	}
	if d.KeepAlive < 0 {
		daemon("keep_alive", "%s: %s", d.KeepAlive, wantDuration)
	}
	if d.IKESocketBuffer < 0 || d.IKESocketBuffer > maxIKESocketBuffer {
		daemon("ike_socket_buffer", "%d: %s", d.IKESocketBuffer, wantSocketBuffer)
	}
	if d.LogFormat > LogJSON {
		daemon("log_format", "%d: %s", d.LogFormat, wantLogFormat)
	}
	if d.Metrics.IsValid() && d.Metrics.Port() == 0 {
		daemon("metrics", "%s: %s", d.Metrics, wantMetrics)
	}
	if f := d.FragmentSize; f != 0 && (f < MinFragmentSize || f > maxFragmentSize) {
		daemon("fragment_size", "%d: want %d to %d (or 0 for the address family's default)", f, MinFragmentSize, maxFragmentSize)
	}
	if c.Backend.Name == "" {
		add(0, "", "", "backend.name", "empty")
	}
	if c.Backend.Cleanup > CleanupNone {
		add(0, "", "", "backend.cleanup", fmt.Sprintf("%d: %s", c.Backend.Cleanup, wantCleanup))
	}
	conns := map[string]bool{}
	children := map[string]string{}
	for _, conn := range c.Connections {
		if conn == nil {
			add(0, "", "", "connections", "a nil connection")
			continue
		}
		if conns[conn.Name] {
			add(conn.Line, conn.Name, "", "", "the connection name is used twice")
		}
		conns[conn.Name] = true
		conn.validate(add)
		for _, ch := range conn.Children {
			if ch == nil {
				continue
			}
			if other, dup := children[ch.Name]; dup {
				add(ch.Line, conn.Name, "", "children", fmt.Sprintf("child name %q is already used by connection %s (child names are unique)", ch.Name, other))
				continue
			}
			children[ch.Name] = conn.Name
		}
	}
	c.validateXfrmInterfaces(add)
	c.validatePools(add)
}

func (c *Connection) validate(add func(line int, conn, child, field, msg string)) {
	bad := func(field, format string, args ...any) { add(c.Line, c.Name, "", field, fmt.Sprintf(format, args...)) }
	if c.Name == "" {
		bad("", "a connection without a name")
	}
	for _, p := range []struct {
		field string
		port  uint16
	}{{"local_port", c.LocalPort}, {"remote_port", c.RemotePort}, {"local_port_nat", c.LocalNATPort}, {"remote_port_nat", c.RemoteNATPort}} {
		if p.port == 0 {
			bad(p.field, "0: %s", wantWhole(1, 65535))
		}
	}
	if c.LocalPort != 0 && c.LocalPort == c.LocalNATPort {
		bad("local_port_nat", "%d is also local_port; set local_port_nat to another port", c.LocalNATPort)
	}
	if c.LocalAddr.IsValid() && c.RemoteAddr.IsValid() && c.LocalAddr.Is4() != c.RemoteAddr.Is4() {
		bad("remote_addrs", "%s and local address %s are of different families", c.RemoteAddr, c.LocalAddr)
	}
	if len(c.Proposals) == 0 {
		bad("proposals", "empty: want at least one proposal")
	}
	if len(c.PSK) == 0 && (c.LocalAuth == AuthPSK || c.RemoteAuth == AuthPSK) {
		bad("psk_file", wantPSK)
	}
	c.validatePubkey(bad)
	switch {
	case c.LocalID.Any:
		bad("local.id", "the local identity cannot be %%any")
	case c.LocalID.Type == 0:
		bad("local.id", wantLocalID)
	}
	if c.RekeyTime < 0 {
		bad("rekey_time", "%s: %s", c.RekeyTime, wantDuration)
	}
	if c.RandTime < 0 {
		bad("rand_time", "%s: %s", c.RandTime, wantDuration)
	}
	if c.DPDDelay < 0 {
		bad("dpd_delay", "%s: %s", c.DPDDelay, wantDuration)
	}
	if c.ReauthTime < 0 {
		bad("reauth_time", "%s: %s", c.ReauthTime, wantDuration)
	}
	if c.OverTime < 0 {
		bad("over_time", "%s: %s", c.OverTime, wantDuration)
	}
	if c.KeyingTries < 0 || c.KeyingTries > maxKeyingTries {
		bad("keyingtries", "%d: %s", c.KeyingTries, wantWhole(0, maxKeyingTries))
	}
	if c.Unique > UniqueReplace {
		bad("unique", "%d: %s", c.Unique, wantUnique)
	}
	if len(c.Children) == 0 {
		bad("children", "a connection needs at least one child")
	}
	for _, ch := range c.Children {
		if ch == nil {
			bad("children", "a nil child")
			continue
		}
		ch.validate(c, add)
	}
}

func (ch *Child) validate(c *Connection, add func(line int, conn, child, field, msg string)) {
	bad := func(field, format string, args ...any) {
		add(ch.Line, c.Name, ch.Name, field, fmt.Sprintf(format, args...))
	}
	if ch.Name == "" {
		bad("", "a child without a name")
	}
	if len(ch.LocalTS) == 0 {
		bad("local_ts", "empty: want at least one traffic selector")
	}
	if len(ch.RemoteTS) == 0 {
		bad("remote_ts", "empty: want at least one traffic selector")
	}
	if len(ch.ESPProposals) == 0 {
		bad("esp_proposals", "empty: want at least one proposal")
	}
	if ch.StartAction > StartTrap {
		bad("start_action", "%d: %s", ch.StartAction, wantStartAction)
	}
	if ch.Mode != kernelops.ModeTunnel && ch.Mode != kernelops.ModeTransport {
		bad("mode", "%s: %s", ch.Mode, wantMode)
	}
	if ch.HWOffload > kernelops.OffloadAuto {
		bad("hw_offload", "%d: %s", ch.HWOffload, wantOffload)
	}
	for _, m := range []struct {
		field string
		m     kernelops.Mark
	}{{"mark_in", ch.MarkIn}, {"mark_out", ch.MarkOut}} {
		if m.m.Value&^m.m.Mask != 0 {
			bad(m.field, "%s: the value has bits outside the mask; %s", m.m, wantMark)
		}
	}
	ch.validateXfrmInterface(bad)
	if ch.ReplayWindow > maxReplayWindow {
		bad("replay_window", "%d: %s", ch.ReplayWindow, wantWhole(0, maxReplayWindow))
	}
	life := ch.Lifetime
	for _, d := range []struct {
		field string
		v     time.Duration
	}{{"rekey_time", life.Soft.AddTime}, {"life_time", life.Hard.AddTime}, {"rand_time", ch.RandTime}} {
		if d.v < 0 {
			bad(d.field, "%s: %s", d.v, wantDuration)
		}
	}
	if s, h := life.Soft.AddTime, life.Hard.AddTime; s > 0 && h > 0 && s >= h {
		bad("rekey_time", "rekey time %s must be below the life time %s", s, h)
	}
	check := func(field string, soft, hard uint64) {
		if soft != 0 && hard != 0 && soft >= hard {
			bad(field, "rekey limit %d must be below the life limit %d", soft, hard)
		}
	}
	check("rekey_bytes", life.Soft.Bytes, life.Hard.Bytes)
	check("rekey_packets", life.Soft.Packets, life.Hard.Packets)
	if ch.DPDAction > DPDRestart {
		bad("dpd_action", "%d: %s", ch.DPDAction, wantDPDAction)
	}
	if ch.CloseAction > CloseStart {
		bad("close_action", "%d: %s", ch.CloseAction, wantCloseAction)
	}
	// Whatever initiates the child, or traps for it, needs the peer's
	// address (and for a trap with dynamic selectors, ours).
	for _, x := range []struct {
		field     string
		set, trap bool
		name      string
	}{
		{"start_action", ch.StartAction != StartNone && ch.StartAction <= StartTrap, ch.StartAction == StartTrap, ch.StartAction.String()},
		{"dpd_action", ch.DPDAction != DPDClear && ch.DPDAction <= DPDRestart, ch.DPDAction == DPDTrap, ch.DPDAction.String()},
		{"close_action", ch.CloseAction != CloseNone && ch.CloseAction <= CloseStart, ch.CloseAction == CloseTrap, ch.CloseAction.String()},
	} {
		if x.set && !c.RemoteAddr.IsValid() {
			bad(x.field, "%s needs a remote address (remote_addrs is %%any)", x.name)
		}
		if x.trap && !c.LocalAddr.IsValid() {
			for _, t := range append(append([]TS(nil), ch.LocalTS...), ch.RemoteTS...) {
				if t.Dynamic {
					bad("local_ts", "%s = trap with dynamic selectors needs local_addrs", x.field)
					break
				}
			}
		}
	}
	fam := func(field string, ts []TS) {
		for _, t := range ts {
			if !t.Dynamic && c.RemoteAddr.IsValid() && ch.Mode == kernelops.ModeTransport && t.Prefix.Addr().Is4() != c.RemoteAddr.Is4() {
				bad(field, "%s: transport mode selectors must be of the IKE addresses' family", t)
			}
		}
	}
	fam("local_ts", ch.LocalTS)
	fam("remote_ts", ch.RemoteTS)
}

// validatePubkey checks the public key settings: an end that
// authenticates with pubkey has what it needs (a certificate with its
// key; CAs and the trust store made of them).
func (c *Connection) validatePubkey(bad func(field, format string, args ...any)) {
	for _, a := range []struct {
		field string
		auth  Auth
	}{{"local.auth", c.LocalAuth}, {"remote.auth", c.RemoteAuth}} {
		if a.auth > AuthPubkey {
			bad(a.field, "%d: want psk or pubkey", a.auth)
		}
	}
	if c.LocalAuth == AuthPubkey {
		if len(c.LocalCerts) == 0 {
			bad("local.certs", wantLocalCerts)
		}
		for _, lc := range c.LocalCerts {
			if lc.X509 == nil || lc.Key == nil {
				bad("local.certs", "%s: a certificate without its private key", lc.File)
			}
		}
	}
	if c.RemoteAuth == AuthPubkey {
		switch {
		case len(c.CACerts) == 0:
			bad("remote.cacerts", wantCACerts)
		case c.Trust == nil:
			bad("remote.cacerts", "no trust store: build Trust from the CA certificates and CRLs (pki.NewStore)")
		}
		if c.Revocation > pki.RevocationStrict {
			bad("remote.revocation", "%s: want strict, ifuri or relaxed", c.Revocation)
		}
	}
	if c.Fragmentation > FragNo {
		bad("fragmentation", "%d: want yes, accept, force or no", c.Fragmentation)
	}
}
