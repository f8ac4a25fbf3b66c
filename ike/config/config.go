// Package config reads keyplane's configuration file: the daemon's
// settings, the dataplane backend, and the IKE connections with their
// children. The syntax is strongSwan's (swanctl.conf); docs/config.md
// describes every setting and why this format was chosen.
//
// Validation is done once, at load: a *Error names the file, the line, the
// connection, the child and the setting that is wrong. Pre-shared keys are
// read from a file or an environment variable, never written in the file,
// and never printed (they are ikecrypto.Key).
package config

import (
	"bytes"
	"errors"
	"fmt"
	"log/slog"
	"net/netip"
	"os"
	"path/filepath"
	"slices"
	"strconv"
	"strings"
	"time"

	"github.com/keyplane/keyplane/ike/ikecrypto"
	"github.com/keyplane/keyplane/internal/secretfile"
	"github.com/keyplane/keyplane/kernelops"
)

// Config is a whole configuration file.
type Config struct {
	File        string
	Daemon      Daemon
	Backend     Backend
	Connections []*Connection
	// Warnings are what the file may mean but probably should not (a
	// short pre-shared key): the daemon logs them at load and reload.
	Warnings []*Error
}

// DefaultControl is the control socket's default path.
const DefaultControl = "/run/keyplane/keyplane.sock"

// Daemon holds engine-wide settings.
type Daemon struct {
	Control  string     // control socket path
	LogLevel slog.Level // debug, info, warn, error
	// Retransmission of requests: the first after RetransmitTimeout, each
	// next one RetransmitBase times later, giving up after RetransmitTries
	// retransmissions (strongSwan's defaults: 4s, 1.8, 5).
	RetransmitTimeout time.Duration
	RetransmitBase    float64
	RetransmitTries   int
	// CookieThreshold is the number of half-open IKE SAs from which a
	// responder demands a COOKIE (RFC 7296 §2.6); 0 never.
	CookieThreshold int
	// HalfOpenTimeout removes a responder IKE SA that never completes
	// IKE_AUTH.
	HalfOpenTimeout time.Duration
	// When a link (or an address) that IKE SAs use comes back, each of
	// them is revived with one liveness check, paced by a token bucket:
	// ReviveBurst at once, then ReviveRate per second, whatever the
	// number of SAs on the link.
	ReviveRate  float64
	ReviveBurst int
	// While an IKE SA's link is down, requests it would send (the delete
	// notification of a child whose hard lifetime ran out) are held, at
	// most DownQueueLimit per IKE SA (the oldest go first); those older
	// than DownQueueMaxAge when the link returns are dropped unsent.
	DownQueueLimit  int
	DownQueueMaxAge time.Duration
}

// Defaults of the link-awareness settings (see Daemon).
const (
	DefaultReviveRate      = 100
	DefaultReviveBurst     = 10
	DefaultDownQueueLimit  = 16
	DefaultDownQueueMaxAge = 2 * time.Minute
)

// Backend is the dataplane to open (kernelops.Open).
type Backend struct {
	Name   string
	Params map[string]string
	// Cleanup says what the daemon removes from the dataplane at start
	// (what an earlier run left, e.g. after a crash) and at stop.
	Cleanup Cleanup
}

// Cleanup is backend.cleanup.
type Cleanup uint8

const (
	// CleanupOwned (the default) removes every SA and policy in
	// keyplane's own reqid range (kernelops.Options.ReqIDMin..ReqIDMax),
	// never anyone else's.
	CleanupOwned Cleanup = iota
	// CleanupNone leaves the dataplane as it is.
	CleanupNone
)

func (c Cleanup) String() string {
	if c == CleanupNone {
		return "none"
	}
	return "owned"
}

// Connection is one IKE peer configuration.
type Connection struct {
	Name string
	Line int
	// LocalAddr and RemoteAddr: an invalid address means %any (listen on
	// all addresses; accept any peer, never initiate).
	LocalAddr, RemoteAddr       netip.Addr
	LocalPort, RemotePort       uint16
	LocalNATPort, RemoteNATPort uint16
	LocalID, RemoteID           Identity
	PSK                         ikecrypto.Key `json:"-"`
	PSKSource                   string        // "file PATH" or "env NAME", for humans
	Proposals                   []Proposal
	Encap                       bool          // force UDP encapsulation of ESP
	DPDDelay                    time.Duration // liveness check interval; 0 none
	// RekeyTime is how long an IKE SA lives before it is rekeyed
	// (CREATE_CHILD_SA, RFC 7296 §2.18); 0 never.
	RekeyTime time.Duration
	// RandTime is the range of a random time subtracted from RekeyTime
	// (swanctl's rand_time; its default is swanctl's over_time default,
	// a tenth of rekey_time), so both ends rarely rekey at once.
	RandTime time.Duration
	Children []*Child
}

