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
	"github.com/keyplane/keyplane/ike/message"
	"github.com/keyplane/keyplane/ike/pki"
	"github.com/keyplane/keyplane/internal/secretfile"
	"github.com/keyplane/keyplane/kernelops"
)

// Config is a whole configuration file.
type Config struct {
	File        string
	Daemon      Daemon
	Backend     Backend
	Connections []*Connection
	HA          *HA // nil: no ha section
	// Pools are the virtual IP pools (pools.go) connections lease from.
	Pools []*Pool
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
	// Half-open IKE SAs (a responder's, IKE_SA_INIT answered, no
	// IKE_AUTH yet), strongSwan's names and defaults: from
	// CookieThreshold of them in total, or CookieThresholdIP from one
	// source address, IKE_SA_INIT requests must carry a COOKIE (RFC 7296
	// §2.6); from BlockThreshold from one address, or InitLimitHalfOpen
	// in total, they are dropped. 0 turns a limit off. An IPv6 source
	// counts by its /64.
	CookieThreshold   int
	CookieThresholdIP int
	BlockThreshold    int
	InitLimitHalfOpen int
	// MaxPacket: IKE datagrams larger than this are dropped unread
	// (charon.max_packet); it also bounds the IKE_SA_INIT request a
	// half-open SA keeps for its AUTH computation.
	MaxPacket int
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
	// IKESocketBuffer is the receive buffer asked for each IKE socket, in
	// bytes, so that a burst of handshakes waits in the socket instead
	// of being dropped (kernelops.IKEListen.RecvBuffer); 0 keeps the OS
	// default.
	IKESocketBuffer int
	// LogFormat is how the daemon writes its log (text or json).
	LogFormat LogFormat
	// Metrics is where the daemon serves Prometheus metrics and pprof
	// over HTTP; the zero value serves nothing.
	Metrics netip.AddrPort
	// FragmentSize is the largest IP datagram of an IKE fragment (RFC
	// 7383), strongSwan's charon.fragment_size; 0: 576 on IPv4, 1280 on
	// IPv6.
	FragmentSize int
	// DownTimeout bounds a suspension: an IKE SA whose link stays down
	// this long ends as if its peer had stopped answering, and its
	// children's dpd_action applies. 0: no bound of its own (the IKE SA's
	// hard lifetime, over_time, still ends it).
	DownTimeout time.Duration
	// KeepAlive is the NAT-T keepalive interval (strongswan.conf's
	// charon.keep_alive): an IKE SA behind a NAT sends one 0xff octet to
	// the peer's NAT-T port when it has sent nothing for this long; 0
	// never.
	KeepAlive time.Duration
}

// LogFormat is daemon.log_format.
type LogFormat uint8

const (
	LogText LogFormat = iota // log/slog's key=value lines
	LogJSON                  // one JSON object per line
)

func (f LogFormat) String() string {
	if f == LogJSON {
		return "json"
	}
	return "text"
}

// MarshalText writes the format's name.
func (f LogFormat) MarshalText() ([]byte, error) { return []byte(f.String()), nil }

