package ike

import (
	"crypto/rand"
	"encoding/binary"
	"time"

	"github.com/keyplane/keyplane/ike/config"
	"github.com/keyplane/keyplane/kernelops"
)

// Randomized lifetimes (swanctl's rand_time, rand_bytes, rand_packets):
// both ends of an SA usually share their lifetime settings, so their
// soft limits would trip together and both would rekey at once (a
// collision, RFC 7296 §2.8.1). Each SA therefore subtracts its own random
// part of the rand range from each rekey limit, as strongSwan does; the
// hard (life) limits stay. keyplane bounds the random part to half of
// the rekey limit, so a short rekey_time with a long life_time (whose
// default rand range is their difference) still rekeys no earlier than
// half way.

// randN returns a uniformly random integer in [0, n).
func randN(n uint64) uint64 {
	if n == 0 {
		return 0
	}
	var b [8]byte
	rand.Read(b[:])
	// The modulo bias is below n/2^64: irrelevant for spreading rekeys.
	return binary.BigEndian.Uint64(b[:]) % n
}

// randUpTo returns a random duration in [0, d).
func randUpTo(d time.Duration) time.Duration {
	if d <= 0 {
		return 0
	}
	return time.Duration(randN(uint64(d)))
}

// jittered is limit less a random part of up to spread (at most half of
// limit), drawn by rnd ([0, n)). A zero limit (none) stays zero.
func jittered(limit, spread uint64, rnd func(uint64) uint64) uint64 {
	if limit == 0 || spread == 0 {
		return limit
	}
	spread = min(spread, limit/2)
	return limit - rnd(spread+1)
}

// childLifetime is one child's lifetimes: the configured ones with its
// own random soft limits.
func childLifetime(c *config.Child, rnd func(uint64) uint64) kernelops.Lifetimes {
	lt := c.Lifetime
	lt.Soft.AddTime = time.Duration(jittered(uint64(lt.Soft.AddTime), uint64(c.RandTime), rnd))
	lt.Soft.Bytes = jittered(lt.Soft.Bytes, c.RandBytes, rnd)
	lt.Soft.Packets = jittered(lt.Soft.Packets, c.RandPackets, rnd)
	return lt
}

// ikeRekeyIn is when an IKE SA of connection c rekeys: rekey_time less a
// random part of rand_time (0: never).
func ikeRekeyIn(c *config.Connection, rnd func(uint64) uint64) time.Duration {
	return time.Duration(jittered(uint64(c.RekeyTime), uint64(c.RandTime), rnd))
}