// StartAction says what the daemon does with a child at start.
type StartAction uint8

const (
	StartNone  StartAction = iota // wait for the peer or a command
	StartStart                    // initiate at once
	StartTrap                     // install trap policies; initiate on traffic
)

func (a StartAction) String() string {
	switch a {
	case StartStart:
		return "start"
	case StartTrap:
		return "trap"
	}
	return "none"
}

// MarshalText writes the action's name.
func (a StartAction) MarshalText() ([]byte, error) { return []byte(a.String()), nil }

// Child is one CHILD_SA configuration.
type Child struct {
	Name         string
	Line         int
	LocalTS      []TS
	RemoteTS     []TS
	ESPProposals []Proposal
	StartAction  StartAction
	Mode         kernelops.Mode
	// Lifetime is the configured soft (rekey_*) and hard (life_*)
	// limits; each child subtracts a random part of RandTime, RandBytes
	// and RandPackets from the soft ones (swanctl's rand_time, rand_bytes,
	// rand_packets; by default the life limit minus the rekey limit).
	Lifetime     kernelops.Lifetimes
	RandTime     time.Duration
	RandBytes    uint64
	RandPackets  uint64
	ReplayWindow uint32
	// ReqID ties the child's SAs and policies together in the dataplane;
	// 0 lets the engine assign one.
	ReqID uint32
}

// Error is a validation error: where and what.
type Error struct {
	File  string
	Line  int
	Conn  string
	Child string
	Field string
	Msg   string
	Err   error // the cause, when another package's error (errors.Is/As)
}

func (e *Error) Unwrap() error { return e.Err }

func (e *Error) Error() string {
	var b strings.Builder
	b.WriteString(e.File)
	if e.Line > 0 {
		fmt.Fprintf(&b, ":%d", e.Line)
	}
	b.WriteString(": ")
	if e.Conn != "" {
		fmt.Fprintf(&b, "connection %s: ", e.Conn)
	}
	if e.Child != "" {
		fmt.Fprintf(&b, "child %s: ", e.Child)
	}
	if e.Field != "" {
		fmt.Fprintf(&b, "%s: ", e.Field)
	}
	b.WriteString(e.Msg)
	return b.String()
}

// Options are where Parse finds secrets. Nil fields use the process
// environment and the file system: relative paths from the file's
// directory, read by secretfile.Read (a regular file of at most 64 KiB
// that group and others cannot access).
type Options struct {
	Getenv   func(string) (string, bool)
	ReadFile func(string) ([]byte, error)
}

// Load reads and validates a configuration file.
func Load(path string) (*Config, error) {
	src, err := os.ReadFile(path)
	if err != nil {
		return nil, err
	}
	return Parse(path, src, Options{})
}

// Parse validates a configuration read from file (the name in errors).
func Parse(file string, src []byte, o Options) (*Config, error) {
	if o.Getenv == nil {
		o.Getenv = os.LookupEnv
	}
	if o.ReadFile == nil {
		dir := filepath.Dir(file)
		o.ReadFile = func(p string) ([]byte, error) {
			if !filepath.IsAbs(p) {
				p = filepath.Join(dir, p)
			}
			return secretfile.Read(p, secretfile.Options{})
		}
	}
	root, err := parseSyntax(src)
	if err != nil {
		var se *syntaxError
		if errors.As(err, &se) {
			return nil, &Error{File: file, Line: se.line, Msg: se.msg}
		}
		return nil, err
	}
	b := &builder{file: file, o: o}
	cfg := b.build(root)
	if b.err != nil {
		return nil, b.err
	}
	cfg.Warnings = b.warnings
	return cfg, nil
}

// builder turns the section tree into a Config, stopping at the first
// error.
type builder struct {
	file        string
	o           Options
	err         error
	warnings    []*Error
	conn, child string
}

