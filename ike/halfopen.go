package ike

import (
	"bytes"
	"context"
	"fmt"
	"log/slog"
	"net/netip"

	"github.com/keyplane/keyplane/ike/config"
	"github.com/keyplane/keyplane/ike/message"
)

// Half-open IKE SAs: a responder's, IKE_SA_INIT answered, no IKE_AUTH
// yet. Each costs a key exchange and memory, and anyone who can send a
// datagram makes them, so they are limited as strongSwan limits them
// (config.Daemon): a COOKIE is demanded from cookie_threshold of them in
// total or cookie_threshold_ip from one source, and IKE_SA_INIT requests
// are dropped from block_threshold from one source or
// init_limit_half_open in total. They are counted as they come and go
// (setState calls halfOpenMoved), never by a scan of the SAs, and
// indexed by (source address, SPIi) without the port, so an IKE_SA_INIT
// request sent again from another port — a retransmission through a
// NAT that changed its mapping, or a replay of a captured one with a
// valid COOKIE — finds the SA it made instead of making another. All of
// this is loop-owned; every map holds only entries of live half-open SAs,
// so none grows beyond init_limit_half_open.

// initKey finds a responder's half-open SA from a request sent again.
type initKey struct {
	spii uint64
	ip   netip.Addr // unmapped, no zone; never the port
}

// halfOpenEntry is what an SA counted as half-open remembers of its
// counting: its source may change before it leaves the state (an
// IKE_AUTH from another port or address), the counts must not.
type halfOpenEntry struct {
	key    initKey
	bucket netip.Addr
	on     bool
}

// halfOpens are the running counts. Loop-owned.
type halfOpens struct {
	total int
	from  map[netip.Addr]int // by sourceBucket; only buckets with half-open SAs
}

// admission is the engine's pre-authentication state: half-open counts,
// COOKIE secrets, the pre-authentication log (prelog.go) and the
// datagram intake (ingress.go).
type admission struct {
	ho      halfOpens
	cookies cookieJar
	log     prelog
	in      ingress
	// Counters since start, for Admission.
	cookiesSent, blocked, overTotal, replays int
}

// sourceBucket is what per-source limits count by: an IPv4 address, or
// an IPv6 address's /64 (one host may hold a whole /64).
func sourceBucket(a netip.Addr) netip.Addr {
	a = a.Unmap().WithZone("")
	if a.Is6() {
		p, _ := a.Prefix(64)
		return p.Addr()
	}
	return a
}

func initKeyOf(spii uint64, from netip.Addr) initKey {
	return initKey{spii: spii, ip: from.Unmap().WithZone("")}
}

// add counts one more from bucket; remove one less.
func (h *halfOpens) add(bucket netip.Addr) {
	if h.from == nil {
		h.from = map[netip.Addr]int{}
	}
	h.total++
	h.from[bucket]++
}

func (h *halfOpens) remove(bucket netip.Addr) {
	h.total--
	if n := h.from[bucket] - 1; n > 0 {
		h.from[bucket] = n
	} else {
		delete(h.from, bucket)
	}
}

// halfOpenMoved keeps the counts and the index as sa moves from state
// sa.state to to. Called by setState before the change.
func (e *Engine) halfOpenMoved(sa *ikeSA, to ikeState) {
	if sa.initiator {
		return
	}
	a := &e.adm
	switch {
	case to == ikeHalfOpen && !orZero(sa.hs).ho.on:
		ho := &made(&sa.hs).ho
		*ho = halfOpenEntry{key: initKeyOf(sa.spii, sa.remote.Addr()), bucket: sourceBucket(sa.remote.Addr()), on: true}
		a.ho.add(ho.bucket)
		e.initIndex[ho.key] = sa
	case to != ikeHalfOpen && orZero(sa.hs).ho.on:
		ho := &sa.hs.ho
		ho.on = false
		a.ho.remove(ho.bucket)
		if e.initIndex[ho.key] == sa {
			delete(e.initIndex, ho.key)
		}
	}
}

// initVerdict is what becomes of an IKE_SA_INIT request that would make
// a new half-open SA.
type initVerdict uint8

const (
	initAdmit        initVerdict = iota
	initCookie                   // answer with a COOKIE to echo
	initDropBlocked              // block_threshold from this source
	initDropOverload             // init_limit_half_open in total
)

// admit decides, from the limits, the half-open SAs in total and from
// the request's source, whether the request carries a COOKIE and whether
// it is a valid one (asked only when it matters). Pure.
func admit(d *config.Daemon, total, fromSource int, cookie bool, cookieValid func() bool) initVerdict {
	switch {
	case d.InitLimitHalfOpen > 0 && total >= d.InitLimitHalfOpen:
		return initDropOverload
	case d.BlockThreshold > 0 && fromSource >= d.BlockThreshold:
		return initDropBlocked
	}
	need := (d.CookieThreshold > 0 && total >= d.CookieThreshold) ||
		(d.CookieThresholdIP > 0 && fromSource >= d.CookieThresholdIP)
	if need && (!cookie || !cookieValid()) {
		return initCookie
	}
	return initAdmit
}

