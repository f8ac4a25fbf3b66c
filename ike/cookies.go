package ike

import (
	"crypto/hmac"
	"crypto/sha256"
	"encoding/binary"
	"net/netip"
)

// cookieVersion leads every cookie (RFC 7296 §2.6: <VersionIDofSecret>).
const cookieVersion = 1

// makeCookie is <version> | HMAC-SHA256(secret, Ni | IPi | SPIi), cut to
// 16 octets: stateless, and only the initiator that got it can echo it.
func (e *Engine) makeCookie(ni []byte, from netip.Addr, spii uint64) []byte {
	m := hmac.New(sha256.New, e.cookieKey[:])
	m.Write(ni)
	m.Write(from.Unmap().AsSlice())
	var b [8]byte
	binary.BigEndian.PutUint64(b[:], spii)
	m.Write(b[:])
	return append([]byte{cookieVersion}, m.Sum(nil)[:16]...)
}

func (e *Engine) cookieValid(c, ni []byte, from netip.Addr, spii uint64) bool {
	return len(c) == 17 && hmac.Equal(c, e.makeCookie(ni, from, spii))
}

// halfOpen counts responder IKE SAs waiting for IKE_AUTH.
func (e *Engine) halfOpen() int {
	n := 0
	for _, sa := range e.sas {
		if sa.state == ikeHalfOpen {
			n++
		}
	}
	return n
}