func (b *builder) warn(line int, field, format string, args ...any) {
	b.warnings = append(b.warnings, &Error{File: b.file, Line: line, Conn: b.conn, Child: b.child, Field: field, Msg: fmt.Sprintf(format, args...)})
}

func (b *builder) fail(line int, field, format string, args ...any) {
	if b.err == nil {
		b.err = &Error{File: b.file, Line: line, Conn: b.conn, Child: b.child, Field: field, Msg: fmt.Sprintf(format, args...)}
	}
}

// known rejects settings and sections a section does not take, so a typo
// is an error rather than a silently ignored line.
func (b *builder) known(s *section, keys []string, subs []string) {
	for _, kv := range s.settings {
		if !slices.Contains(keys, kv.key) {
			b.fail(kv.line, kv.key, "unknown setting (known here: %s)", strings.Join(keys, ", "))
		}
	}
	for _, c := range s.sections {
		if !slices.Contains(subs, c.name) {
			what := "no subsections"
			if len(subs) > 0 {
				what = "subsections: " + strings.Join(subs, ", ")
			}
			b.fail(c.line, c.name, "unknown section (%s)", what)
		}
	}
}

func (b *builder) build(root *section) *Config {
	cfg := &Config{File: b.file, Daemon: Daemon{
		Control: DefaultControl, LogLevel: slog.LevelInfo,
		RetransmitTimeout: 4 * time.Second, RetransmitBase: 1.8, RetransmitTries: 5,
		CookieThreshold: 10, HalfOpenTimeout: 30 * time.Second,
		ReviveRate: DefaultReviveRate, ReviveBurst: DefaultReviveBurst,
		DownQueueLimit: DefaultDownQueueLimit, DownQueueMaxAge: DefaultDownQueueMaxAge,
	}, Backend: Backend{Name: "nokernel"}}
	b.known(root, nil, []string{"daemon", "backend", "connections"})
	if d := root.sub("daemon"); d != nil {
		b.daemon(d, &cfg.Daemon)
	}
	if s := root.sub("backend"); s != nil {
		b.known(s, []string{"name", "cleanup"}, []string{"params"})
		if kv, ok := s.get("name"); ok {
			if kv.value == "" {
				b.fail(kv.line, "backend.name", "empty")
			}
			cfg.Backend.Name = kv.value
		}
		if kv, ok := s.get("cleanup"); ok {
			switch kv.value {
			case "owned":
				cfg.Backend.Cleanup = CleanupOwned
			case "none":
				cfg.Backend.Cleanup = CleanupNone
			default:
				b.fail(kv.line, "backend.cleanup", "%q: want owned or none", kv.value)
			}
		}
		if p := s.sub("params"); p != nil {
			cfg.Backend.Params = map[string]string{}
			for _, kv := range p.settings {
				cfg.Backend.Params[kv.key] = kv.value
			}
			for _, c := range p.sections {
				b.fail(c.line, "backend.params."+c.name, "parameters are key = value settings")
			}
		}
	}
	if cs := root.sub("connections"); cs != nil {
		for _, kv := range cs.settings {
			b.fail(kv.line, kv.key, "connections holds sections (name { ... }), not settings")
		}
		children := map[string]string{}
		for _, s := range cs.sections {
			c := b.connection(s)
			if b.err != nil {
				return nil
			}
			for _, ch := range c.Children {
				if other, dup := children[ch.Name]; dup {
					b.conn = c.Name
					b.fail(ch.Line, "children", "child name %q is already used by connection %s (child names are unique)", ch.Name, other)
					return nil
				}
				children[ch.Name] = c.Name
			}
			cfg.Connections = append(cfg.Connections, c)
		}
	}
	if b.err != nil {
		return nil
	}
	return cfg
}