// Defaults of the link-awareness settings (see Daemon).
const (
	DefaultReviveRate      = 100
	DefaultReviveBurst     = 10
	DefaultDownQueueLimit  = 16
	DefaultDownQueueMaxAge = 2 * time.Minute
	DefaultKeepAlive       = 20 * time.Second
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
	LocalAddr, RemoteAddr netip.Addr
	// LocalAddrs and RemoteAddrs are every address of local_addrs and
	// remote_addrs as written (swanctl takes lists); the engine uses only
	// the first, LocalAddr and RemoteAddr, and the parser warns about the
	// rest.
	LocalAddrs, RemoteAddrs     []netip.Addr
	LocalPort, RemotePort       uint16
	LocalNATPort, RemoteNATPort uint16
	LocalID, RemoteID           Identity
	// LocalAuth and RemoteAuth are local.auth and remote.auth.
	LocalAuth, RemoteAuth Auth
	PSK                   ikecrypto.Key `json:"-"`
	PSKSource             string        // "file PATH" or "env NAME", for humans
	// LocalCerts are the certificates of local.certs that have a private
	// key in the secrets section, in order: the first the peer's CERTREQ
	// allows authenticates this end. Intermediates are the other
	// certificates of local.certs, sent along when they issue it.
	LocalCerts    []LocalCert
	Intermediates []Cert
	// CACerts (remote.cacerts) and CRLs (remote.crls) make Trust, the
	// store the peer's certificate chain must verify against, with
	// Revocation (remote.revocation) as its revocation policy.
	CACerts    []Cert
	CRLs       []CRL
	Revocation pki.RevocationPolicy
	Trust      *pki.Store `json:"-"`
	// Fragmentation is swanctl's fragmentation setting (RFC 7383).
	Fragmentation Fragmentation
	Proposals     []Proposal
	Encap         bool          // force UDP encapsulation of ESP
	DPDDelay      time.Duration // liveness check interval; 0 none
	// RekeyTime is how long an IKE SA lives before it is rekeyed
	// (CREATE_CHILD_SA, RFC 7296 §2.18); 0 never.
	RekeyTime time.Duration
	// ReauthTime is how long an IKE SA lives before it is replaced by a
	// new one, authenticated afresh, with its children made anew (make
	// before break); 0 never. Setting it makes RekeyTime default to 0,
	// as in swanctl.
	ReauthTime time.Duration
	// OverTime is the hard lifetime of an IKE SA past its rekey or
	// reauthentication time, for when that does not complete (swanctl's
	// over_time; default a tenth of the longer of RekeyTime and
	// ReauthTime).
	OverTime time.Duration
	// RandTime is the range of a random time subtracted from RekeyTime
	// and ReauthTime (swanctl's rand_time; its default is OverTime), so
	// both ends rarely rekey at once.
	RandTime time.Duration
	// LogLevel, when set, is this connection's log level: the daemon logs
	// the lines of its IKE and child SAs at it instead of
	// daemon.log_level.
	LogLevel *slog.Level
	// KeyingTries is how many times an IKE SA we initiate is tried when
	// the peer does not answer (swanctl's keyingtries; 0: until it
	// succeeds or fails for good).
	KeyingTries int
	// MOBIKE is swanctl's mobike (RFC 4555): announce MOBIKE_SUPPORTED
	// in IKE_AUTH; when both ends did, the initiator moves the IKE SA and
	// its children when its address goes away, and the responder follows
	// the peer's UPDATE_SA_ADDRESSES. Default yes (DefaultConnection).
	MOBIKE bool
	// VIPs are the virtual IPs asked of the peer in IKE_AUTH (swanctl's
	// vips; 0.0.0.0 or :: for any of the family): the peer's answer is
	// added to the interface towards it and stands for the children's
	// dynamic local selectors (vips.go in ike).
	VIPs []netip.Addr
	// Pools are the pools (by name) whose addresses a peer asking for a
	// virtual IP gets (swanctl's pools); the lease stands for the
	// children's dynamic remote selectors.
	Pools []string
	// Unique is the uniqueness policy for IKE SAs with the same
	// identities (swanctl's unique).
	Unique   UniquePolicy
	Children []*Child
}

// UniquePolicy is swanctl's unique: what a new IKE SA does to others
// with the same local and remote identities.
type UniquePolicy uint8

const (
	// UniqueNo: others stay, unless the new one carries INITIAL_CONTACT.
	UniqueNo UniquePolicy = iota
	// UniqueNever: others stay, even with INITIAL_CONTACT; none is sent.
	UniqueNever
	// UniqueKeep: as responder, refuse the new IKE SA when one exists.
	UniqueKeep
	// UniqueReplace: as responder, delete the others.
	UniqueReplace
)

func (u UniquePolicy) String() string {
	switch u {
	case UniqueNever:
		return "never"
	case UniqueKeep:
		return "keep"
	case UniqueReplace:
		return "replace"
	}
	return "no"
}

// MarshalText writes the policy's name.
func (u UniquePolicy) MarshalText() ([]byte, error) { return []byte(u.String()), nil }

// DPDAction is a child's dpd_action: what becomes of it when its IKE SA
// ends because the peer stopped answering (or its link stayed down, or
// it outlived over_time).
type DPDAction uint8

const (
	DPDClear   DPDAction = iota // nothing more
	DPDTrap                     // install trap policies: traffic brings it back
	DPDRestart                  // initiate it again at once, under a new IKE SA
)

func (a DPDAction) String() string {
	switch a {
	case DPDTrap:
		return "trap"
	case DPDRestart:
		return "restart"
	}
	return "clear"
}

// MarshalText writes the action's name.
func (a DPDAction) MarshalText() ([]byte, error) { return []byte(a.String()), nil }

// CloseAction is a child's close_action: what becomes of it when the
// peer deletes it (or its IKE SA) and nothing replaces it.
type CloseAction uint8

const (
	CloseNone  CloseAction = iota // nothing more
	CloseTrap                     // install trap policies
	CloseStart                    // initiate it again at once
)

func (a CloseAction) String() string {
	switch a {
	case CloseTrap:
		return "trap"
	case CloseStart:
		return "start"
	}
	return "none"
}

