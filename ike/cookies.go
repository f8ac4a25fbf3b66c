package ike

import (
	"crypto/hmac"
	"crypto/rand"
	"crypto/sha256"
	"encoding/binary"
	"net/netip"
	"time"
)

// COOKIEs (RFC 7296 §2.6): <VersionIDofSecret> | HMAC-SHA256(secret, Ni |
// IPi | SPIi) cut to 16 octets. They cost no state, and only an initiator
// that receives at its address can echo one. The secret is replaced every
// cookieRotate (at the first use after that time: nothing runs while no
// COOKIE is asked for) and at every configuration load; a COOKIE made
// with the current or the previous secret is accepted, so one lives
// between cookieRotate and twice that. A captured COOKIE is worthless
// after that, and the half-open index (halfopen.go) keeps it from making
// more than one half-open SA meanwhile.

const (
	cookieRotate = 30 * time.Second
	cookieLen    = 1 + 16
)

type cookieSecret struct {
	ver byte
	key [32]byte
	ok  bool
}

// cookieJar holds the current and the previous secret. Loop-owned.
type cookieJar struct {
	cur, prev cookieSecret
	at        time.Time // when cur was made
	lastVer   byte
}

// rotate makes a new current secret; the current one becomes the
// previous, and the previous is wiped.
func (j *cookieJar) rotate(now time.Time) {
	clear(j.prev.key[:])
	j.prev = j.cur
	j.lastVer++
	if j.lastVer == 0 {
		j.lastVer = 1
	}
	j.cur = cookieSecret{ver: j.lastVer, ok: true}
	rand.Read(j.cur.key[:])
	j.at = now
}

// fresh rotates as the time since the last rotation asks: once after
// cookieRotate; and after twice that the previous secret is too old to
// accept as well.
func (j *cookieJar) fresh(now time.Time) {
	age := now.Sub(j.at)
	switch {
	case !j.cur.ok || age >= 2*cookieRotate || age < 0:
		j.rotate(now)
		clear(j.prev.key[:])
		j.prev = cookieSecret{}
	case age >= cookieRotate:
		j.rotate(now)
	}
}

func cookieMAC(s *cookieSecret, ni []byte, from netip.Addr, spii uint64) []byte {
	m := hmac.New(sha256.New, s.key[:])
	m.Write(ni)
	m.Write(from.Unmap().AsSlice())
	var b [8]byte
	binary.BigEndian.PutUint64(b[:], spii)
	m.Write(b[:])
	return append([]byte{s.ver}, m.Sum(nil)[:cookieLen-1]...)
}

// make returns the COOKIE for this initiator under the current secret.
func (j *cookieJar) make(now time.Time, ni []byte, from netip.Addr, spii uint64) []byte {
	j.fresh(now)
	return cookieMAC(&j.cur, ni, from, spii)
}

// valid reports whether c is a COOKIE made for this initiator with the
// current or the previous secret.
func (j *cookieJar) valid(now time.Time, c, ni []byte, from netip.Addr, spii uint64) bool {
	j.fresh(now)
	if len(c) != cookieLen {
		return false
	}
	for _, s := range []*cookieSecret{&j.cur, &j.prev} {
		if s.ok && c[0] == s.ver {
			return hmac.Equal(c, cookieMAC(s, ni, from, spii))
		}
	}
	return false
}