func (b *builder) daemon(s *section, d *Daemon) {
	b.known(s, []string{"control", "log_level", "retransmit_timeout", "retransmit_base",
		"retransmit_tries", "cookie_threshold", "half_open_timeout", "revive_rate", "revive_burst",
		"down_queue_limit", "down_queue_max_age"}, nil)
	for _, kv := range s.settings {
		field := "daemon." + kv.key
		switch kv.key {
		case "control":
			if kv.value == "" {
				b.fail(kv.line, field, "empty path")
			}
			d.Control = kv.value
		case "log_level":
			if err := d.LogLevel.UnmarshalText([]byte(kv.value)); err != nil {
				b.fail(kv.line, field, "%q: want debug, info, warn or error", kv.value)
			}
		case "retransmit_timeout":
			d.RetransmitTimeout = b.duration(kv, field, true)
		case "half_open_timeout":
			d.HalfOpenTimeout = b.duration(kv, field, true)
		case "retransmit_base":
			f, err := strconv.ParseFloat(kv.value, 64)
			if err != nil || f < 1 || f > 10 {
				b.fail(kv.line, field, "%q: want a number from 1 to 10", kv.value)
			}
			d.RetransmitBase = f
		case "retransmit_tries":
			d.RetransmitTries = int(b.uint(kv, field, 0, 20))
		case "cookie_threshold":
			d.CookieThreshold = int(b.uint(kv, field, 0, 1<<20))
		case "revive_rate":
			f, err := strconv.ParseFloat(kv.value, 64)
			if err != nil || !(f >= 0.01 && f <= 1e6) {
				b.fail(kv.line, field, "%q: want liveness checks per second, from 0.01 to 1000000", kv.value)
			}
			d.ReviveRate = f
		case "revive_burst":
			d.ReviveBurst = int(b.uint(kv, field, 1, 1<<20))
		case "down_queue_limit":
			d.DownQueueLimit = int(b.uint(kv, field, 0, 1024))
		case "down_queue_max_age":
			d.DownQueueMaxAge = b.duration(kv, field, true)
		}
	}
}

func (b *builder) duration(kv setting, field string, positive bool) time.Duration {
	d, err := parseDuration(kv.value)
	if err != nil || d < 0 || (positive && d == 0) {
		b.fail(kv.line, field, "%q: want a duration such as 30s, 10m, 1h or 1d", kv.value)
	}
	return d
}

// parseDuration takes Go durations and strongSwan's forms (plain seconds,
// or a number with s, m, h or d).
func parseDuration(s string) (time.Duration, error) {
	if n, err := strconv.ParseUint(s, 10, 32); err == nil {
		return time.Duration(n) * time.Second, nil
	}
	if v, ok := strings.CutSuffix(s, "d"); ok {
		n, err := strconv.ParseUint(v, 10, 16)
		if err != nil {
			return 0, err
		}
		return time.Duration(n) * 24 * time.Hour, nil
	}
	return time.ParseDuration(s)
}

func (b *builder) uint(kv setting, field string, lo, hi uint64) uint64 {
	n, err := strconv.ParseUint(kv.value, 10, 64)
	if err != nil || n < lo || n > hi {
		b.fail(kv.line, field, "%q: want a whole number from %d to %d", kv.value, lo, hi)
	}
	return n
}

// count reads a byte or packet count with an optional k/M/G suffix.
func (b *builder) count(kv setting, field string) uint64 {
	v, mul := kv.value, uint64(1)
	switch {
	case strings.HasSuffix(v, "k"), strings.HasSuffix(v, "K"):
		v, mul = v[:len(v)-1], 1<<10
	case strings.HasSuffix(v, "M"):
		v, mul = v[:len(v)-1], 1<<20
	case strings.HasSuffix(v, "G"):
		v, mul = v[:len(v)-1], 1<<30
	}
	n, err := strconv.ParseUint(v, 10, 64)
	if err != nil || n > (1<<63)/mul {
		b.fail(kv.line, field, "%q: want a count such as 1000, 64k, 512M or 2G", kv.value)
	}
	return n * mul
}

func (b *builder) port(kv setting, field string) uint16 {
	return uint16(b.uint(kv, field, 1, 65535))
}

func (b *builder) bool(kv setting, field string) bool {
	switch strings.ToLower(kv.value) {
	case "yes", "true", "1":
		return true
	case "no", "false", "0":
		return false
	}
	b.fail(kv.line, field, "%q: want yes or no", kv.value)
	return false
}

func (b *builder) addr(kv setting, field string) netip.Addr {
	if kv.value == "%any" || kv.value == "" {
		return netip.Addr{}
	}
	if strings.Contains(kv.value, ",") {
		b.fail(kv.line, field, "%q: one address per connection (lists are not supported)", kv.value)
		return netip.Addr{}
	}
	a, err := netip.ParseAddr(kv.value)
	if err != nil || a.Zone() != "" || a.IsUnspecified() {
		b.fail(kv.line, field, "%q: want an IPv4 or IPv6 address, or %%any", kv.value)
	}
	return a.Unmap()
}