// MarshalText writes the action's name.
func (a CloseAction) MarshalText() ([]byte, error) { return []byte(a.String()), nil }

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
	DPDAction    DPDAction
	CloseAction  CloseAction
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
	// ReqID ties the child's SAs and policies together in the dataplane,
	// used as is; 0 lets the engine assign one per selector set
	// (ike/reqidindex.go).
	ReqID uint32
	// HWOffload is the hardware offload asked for the child's SAs on the
	// interface that carries them (hw_offload, default no): crypto or
	// packet fail the child when the dataplane refuses them; auto falls
	// back to what the device accepts.
	HWOffload kernelops.OffloadMode
	// IfIDIn and IfIDOut are the XFRM interface ids (if_id_in,
	// if_id_out; 0: none) of the inbound SA with the in and fwd
	// policies, and of the outbound SA with the out policy: traffic
	// routed into the XFRM interface of that id uses the child.
	IfIDIn, IfIDOut uint32
	// MarkIn and MarkOut are the XFRM marks (mark_in, mark_out; zero:
	// none) of the inbound SA with the in and fwd policies, and of the
	// outbound SA with the out policy: only packets carrying the mark
	// use the child.
	MarkIn, MarkOut kernelops.Mark
	// XfrmInterface (xfrm_interface; keyplane's, swanctl has none) is the
	// route-based XFRM interface keyplane creates with the child's if_id
	// while an SA or trap of a child naming it is installed.
	XfrmInterface string
	// Updown is the command run (by /bin/sh -c) when a CHILD SA of
	// this child comes up or goes down, with strongSwan's PLUTO_*
	// environment (updown; "": none). The daemon runs it; the engine
	// alone does not (an embedder has ike.Hooks).
	Updown string
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
	if e.File == "" {
		b.WriteString("config") // a Config built in Go
	}
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
	// ReadPublic reads a certificate or CRL file of at most max bytes
	// (nil: a regular file, relative paths from the file's directory).
	ReadPublic func(path string, max int64) ([]byte, error)
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
// It reads the whole file and reports every error it finds (at most
// MaxErrors) as Errors, not only the first; a file with errors yields no
// Config, and the keys it read are wiped.
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
	if o.ReadPublic == nil {
		o.ReadPublic = defaultReadPublic(filepath.Dir(file))
	}
	b := &builder{file: file, o: o, failed: map[fieldKey]bool{}, lines: map[fieldKey]int{}}
	root, serrs := parseSyntax(src)
	for _, se := range serrs {
		b.errs = append(b.errs, &Error{File: file, Line: se.line, Msg: se.msg})
	}
	cfg := b.build(root)
	// What the values mean together (ranges, families, completeness):
	// the checks a Config built in Go gets from Validate. A setting whose
	// text was already refused is not reported twice.
	cfg.validate(func(line int, conn, child, field, msg string) {
		k := fieldKey{conn, child, field}
		if b.failed[k] || (field == "psk_file" && b.failed[fieldKey{conn, "", "psk"}]) {
			return
		}
		if l, ok := b.lines[k]; ok {
			line = l
		} else if l, ok := b.lines[fieldKey{conn, child, lineOf[field]}]; ok {
			line = l
		}
		b.add(&Error{File: file, Line: line, Conn: conn, Child: child, Field: field, Msg: msg})
	})
	if len(b.errs) > 0 {
		cfg.Wipe()
		sortErrors(b.errs)
		if b.dropped > 0 {
			b.errs = append(b.errs, &Error{File: file, Msg: fmt.Sprintf("and %d more errors", b.dropped)})
		}
		return nil, Errors(b.errs)
	}
	cfg.Warnings = b.warnings
	return cfg, nil
}

// lineOf names, for an error about a setting left at its default, the
// setting whose line to show instead (the one that was written).
var lineOf = map[string]string{"local_port_nat": "local_port", "remote_addrs": "local_addrs"}

// fieldKey names a setting: connection, child and field, as in Error.
type fieldKey struct{ conn, child, field string }

// builder turns the section tree into a Config, collecting every error.
type builder struct {
	file     string
	o        Options
	errs     []*Error
	dropped  int // errors beyond MaxErrors
	warnings []*Error
	// failed are the settings whose text was refused; lines are where
	// each setting was written.
	failed      map[fieldKey]bool
	lines       map[fieldKey]int
	conn, child string
	keys        []key // the secrets section's private keys
}

func (b *builder) add(e *Error) {
	if len(b.errs) >= MaxErrors {
		b.dropped++
		return
	}
	b.errs = append(b.errs, e)
}

