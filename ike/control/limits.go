package control

import "time"

// Limits bound what clients of the control socket can make the daemon
// hold. The zero value of a field means its default.
type Limits struct {
	// MaxRequest is the largest request accepted, in bytes (default 64
	// KiB); nothing beyond it is read.
	MaxRequest int
	// ReadTimeout is how long a client has to send its whole request
	// (default 10s): an unterminated request is not held forever.
	ReadTimeout time.Duration
	// WriteTimeout is how long one response, or one event of a stream,
	// may take to write (default 10s); a client that does not read is
	// dropped.
	WriteTimeout time.Duration
	// MaxClients is how many connections are served at once (default
	// 64); one more is answered "too many control clients" and closed.
	MaxClients int
	// MaxSubscribers is how many of them may stream events at once
	// (default 16).
	MaxSubscribers int
}

// Defaults of Limits.
const (
	DefaultMaxRequest     = 64 << 10
	DefaultReadTimeout    = 10 * time.Second
	DefaultWriteTimeout   = 10 * time.Second
	DefaultMaxClients     = 64
	DefaultMaxSubscribers = 16
)

func (l Limits) withDefaults() Limits {
	if l.MaxRequest <= 0 {
		l.MaxRequest = DefaultMaxRequest
	}
	if l.ReadTimeout <= 0 {
		l.ReadTimeout = DefaultReadTimeout
	}
	if l.WriteTimeout <= 0 {
		l.WriteTimeout = DefaultWriteTimeout
	}
	if l.MaxClients <= 0 {
		l.MaxClients = DefaultMaxClients
	}
	if l.MaxSubscribers <= 0 {
		l.MaxSubscribers = DefaultMaxSubscribers
	}
	return l
}