var connKeys = []string{"local_addrs", "remote_addrs", "local_port", "remote_port", "local_port_nat",
	"remote_port_nat", "proposals", "psk_file", "psk_env", "encap", "dpd_delay", "rekey_time", "rand_time"}

// DefaultIKERekeyTime is an IKE SA's rekey_time when none is set:
// strongSwan's default, so both ends of a default pair agree.
const DefaultIKERekeyTime = 4 * time.Hour

func (b *builder) connection(s *section) *Connection {
	b.conn, b.child = s.name, ""
	c := &Connection{Name: s.name, Line: s.line, LocalPort: 500, RemotePort: 500,
		LocalNATPort: 4500, RemoteNATPort: 4500, RekeyTime: DefaultIKERekeyTime}
	b.known(s, connKeys, []string{"local", "remote", "children"})
	proposals := "aes128gcm16-prfsha256-x25519, aes256-sha256-ecp256"
	propLine := s.line
	natSet := map[string]bool{}
	randSet := false
	for _, kv := range s.settings {
		switch kv.key {
		case "local_addrs":
			c.LocalAddr = b.addr(kv, kv.key)
		case "remote_addrs":
			c.RemoteAddr = b.addr(kv, kv.key)
		case "local_port":
			c.LocalPort = b.port(kv, kv.key)
		case "remote_port":
			c.RemotePort = b.port(kv, kv.key)
		case "local_port_nat":
			c.LocalNATPort = b.port(kv, kv.key)
			natSet["local"] = true
		case "remote_port_nat":
			c.RemoteNATPort = b.port(kv, kv.key)
			natSet["remote"] = true
		case "proposals":
			proposals, propLine = kv.value, kv.line
		case "encap":
			c.Encap = b.bool(kv, kv.key)
		case "dpd_delay":
			c.DPDDelay = b.duration(kv, kv.key, false)
		case "rekey_time":
			c.RekeyTime = b.duration(kv, kv.key, false)
		case "rand_time":
			c.RandTime = b.duration(kv, kv.key, false)
			randSet = true
		}
	}
	if !randSet {
		// swanctl: rand_time defaults to over_time, which defaults to a
		// tenth of rekey_time.
		c.RandTime = c.RekeyTime / 10
	}
	if c.LocalPort == c.LocalNATPort {
		b.fail(s.line, "local_port_nat", "%d is also local_port; set local_port_nat to another port", c.LocalNATPort)
	}
	if c.LocalAddr.IsValid() && c.RemoteAddr.IsValid() && c.LocalAddr.Is4() != c.RemoteAddr.Is4() {
		b.fail(s.line, "remote_addrs", "%s and local address %s are of different families", c.RemoteAddr, c.LocalAddr)
	}
	var err error
	if c.Proposals, err = ParseProposals(proposals, true); err != nil {
		b.fail(propLine, "proposals", "%v", err)
	}
	b.psk(s, c)
	b.ends(s, c)
	if ch := s.sub("children"); ch != nil {
		for _, kv := range ch.settings {
			b.fail(kv.line, kv.key, "children holds sections (name { ... }), not settings")
		}
		for _, cs := range ch.sections {
			c.Children = append(c.Children, b.childConf(cs, c))
		}
	}
	if len(c.Children) == 0 {
		b.fail(s.line, "children", "a connection needs at least one child")
	}
	return c
}

func (b *builder) psk(s *section, c *Connection) {
	file, hasFile := s.get("psk_file")
	env, hasEnv := s.get("psk_env")
	switch {
	case hasFile && hasEnv:
		b.fail(env.line, "psk_env", "give psk_file or psk_env, not both")
	case hasFile:
		data, err := b.o.ReadFile(file.value)
		if err != nil {
			b.fail(file.line, "psk_file", "%v", err)
			b.err.(*Error).Err = err
			return
		}
		// The key keeps the file's buffer: no copy of it is left behind.
		c.PSK = ikecrypto.Key(bytes.TrimRight(data, "\r\n"))
		c.PSKSource = "file " + file.value
		if len(c.PSK) == 0 {
			b.fail(file.line, "psk_file", "%s is empty", file.value)
		}
		b.shortPSK(file.line, "psk_file", c)
	case hasEnv:
		v, ok := b.o.Getenv(env.value)
		if !ok || v == "" {
			b.fail(env.line, "psk_env", "environment variable %s is unset or empty", env.value)
			return
		}
		c.PSK = ikecrypto.Key(v)
		c.PSKSource = "env " + env.value
		b.shortPSK(env.line, "psk_env", c)
	default:
		b.fail(s.line, "psk_file", "no pre-shared key: set psk_file = PATH or psk_env = VARIABLE")
	}
}