func (b *builder) warn(line int, field, format string, args ...any) {
	b.warnings = append(b.warnings, &Error{File: b.file, Line: line, Conn: b.conn, Child: b.child, Field: field, Msg: fmt.Sprintf(format, args...)})
}

func (b *builder) fail(line int, field, format string, args ...any) *Error {
	b.failed[fieldKey{b.conn, b.child, field}] = true
	e := &Error{File: b.file, Line: line, Conn: b.conn, Child: b.child, Field: field, Msg: fmt.Sprintf(format, args...)}
	b.add(e)
	return e
}

// at records where a setting is written, for the errors Validate finds.
func (b *builder) at(kv setting, field string) {
	b.lines[fieldKey{b.conn, b.child, field}] = kv.line
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
	cfg := Defaults()
	cfg.File = b.file
	b.known(root, nil, []string{"daemon", "backend", "secrets", "connections", "ha", "pools"})
	if s := root.sub("pools"); s != nil {
		cfg.Pools = b.poolsSection(s)
	}
	if s := root.sub("ha"); s != nil {
		cfg.HA = b.haSection(s)
	}
	if s := root.sub("secrets"); s != nil {
		b.secretsSection(s)
	}
	if d := root.sub("daemon"); d != nil {
		b.daemon(d, &cfg.Daemon)
	}
	if s := root.sub("backend"); s != nil {
		b.known(s, []string{"name", "cleanup"}, []string{"params"})
		if kv, ok := s.get("name"); ok {
			b.at(kv, "backend.name")
			cfg.Backend.Name = kv.value
		}
		if kv, ok := s.get("cleanup"); ok {
			switch kv.value {
			case "owned":
				cfg.Backend.Cleanup = CleanupOwned
			case "none":
				cfg.Backend.Cleanup = CleanupNone
			default:
				b.fail(kv.line, "backend.cleanup", "%q: %s", kv.value, wantCleanup)
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
		for _, s := range cs.sections {
			cfg.Connections = append(cfg.Connections, b.connection(s))
		}
		b.conn, b.child = "", ""
	}
	return cfg
}

func (b *builder) daemon(s *section, d *Daemon) {
	b.known(s, []string{"control", "log_level", "log_format", "metrics", "retransmit_timeout", "retransmit_base",
		"retransmit_tries", "cookie_threshold", "cookie_threshold_ip", "block_threshold", "init_limit_half_open",
		"max_packet", "half_open_timeout", "revive_rate", "revive_burst",
		"down_queue_limit", "down_queue_max_age", "fragment_size", "down_timeout", "keep_alive",
		"ike_socket_buffer"}, nil)
	for _, kv := range s.settings {
		field := "daemon." + kv.key
		b.at(kv, field)
		switch kv.key {
		case "control":
			d.Control = kv.value
		case "log_level":
			if err := d.LogLevel.UnmarshalText([]byte(kv.value)); err != nil {
				b.fail(kv.line, field, "%q: want debug, info, warn or error", kv.value)
			}
		case "log_format":
			switch kv.value {
			case "text":
				d.LogFormat = LogText
			case "json":
				d.LogFormat = LogJSON
			default:
				b.fail(kv.line, field, "%q: %s", kv.value, wantLogFormat)
			}
		case "metrics":
			d.Metrics = b.metrics(kv, field)
		case "retransmit_timeout":
			d.RetransmitTimeout = b.duration(kv, field, true)
		case "half_open_timeout":
			d.HalfOpenTimeout = b.duration(kv, field, true)
		case "retransmit_base":
			f, err := strconv.ParseFloat(kv.value, 64)
			if err != nil || f < minRetransmitBase || f > maxRetransmitBase {
				b.fail(kv.line, field, "%q: %s", kv.value, wantBase)
			}
			d.RetransmitBase = f
		case "retransmit_tries":
			d.RetransmitTries = int(b.uint(kv, field, 0, maxRetransmitTries))
		case "cookie_threshold":
			d.CookieThreshold = int(b.uint(kv, field, 0, maxCookieThreshold))
		case "cookie_threshold_ip":
			d.CookieThresholdIP = int(b.uint(kv, field, 0, maxCookieThreshold))
		case "block_threshold":
			d.BlockThreshold = int(b.uint(kv, field, 0, maxCookieThreshold))
		case "init_limit_half_open":
			d.InitLimitHalfOpen = int(b.uint(kv, field, 0, maxCookieThreshold))
		case "max_packet":
			d.MaxPacket = int(b.uint(kv, field, minMaxPacket, maxMaxPacket))
		case "revive_rate":
			f, err := strconv.ParseFloat(kv.value, 64)
			if err != nil || !(f >= minReviveRate && f <= maxReviveRate) {
				b.fail(kv.line, field, "%q: %s", kv.value, wantReviveRate)
			}
			d.ReviveRate = f
		case "revive_burst":
			d.ReviveBurst = int(b.uint(kv, field, 1, maxReviveBurst))
		case "down_queue_limit":
			d.DownQueueLimit = int(b.uint(kv, field, 0, maxDownQueueLimit))
		case "down_queue_max_age":
			d.DownQueueMaxAge = b.duration(kv, field, true)
		case "fragment_size":
			// The lower bound is Validate's (0 or MinFragmentSize up).
			d.FragmentSize = int(b.uint(kv, field, 0, maxFragmentSize))
		case "down_timeout":
			d.DownTimeout = b.duration(kv, field, false)
		case "keep_alive":
			d.KeepAlive = b.duration(kv, field, false)
		case "ike_socket_buffer":
			n := b.count(kv, field)
			if n > maxIKESocketBuffer {
				b.fail(kv.line, field, "%q: %s", kv.value, wantSocketBuffer)
			}
			d.IKESocketBuffer = int(min(n, maxIKESocketBuffer))
		}
	}
}

const wantMetrics = "want ADDRESS:PORT such as 127.0.0.1:9417 or [::1]:9417"

// metrics reads daemon.metrics: an address and port, or "" / "no" for
// none.
func (b *builder) metrics(kv setting, field string) netip.AddrPort {
	if kv.value == "" || kv.value == "no" {
		return netip.AddrPort{}
	}
	ap, err := netip.ParseAddrPort(kv.value)
	if err != nil || ap.Port() == 0 || ap.Addr().Zone() != "" {
		b.fail(kv.line, field, "%q: %s", kv.value, wantMetrics)
		return netip.AddrPort{}
	}
	return netip.AddrPortFrom(ap.Addr().Unmap(), ap.Port())
}

func (b *builder) duration(kv setting, field string, positive bool) time.Duration {
	d, err := parseDuration(kv.value)
	switch {
	case err != nil || d < 0:
		b.fail(kv.line, field, "%q: %s", kv.value, wantDuration)
	case positive && d == 0:
		b.fail(kv.line, field, "%q: %s", kv.value, wantPositiveDur)
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
		b.fail(kv.line, field, "%q: %s", kv.value, wantWhole(lo, hi))
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
		return 0
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

// addrs reads local_addrs or remote_addrs: %any, or a comma-separated
// list of addresses (swanctl's form). The engine uses the first; the
// others are kept in the Connection and warned about.
func (b *builder) addrs(kv setting, field string) []netip.Addr {
	if kv.value == "%any" || kv.value == "" {
		return nil
	}
	var out []netip.Addr
	for _, part := range strings.Split(kv.value, ",") {
		part = strings.TrimSpace(part)
		a, err := netip.ParseAddr(part)
		if err != nil || a.Zone() != "" || a.IsUnspecified() {
			what := "want IPv4 or IPv6 addresses, or %%any"
			switch {
			case part == "%any" || strings.HasPrefix(part, "%any"):
				what = "%%any stands alone, not in a list"
			case strings.ContainsAny(part, "/-"):
				what = "prefixes and ranges are not supported yet; want IPv4 or IPv6 addresses, or %%any"
			case part != "" && err != nil && !strings.ContainsAny(part, ":"):
				what = "host names are not supported; want IPv4 or IPv6 addresses, or %%any"
			}
			b.fail(kv.line, field, "%q: "+what, part)
			return nil
		}
		out = append(out, a.Unmap())
	}
	if len(out) > 1 {
		b.warn(kv.line, field, "only the first address, %s, is used; the other %d are ignored (keyplane does not yet try several addresses)", out[0], len(out)-1)
	}
	return out
}

var connKeys = []string{"local_addrs", "remote_addrs", "local_port", "remote_port", "local_port_nat",
	"remote_port_nat", "proposals", "psk_file", "psk_env", "encap", "dpd_delay", "rekey_time", "rand_time", "version", "log_level",
	"fragmentation", "reauth_time", "over_time", "keyingtries", "unique", "mobike", "vips", "pools"}

// DefaultIKERekeyTime is an IKE SA's rekey_time when none is set:
// strongSwan's default, so both ends of a default pair agree.
const DefaultIKERekeyTime = 4 * time.Hour

func (b *builder) connection(s *section) *Connection {
	b.conn, b.child = s.name, ""
	c := DefaultConnection(s.name)
	c.Line = s.line
	b.known(s, connKeys, []string{"local", "remote", "children"})
	randSet, rekeySet, overSet := false, false, false
	for _, kv := range s.settings {
		b.at(kv, kv.key)
		switch kv.key {
		case "local_addrs":
			c.LocalAddrs = b.addrs(kv, kv.key)
		case "remote_addrs":
			c.RemoteAddrs = b.addrs(kv, kv.key)
		case "local_port":
			c.LocalPort = b.port(kv, kv.key)
		case "remote_port":
			c.RemotePort = b.port(kv, kv.key)
		case "local_port_nat":
			c.LocalNATPort = b.port(kv, kv.key)
		case "remote_port_nat":
			c.RemoteNATPort = b.port(kv, kv.key)
		case "proposals":
			ps, err := ParseProposals(kv.value, true)
			if err != nil {
				b.fail(kv.line, "proposals", "%v", err)
			}
			c.Proposals = ps
		case "encap":
			c.Encap = b.bool(kv, kv.key)
		case "dpd_delay":
			c.DPDDelay = b.duration(kv, kv.key, false)
		case "rekey_time":
			c.RekeyTime = b.duration(kv, kv.key, false)
			rekeySet = true
		case "rand_time":
			c.RandTime = b.duration(kv, kv.key, false)
			randSet = true
		case "version":
			// swanctl's IKE version: 2 is the only one keyplane speaks.
			switch kv.value {
			case "2":
			case "1":
				b.fail(kv.line, kv.key, "1: IKEv1 is not supported; keyplane speaks IKEv2 only (set version = 2 or remove the setting)")
			case "0":
				b.fail(kv.line, kv.key, "0 (any IKE version) is not supported; keyplane speaks IKEv2 only (set version = 2 or remove the setting)")
			default:
				b.fail(kv.line, kv.key, "%q: want 2 (IKEv2)", kv.value)
			}
		case "log_level":
			var l slog.Level
			if err := l.UnmarshalText([]byte(kv.value)); err != nil {
				b.fail(kv.line, kv.key, "%q: want debug, info, warn or error", kv.value)
			} else {
				c.LogLevel = &l
			}
		case "fragmentation":
			switch kv.value {
			case "yes":
				c.Fragmentation = FragYes
			case "accept":
				c.Fragmentation = FragAccept
			case "force":
				c.Fragmentation = FragForce
			case "no":
				c.Fragmentation = FragNo
			default:
				b.fail(kv.line, kv.key, "%q: want yes, accept, force or no", kv.value)
			}
		case "mobike":
			c.MOBIKE = b.bool(kv, kv.key)
		case "vips":
			c.VIPs = b.vipsSetting(kv)
		case "pools":
			c.Pools = splitList(kv.value)
		case "reauth_time":
			c.ReauthTime = b.duration(kv, kv.key, false)
		case "over_time":
			c.OverTime = b.duration(kv, kv.key, false)
			overSet = true
		case "keyingtries":
			c.KeyingTries = int(b.uint(kv, kv.key, 0, maxKeyingTries))
		case "unique":
			switch kv.value {
			case "no":
				c.Unique = UniqueNo
			case "never":
				c.Unique = UniqueNever
			case "keep":
				c.Unique = UniqueKeep
			case "replace":
				c.Unique = UniqueReplace
			default:
				b.fail(kv.line, kv.key, "%q: %s", kv.value, wantUnique)
			}
		}
	}
	// swanctl: with reauth_time set, rekey_time defaults to 0; over_time
	// defaults to a tenth of the longer of the two, and rand_time to
	// over_time.
	if c.ReauthTime > 0 && !rekeySet {
		c.RekeyTime = 0
	}
	if !overSet {
		c.OverTime = ikeOverTime(c.RekeyTime, c.ReauthTime)
	}
	if !randSet {
		c.RandTime = c.OverTime
		if b.failed[fieldKey{b.conn, "", "over_time"}] {
			b.failed[fieldKey{b.conn, "", "rand_time"}] = true
		}
	}
	if len(c.LocalAddrs) > 0 {
		c.LocalAddr = c.LocalAddrs[0]
	}
	if len(c.RemoteAddrs) > 0 {
		c.RemoteAddr = c.RemoteAddrs[0]
	}
	b.ends(s, c)
	if c.LocalAuth == AuthPSK || c.RemoteAuth == AuthPSK {
		b.psk(s, c)
	} else {
		for _, k := range []string{"psk_file", "psk_env"} {
			if kv, ok := s.get(k); ok {
				b.fail(kv.line, k, "both ends authenticate with pubkey: no pre-shared key is used")
			}
		}
	}
	if ch := s.sub("children"); ch != nil {
		for _, kv := range ch.settings {
			b.fail(kv.line, kv.key, "children holds sections (name { ... }), not settings")
		}
		for _, cs := range ch.sections {
			c.Children = append(c.Children, b.childConf(cs))
		}
	}
	return c
}

func (b *builder) psk(s *section, c *Connection) {
	file, hasFile := s.get("psk_file")
	env, hasEnv := s.get("psk_env")
	failed := func() { b.failed[fieldKey{b.conn, "", "psk"}] = true }
	switch {
	case hasFile && hasEnv:
		b.fail(env.line, "psk_env", "give psk_file or psk_env, not both")
		failed()
	case hasFile:
		data, err := b.o.ReadFile(file.value)
		if err != nil {
			b.fail(file.line, "psk_file", "%v", err).Err = err
			failed()
			return
		}
		// The key keeps the file's buffer: no copy of it is left behind.
		c.PSK = ikecrypto.Key(bytes.TrimRight(data, "\r\n"))
		c.PSKSource = "file " + file.value
		if len(c.PSK) == 0 {
			b.fail(file.line, "psk_file", "%s is empty", file.value)
			failed()
		}
		b.shortPSK(file.line, "psk_file", c)
	case hasEnv:
		v, ok := b.o.Getenv(env.value)
		if !ok || v == "" {
			b.fail(env.line, "psk_env", "environment variable %s is unset or empty", env.value)
			failed()
			return
		}
		c.PSK = ikecrypto.Key(v)
		c.PSKSource = "env " + env.value
		b.shortPSK(env.line, "psk_env", c)
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
	if c.HA != nil {
		clear(c.HA.ClusterKey)
	}
}

func (b *builder) ends(s *section, c *Connection) {
	localIDSet := false
	for _, end := range []string{"local", "remote"} {
		e := s.sub(end)
		if e == nil {
			continue
		}
		keys := []string{"id", "auth", "certs"}
		if end == "remote" {
			keys = []string{"id", "auth", "cacerts", "crls", "revocation"}
		}
		b.known(e, keys, nil)
		for _, kv := range e.settings {
			b.at(kv, end+"."+kv.key)
		}
		auth := AuthPSK
		if kv, ok := e.get("auth"); ok {
			switch kv.value {
			case "psk":
			case "pubkey":
				auth = AuthPubkey
			default:
				b.fail(kv.line, end+".auth", "%q: want psk or pubkey", kv.value)
				// Whether a key is missing depends on what was meant.
				b.failed[fieldKey{b.conn, "", "psk"}] = true
			}
		}
		if auth == AuthPSK {
			for _, k := range keys[2:] {
				if kv, ok := e.get(k); ok {
					b.fail(kv.line, end+"."+k, "only with auth = pubkey")
				}
			}
		}
		if end == "local" {
			c.LocalAuth = auth
			if auth == AuthPubkey {
				b.localPubkey(e, c)
			}
		} else {
			c.RemoteAuth = auth
			if auth == AuthPubkey {
				b.remotePubkey(e, c)
			}
		}
		if kv, ok := e.get("id"); ok {
			id, err := ParseIdentity(kv.value)
			if err != nil {
				b.fail(kv.line, end+".id", "%v", err)
				continue
			}
			if end == "local" {
				c.LocalID = id
				localIDSet = true
			} else {
				c.RemoteID = id
			}
		}
	}
	switch {
	case localIDSet:
	case c.LocalAuth == AuthPubkey && len(c.LocalCerts) > 0:
		// strongSwan's default for a certificate: its subject DN.
		c.LocalID = Identity{Type: message.IDDerASN1DN, Data: c.LocalCerts[0].X509.RawSubject}
	case c.LocalAddr.IsValid():
		c.LocalID = AddrIdentity(c.LocalAddr)
	}
}

var childKeys = []string{"local_ts", "remote_ts", "esp_proposals", "start_action", "dpd_action", "close_action", "mode", "rekey_time",
	"life_time", "rekey_bytes", "life_bytes", "rekey_packets", "life_packets", "rand_time", "rand_bytes", "rand_packets",
	"replay_window", "reqid", "hw_offload", "if_id_in", "if_id_out", "mark_in", "mark_out", "xfrm_interface", "updown"}

func (b *builder) childConf(s *section) *Child {
	b.child = s.name
	defer func() { b.child = "" }()
	ch := DefaultChild(s.name)
	ch.Line = s.line
	b.known(s, childKeys, nil)
	life := &ch.Lifetime
	lifeSet := map[string]bool{}
	randSet := map[string]bool{}
	for _, kv := range s.settings {
		b.at(kv, kv.key)
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
			if ch.ESPProposals, err = ParseProposals(kv.value, false); err != nil {
				b.fail(kv.line, "esp_proposals", "%v", err)
			}
		case "start_action":
			switch kv.value {
			case "none":
				ch.StartAction = StartNone
			case "start":
				ch.StartAction = StartStart
			case "trap":
				ch.StartAction = StartTrap
			default:
				b.fail(kv.line, kv.key, "%q: %s", kv.value, wantStartAction)
			}
		case "dpd_action":
			switch kv.value {
			case "clear":
				ch.DPDAction = DPDClear
			case "trap":
				ch.DPDAction = DPDTrap
			case "restart":
				ch.DPDAction = DPDRestart
			default:
				b.fail(kv.line, kv.key, "%q: %s", kv.value, wantDPDAction)
			}
		case "close_action":
			switch kv.value {
			case "none":
				ch.CloseAction = CloseNone
			case "trap":
				ch.CloseAction = CloseTrap
			case "start":
				ch.CloseAction = CloseStart
			default:
				b.fail(kv.line, kv.key, "%q: %s", kv.value, wantCloseAction)
			}
		case "mode":
			switch kv.value {
			case "tunnel":
				ch.Mode = kernelops.ModeTunnel
			case "transport":
				ch.Mode = kernelops.ModeTransport
			default:
				b.fail(kv.line, kv.key, "%q: %s", kv.value, wantMode)
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
			ch.ReplayWindow = uint32(b.uint(kv, kv.key, 0, maxReplayWindow))
		case "reqid":
			ch.ReqID = uint32(b.uint(kv, kv.key, 1, 0xffffffff))
		case "hw_offload":
			// swanctl's words: yes is crypto offload.
			m, err := kernelops.ParseOffloadMode(kv.value)
			if err != nil || kv.value == "" {
				b.fail(kv.line, kv.key, "%q: %s", kv.value, wantOffload)
				continue
			}
			ch.HWOffload = m
		case "if_id_in", "if_id_out":
			id, err := parseIfID(kv.value)
			if err != nil {
				b.fail(kv.line, kv.key, "%v", err)
				continue
			}
			if kv.key == "if_id_in" {
				ch.IfIDIn = id
			} else {
				ch.IfIDOut = id
			}
		case "xfrm_interface":
			ch.XfrmInterface = kv.value
		case "mark_in", "mark_out":
			m, err := parseMark(kv.value)
			if err != nil {
				b.fail(kv.line, kv.key, "%v", err)
				continue
			}
			if kv.key == "mark_in" {
				ch.MarkIn = m
			} else {
				ch.MarkOut = m
			}
		case "updown":
			if strings.TrimSpace(kv.value) == "" || strings.ContainsAny(kv.value, "\x00\n") {
				b.fail(kv.line, kv.key, "want a command (a script's path and its arguments, on one line)")
				continue
			}
			ch.Updown = kv.value
		}
	}
	// swanctl's defaults, the ones DefaultChild gives: each life limit is
	// 110% of its rekey limit, and each rand range is the life limit
	// minus the rekey limit.
	if !lifeSet["life_time"] {
		life.Hard.AddTime = lifeAfter(life.Soft.AddTime)
		if b.failed[fieldKey{b.conn, b.child, "rekey_time"}] {
			b.failed[fieldKey{b.conn, b.child, "life_time"}] = true
		}
	}
	if !lifeSet["life_bytes"] {
		life.Hard.Bytes = lifeAfter(life.Soft.Bytes)
	}
	if !lifeSet["life_packets"] {
		life.Hard.Packets = lifeAfter(life.Soft.Packets)
	}
	if !randSet["rand_time"] {
		ch.RandTime = randRange(life.Soft.AddTime, life.Hard.AddTime)
	}
	if !randSet["rand_bytes"] {
		ch.RandBytes = randRange(life.Soft.Bytes, life.Hard.Bytes)
	}
	if !randSet["rand_packets"] {
		ch.RandPackets = randRange(life.Soft.Packets, life.Hard.Packets)
	}
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

const wantIfID = "want an interface id such as 42 or 0x2a (0: none)"

// parseIfID reads if_id_in or if_id_out: a number, decimal or 0x hex.
// swanctl's %unique and %unique-dir are refused: each child would need
// an interface of its own id, which keyplane does not create.
func parseIfID(v string) (uint32, error) {
	if strings.HasPrefix(v, "%unique") {
		return 0, fmt.Errorf("%q: %%unique interface ids are not supported; %s", v, wantIfID)
	}
	n, err := strconv.ParseUint(v, 0, 32)
	if err != nil {
		return 0, fmt.Errorf("%q: %s", v, wantIfID)
	}
	return uint32(n), nil
}
