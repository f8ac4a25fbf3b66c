package ike

import (
	"fmt"
	"log/slog"
)

// Values of the attributes bound to IKE SA and child loggers, formatted
// only when a line is written: the daemon's handler formats bound
// attributes at the first record that passes the level, and at the
// default level most of these loggers write none, while a handshake
// binds several of them.

// hex32 is an SPI: %08x.
type hex32 uint32

func (v hex32) LogValue() slog.Value { return slog.StringValue(fmt.Sprintf("%08x", uint32(v))) }

// reqidText is a reqid: %#x.
type reqidText uint32

func (v reqidText) LogValue() slog.Value { return slog.StringValue(fmt.Sprintf("%#x", uint32(v))) }

// hex64 is an IKE SPI: %016x.
type hex64 uint64

func (v hex64) LogValue() slog.Value { return slog.StringValue(fmt.Sprintf("%016x", uint64(v))) }

// ikeSPIs is an IKE SA's SPI pair as ikeSA.spis writes it.
type ikeSPIs struct{ i, r uint64 }

func (v ikeSPIs) LogValue() slog.Value {
	return slog.StringValue(fmt.Sprintf("%016x_i %016x_r", v.i, v.r))
}

// logText is a value written as its String, called only for a line that
// is written (Debug lines about each message pass the message).
type logText struct{ fmt.Stringer }

func (v logText) LogValue() slog.Value { return slog.StringValue(v.String()) }