// MinPSKLen is the pre-shared key length below which the file gets a
// warning: 16 bytes, 128 bits at best, and usually far less (RFC 7296
// §2.15 warns that a PSK with less entropy than the keys it protects is
// open to an offline dictionary attack).
const MinPSKLen = 16

func (b *builder) shortPSK(line int, field string, c *Connection) {
	if n := len(c.PSK); n > 0 && n < MinPSKLen {
		b.warn(line, field, "the pre-shared key is %d bytes, shorter than %d: use a long random key (e.g. openssl rand -hex 32)", n, MinPSKLen)
	}
}

// Wipe overwrites every connection's pre-shared key with zeros: for a
// configuration the daemon discards (a refused reload, or at exit).
func (c *Config) Wipe() {
	if c == nil {
		return
	}
	for _, conn := range c.Connections {
		conn.PSK.Zero()
	}
}

func (b *builder) ends(s *section, c *Connection) {
	c.RemoteID = Identity{Any: true}
	if c.LocalAddr.IsValid() {
		c.LocalID = AddrIdentity(c.LocalAddr)
	}
	for _, end := range []string{"local", "remote"} {
		e := s.sub(end)
		if e == nil {
			continue
		}
		b.known(e, []string{"id", "auth"}, nil)
		if kv, ok := e.get("auth"); ok && kv.value != "psk" {
			b.fail(kv.line, end+".auth", "%q: only psk is supported", kv.value)
		}
		if kv, ok := e.get("id"); ok {
			id, err := ParseIdentity(kv.value)
			if err != nil {
				b.fail(kv.line, end+".id", "%v", err)
			}
			if end == "local" {
				if id.Any {
					b.fail(kv.line, end+".id", "the local identity cannot be %%any")
				}
				c.LocalID = id
			} else {
				c.RemoteID = id
			}
		}
	}
	if c.LocalID.Type == 0 && !c.LocalID.Any {
		b.fail(s.line, "local.id", "no local identity: set local.id or local_addrs")
	}
}

var childKeys = []string{"local_ts", "remote_ts", "esp_proposals", "start_action", "mode", "rekey_time",
	"life_time", "rekey_bytes", "life_bytes", "rekey_packets", "life_packets", "rand_time", "rand_bytes", "rand_packets", "replay_window", "reqid"}

