package ike

import (
	"fmt"
	"log/slog"
	"net/netip"
	"time"
)

// The pre-authentication log. Lines caused by messages nobody has
// authenticated (IKE_SA_INIT requests, requests for unknown SPIs,
// half-open SAs that never authenticate) would otherwise come one per
// datagram, so anyone could fill the log. Each kind of line is logged
// once per source (an IPv4 address or an IPv6 /64) in a window of
// prelogWindow; the others of the window are counted and told in one
// line when it ends ("...: 2990 more from 203.0.113.7 in the last 10s").
// At most prelogMaxSources sources are told apart in a window; the rest
// share one count ("other sources"). So the log takes at most about two
// lines per kind and source kept, per window, whatever the traffic.

const (
	prelogWindow     = 10 * time.Second
	prelogMaxSources = 64
)

type prelogKey struct {
	src  netip.Addr // invalid: other sources
	what string
}

type prelogCount struct {
	n     int
	level slog.Level
}

// prelog is loop-owned.
type prelog struct {
	seen    map[prelogKey]*prelogCount
	sources map[netip.Addr]bool
	timer   *timer
}

// preLog logs msg (a constant: it names the kind of line) on l at level,
// with args and the source, unless a line of this kind from this source
// was logged in the current window; then it only counts it.
func (e *Engine) preLog(l *slog.Logger, src netip.Addr, level slog.Level, msg string, args ...any) {
	if ok, other := e.preLogs(l, src, level, msg); ok {
		e.preLogLine(l, src, level, msg, other, args...)
	}
}

// preLogs is preLog's decision, for a caller whose arguments cost
// allocations to build (a line logged per handshake, counted nearly
// always): ok, log the line now with preLogLine; otherwise it was counted.
// other: src is counted with the other sources.
func (e *Engine) preLogs(l *slog.Logger, src netip.Addr, level slog.Level, msg string) (ok, other bool) {
	if !l.Enabled(e.ctx, level) {
		return false, false
	}
	p := &e.adm.log
	if p.seen == nil {
		p.seen, p.sources = map[prelogKey]*prelogCount{}, map[netip.Addr]bool{}
	}
	b := sourceBucket(src)
	if !p.sources[b] {
		if len(p.sources) >= prelogMaxSources {
			b, other = netip.Addr{}, true
		} else {
			p.sources[b] = true
		}
	}
	k := prelogKey{src: b, what: msg}
	if c := p.seen[k]; c != nil {
		c.n++
		return false, other
	}
	p.seen[k] = &prelogCount{level: level}
	if p.timer == nil {
		p.timer = e.after(prelogWindow, e.flushPrelog)
	}
	return true, other
}

// preLogLine logs the line preLogs allowed.
func (e *Engine) preLogLine(l *slog.Logger, src netip.Addr, level slog.Level, msg string, other bool, args ...any) {
	if other {
		args = append(args, "counted-with", "other sources")
	}
	l.Log(e.ctx, level, msg, append(args, "from", src)...)
}

// flushPrelog ends the window: one line for each kind and source with
// lines not logged.
func (e *Engine) flushPrelog() {
	p := &e.adm.log
	p.timer = nil
	for k, c := range p.seen {
		if c.n == 0 {
			continue
		}
		src := "other sources"
		if k.src.IsValid() {
			src = k.src.String()
		}
		e.log.Log(e.ctx, c.level, fmt.Sprintf("%s: %d more from %s in the last %s", k.what, c.n, src, prelogWindow),
			"count", c.n, "source", src, "window", prelogWindow)
	}
	clear(p.seen)
	clear(p.sources)
}

// logStateChange logs sa's state line (see setState). A responder's SA
// that never authenticated comes and goes at anyone's request: its
// lines are pre-authentication ones.
func (sa *ikeSA) logStateChange(from, to ikeState, level slog.Level, msg string, args ...any) {
	if !sa.initiator && sa.estAt == 0 && (from == 0 || from == ikeHalfOpen) && (to == ikeHalfOpen || to == ikeDead) {
		sa.e.preLog(sa.logger(), sa.remote.Addr(), level, msg, args...)
		return
	}
	sa.logger().Log(sa.e.ctx, level, msg, args...)
}