// initSentAgain handles an IKE_SA_INIT request from an address that
// already has a half-open SA with this SPIi: the same request again is
// answered with the same response (to whatever port it came from: NATs
// change mappings), anything else is dropped. It reports whether the
// request was one of those.
func (e *Engine) initSentAgain(s *sock, m *message.Message, local, remote netip.AddrPort) bool {
	sa := e.initIndex[initKeyOf(m.SPIi, remote.Addr())]
	if sa == nil {
		return false
	}
	if hs := orZero(sa.hs); bytes.Equal(m.Raw(), hs.initReq) && hs.initResp != nil {
		if remote != sa.remote {
			e.adm.replays++
			e.preLog(e.log, remote.Addr(), slog.LevelInfo, "IKE_SA_INIT request repeated from another port: answered as before, no new SA",
				"half-open", sa.remote, "spii", fmt.Sprintf("%016x", m.SPIi))
		}
		e.sendTo(s, local, remote, hs.initResp)
	}
	return true
}

// admitInit applies the limits to an IKE_SA_INIT request that would make
// a half-open SA; false: it was answered with a COOKIE or dropped.
func (e *Engine) admitInit(s *sock, m *message.Message, ni []byte, local, remote netip.AddrPort) bool {
	a := &e.adm
	d := &e.cfg.Daemon
	from := remote.Addr()
	// Requests being computed (workers.go) count as half-open SAs.
	bucket := sourceBucket(from)
	total, n := a.ho.total+e.crypto.pending.total, a.ho.from[bucket]+e.crypto.pending.from[bucket]
	c := m.Notify(message.COOKIE)
	now := e.clk.Now()
	switch admit(d, total, n, c != nil, func() bool { return a.cookies.valid(now, c.Data, ni, from, m.SPIi) }) {
	case initAdmit:
		return true
	case initCookie:
		a.cookiesSent++
		e.preLog(e.log, from, slog.LevelInfo, "half-open IKE SAs at the threshold: demanding a COOKIE",
			"half-open", total, "from-source", n, "cookie_threshold", d.CookieThreshold, "cookie_threshold_ip", d.CookieThresholdIP)
		e.answerPlain(s, m, 0, local, remote, &message.Notify{NotifyType: message.COOKIE,
			Data: a.cookies.make(now, ni, from, m.SPIi)})
	case initDropBlocked:
		a.blocked++
		e.preLog(e.log, from, slog.LevelWarn, "dropped IKE_SA_INIT: block_threshold half-open IKE SAs from this source",
			"from-source", n, "block_threshold", d.BlockThreshold)
	case initDropOverload:
		a.overTotal++
		e.preLog(e.log, from, slog.LevelWarn, "dropped IKE_SA_INIT: init_limit_half_open half-open IKE SAs in total",
			"half-open", total, "init_limit_half_open", d.InitLimitHalfOpen)
	}
	return false
}

// AdmissionStats are the pre-authentication counters (see halfopen.go
// and ingress.go).
type AdmissionStats struct {
	HalfOpen        int `json:"half_open"`         // half-open IKE SAs now
	HalfOpenSources int `json:"half_open_sources"` // sources (IPv4 addresses, IPv6 /64s) they come from
	CookiesSent     int `json:"cookies_sent"`      // IKE_SA_INIT requests answered with a COOKIE, since start
	Blocked         int `json:"blocked"`           // ... dropped at block_threshold
	OverLimit       int `json:"over_limit"`        // ... dropped at init_limit_half_open
	SentAgain       int `json:"sent_again"`        // ... repeated from another port, answered without a new SA
	TooBig          int `json:"too_big"`           // datagrams dropped: larger than max_packet
	Behind          int `json:"behind"`            // datagrams dropped: the engine's queue was full
	Busy            int `json:"crypto_busy"`       // IKE_SA_INIT requests dropped: the crypto workers' queue was full
}

// Admission returns the pre-authentication counters.
func (e *Engine) Admission(ctx context.Context) (AdmissionStats, error) {
	var s AdmissionStats
	err := e.call(ctx, func() {
		a := &e.adm
		s = AdmissionStats{HalfOpen: a.ho.total, HalfOpenSources: len(a.ho.from), CookiesSent: a.cookiesSent,
			Blocked: a.blocked, OverLimit: a.overTotal, SentAgain: a.replays,
			TooBig: int(a.in.tooBigAll.Load()), Behind: int(a.in.fullAll.Load()),
			Busy: int(e.crypto.busy.Load())}
	})
	return s, err
}