func (b *builder) childConf(s *section, c *Connection) *Child {
	b.child = s.name
	defer func() { b.child = "" }()
	ch := &Child{Name: s.name, Line: s.line, Mode: kernelops.ModeTunnel, ReplayWindow: 32,
		LocalTS: []TS{{Dynamic: true}}, RemoteTS: []TS{{Dynamic: true}}}
	b.known(s, childKeys, nil)
	esp := "aes128gcm16, aes256-sha256"
	espLine := s.line
	life := &ch.Lifetime
	life.Soft.AddTime = time.Hour
	lifeSet := map[string]bool{}
	randSet := map[string]bool{}
	for _, kv := range s.settings {
		var err error
		switch kv.key {
		case "local_ts":
			if ch.LocalTS, err = ParseTSList(kv.value); err != nil {
				b.fail(kv.line, kv.key, "%v", err)
			}
		case "remote_ts":
			if ch.RemoteTS, err = ParseTSList(kv.value); err != nil {
				b.fail(kv.line, kv.key, "%v", err)
			}
		case "esp_proposals":
			esp, espLine = kv.value, kv.line
		case "start_action":
			switch kv.value {
			case "none":
				ch.StartAction = StartNone
			case "start":
				ch.StartAction = StartStart
			case "trap":
				ch.StartAction = StartTrap
			default:
				b.fail(kv.line, kv.key, "%q: want none, start or trap", kv.value)
			}
		case "mode":
			switch kv.value {
			case "tunnel":
				ch.Mode = kernelops.ModeTunnel
			case "transport":
				ch.Mode = kernelops.ModeTransport
			default:
				b.fail(kv.line, kv.key, "%q: want tunnel or transport", kv.value)
			}
		case "rekey_time":
			life.Soft.AddTime = b.duration(kv, kv.key, false)
		case "life_time":
			life.Hard.AddTime = b.duration(kv, kv.key, false)
			lifeSet[kv.key] = true
		case "rekey_bytes":
			life.Soft.Bytes = b.count(kv, kv.key)
		case "life_bytes":
			life.Hard.Bytes = b.count(kv, kv.key)
			lifeSet[kv.key] = true
		case "rekey_packets":
			life.Soft.Packets = b.count(kv, kv.key)
		case "life_packets":
			life.Hard.Packets = b.count(kv, kv.key)
			lifeSet[kv.key] = true
		case "rand_time":
			ch.RandTime = b.duration(kv, kv.key, false)
			randSet[kv.key] = true
		case "rand_bytes":
			ch.RandBytes = b.count(kv, kv.key)
			randSet[kv.key] = true
		case "rand_packets":
			ch.RandPackets = b.count(kv, kv.key)
			randSet[kv.key] = true
		case "replay_window":
			ch.ReplayWindow = uint32(b.uint(kv, kv.key, 0, 4096))
		case "reqid":
			ch.ReqID = uint32(b.uint(kv, kv.key, 1, 0xffffffff))
		}
	}
	// swanctl's defaults: each life limit is 110% of its rekey limit, and
	// each rand range is the life limit minus the rekey limit.
	if !lifeSet["life_time"] {
		life.Hard.AddTime = life.Soft.AddTime + life.Soft.AddTime/10
	}
	if !lifeSet["life_bytes"] {
		life.Hard.Bytes = life.Soft.Bytes + life.Soft.Bytes/10
	}
	if !lifeSet["life_packets"] {
		life.Hard.Packets = life.Soft.Packets + life.Soft.Packets/10
	}
	if !randSet["rand_time"] && life.Hard.AddTime > life.Soft.AddTime {
		ch.RandTime = life.Hard.AddTime - life.Soft.AddTime
	}
	if !randSet["rand_bytes"] && life.Hard.Bytes > life.Soft.Bytes {
		ch.RandBytes = life.Hard.Bytes - life.Soft.Bytes
	}
	if !randSet["rand_packets"] && life.Hard.Packets > life.Soft.Packets {
		ch.RandPackets = life.Hard.Packets - life.Soft.Packets
	}
	check := func(field string, soft, hard uint64) {
		if soft != 0 && hard != 0 && soft >= hard {
			b.fail(s.line, field, "rekey limit %d must be below the life limit %d", soft, hard)
		}
	}
	check("rekey_time", uint64(life.Soft.AddTime), uint64(life.Hard.AddTime))
	check("rekey_bytes", life.Soft.Bytes, life.Hard.Bytes)
	check("rekey_packets", life.Soft.Packets, life.Hard.Packets)
	var err error
	if ch.ESPProposals, err = ParseProposals(esp, false); err != nil {
		b.fail(espLine, "esp_proposals", "%v", err)
	}
	if ch.StartAction != StartNone && !c.RemoteAddr.IsValid() {
		b.fail(s.line, "start_action", "%s needs a remote address (remote_addrs is %%any)", ch.StartAction)
	}
	if ch.StartAction == StartTrap {
		for _, t := range append(append([]TS(nil), ch.LocalTS...), ch.RemoteTS...) {
			if t.Dynamic && !c.LocalAddr.IsValid() {
				b.fail(s.line, "local_ts", "trap with dynamic selectors needs local_addrs")
			}
		}
	}
	fam := func(field string, ts []TS) {
		for _, t := range ts {
			if !t.Dynamic && c.RemoteAddr.IsValid() && ch.Mode == kernelops.ModeTransport && t.Prefix.Addr().Is4() != c.RemoteAddr.Is4() {
				b.fail(s.line, field, "%s: transport mode selectors must be of the IKE addresses' family", t)
			}
		}
	}
	fam("local_ts", ch.LocalTS)
	fam("remote_ts", ch.RemoteTS)
	return ch
}

// Child returns the named child and its connection.
func (c *Config) Child(name string) (*Connection, *Child) {
	for _, conn := range c.Connections {
		for _, ch := range conn.Children {
			if ch.Name == name {
				return conn, ch
			}
		}
	}
	return nil, nil
}

// Connection returns the named connection.
func (c *Config) Connection(name string) *Connection {
	for _, conn := range c.Connections {
		if conn.Name == name {
			return conn
		}
	}
	return nil
}
