// Package logging is the daemon's log/slog handler: text or JSON lines,
// a level that a reload can change, per-connection levels, and a hook
// that sees every warning and error (for metrics) whatever the level.
//
// It also keeps the output well-formed: an attribute named like one of
// slog's own keys (msg, time, level, source) would make a second "msg"
// in a line, which JSON log pipelines reject; such an attribute is
// renamed ("msg" to "message", the others get an "_attr" suffix).
package logging

import (
	"context"
	"io"
	"log/slog"
	"sync"
	"sync/atomic"

	"github.com/keyplane/keyplane/ike/config"
)

// ConnKeys are the attributes that name the connection a log line is
// about: the engine's IKE SA and child loggers carry "ike", and its
// connection-level lines "connection".
var ConnKeys = []string{"ike", "connection"}

// Hook sees each record at Warn or above before level filtering, with
// the error values among its attributes.
type Hook func(level slog.Level, errs []error)

// Options configure New.
type Options struct {
	Format config.LogFormat
	// Level is the daemon's level; nil: info.
	Level *slog.LevelVar
	Hook  Hook
}

// shared is what every handler derived from one New shares.
type shared struct {
	level *slog.LevelVar
	conns atomic.Pointer[connLevels]
	hook  Hook
}

// connLevels are the per-connection levels and the lowest of them (so
// Enabled costs the same with one connection or ten thousand).
type connLevels struct {
	by  map[string]slog.Level
	min slog.Level
	any bool
}

// Handler is the daemon's slog.Handler.
//
// WithAttrs only notes the attributes: the engine binds a logger to each
// IKE SA and child (several per handshake) and most never write a line,
// so the inner handler formats them at the first record that passes the
// level (values are taken as they are at WithAttrs; a LogValuer is
// resolved then, at that first record).
type Handler struct {
	s     *shared
	inner slog.Handler // with the attributes bound before attrs
	attrs []slog.Attr  // bound since, given to inner at first use
	built *built       // inner with attrs; nil when attrs is empty
	conn  string       // the connection bound by WithAttrs, if any
	group bool         // a group is open: attributes are nested, no collision
}

type built struct {
	once sync.Once
	h    slog.Handler
}

// handler is the inner handler with every bound attribute.
func (h *Handler) handler() slog.Handler {
	if h.built == nil {
		return h.inner
	}
	h.built.once.Do(func() { h.built.h = h.inner.WithAttrs(h.attrs) })
	return h.built.h
}

// New returns a Handler writing to w.
func New(w io.Writer, o Options) *Handler {
	s := &shared{level: o.Level, hook: o.Hook}
	if s.level == nil {
		s.level = new(slog.LevelVar)
	}
	s.conns.Store(&connLevels{by: map[string]slog.Level{}})
	// The inner handler writes everything it is given: this one filters.
	ho := &slog.HandlerOptions{Level: slog.Level(-1 << 10)}
	var inner slog.Handler = slog.NewTextHandler(w, ho)
	if o.Format == config.LogJSON {
		inner = slog.NewJSONHandler(w, ho)
	}
	return &Handler{s: s, inner: inner}
}

// SetConnLevels replaces the per-connection levels (connection name to
// level); connections not listed log at the daemon's level.
func (h *Handler) SetConnLevels(levels map[string]slog.Level) {
	cl := &connLevels{by: make(map[string]slog.Level, len(levels))}
	for k, v := range levels {
		cl.by[k] = v
		if !cl.any || v < cl.min {
			cl.min, cl.any = v, true
		}
	}
	h.s.conns.Store(cl)
}

// ConnLevels reads the per-connection levels of cfg.
func ConnLevels(cfg *config.Config) map[string]slog.Level {
	out := map[string]slog.Level{}
	for _, c := range cfg.Connections {
		if c.LogLevel != nil {
			out[c.Name] = *c.LogLevel
		}
	}
	return out
}

func (h *Handler) levelFor(conn string) slog.Level {
	if conn != "" {
		if l, ok := h.s.conns.Load().by[conn]; ok {
			return l
		}
	}
	return h.s.level.Level()
}

// Enabled is cheap: the level of the bound connection, or the lowest
// level any connection logs at (Handle decides per record then).
func (h *Handler) Enabled(_ context.Context, l slog.Level) bool {
	if h.s.hook != nil && l >= slog.LevelWarn {
		return true
	}
	if h.conn != "" {
		return l >= h.levelFor(h.conn)
	}
	min := h.s.level.Level()
	if cl := h.s.conns.Load(); cl.any && cl.min < min {
		min = cl.min
	}
	return l >= min
}

func (h *Handler) Handle(ctx context.Context, r slog.Record) error {
	conn := h.conn
	var errs []error
	r.Attrs(func(a slog.Attr) bool {
		if conn == "" && !h.group && isConnKey(a.Key) {
			conn = a.Value.String()
		}
		if err, ok := a.Value.Any().(error); ok && a.Value.Kind() == slog.KindAny {
			errs = append(errs, err)
		}
		return true
	})
	if h.s.hook != nil && r.Level >= slog.LevelWarn {
		h.s.hook(r.Level, errs)
	}
	if r.Level < h.levelFor(conn) {
		return nil
	}
	if !h.group {
		r = renamed(r)
	}
	return h.handler().Handle(ctx, r)
}

func (h *Handler) WithAttrs(as []slog.Attr) slog.Handler {
	if len(as) == 0 {
		return h
	}
	n := *h
	start := len(h.attrs)
	n.attrs = append(h.attrs[:start:start], as...) // a copy: as is the caller's
	if !h.group {
		for i := start; i < len(n.attrs); i++ {
			a := n.attrs[i]
			if n.conn == "" && isConnKey(a.Key) {
				n.conn = a.Value.String()
			}
			n.attrs[i].Key = safeKey(a.Key)
		}
	}
	n.built = &built{}
	return &n
}

func (h *Handler) WithGroup(name string) slog.Handler {
	if name == "" {
		return h
	}
	n := *h
	n.inner, n.attrs, n.built = h.handler().WithGroup(name), nil, nil
	n.group = true
	return &n
}

func isConnKey(k string) bool {
	for _, c := range ConnKeys {
		if k == c {
			return true
		}
	}
	return false
}

// safeKey renames an attribute that would collide with slog's own keys.
func safeKey(k string) string {
	switch k {
	case slog.MessageKey:
		return "message"
	case slog.TimeKey, slog.LevelKey, slog.SourceKey:
		return k + "_attr"
	}
	return k
}

// renamed returns r with colliding attribute keys renamed (r itself
// when none collide, the common case).
func renamed(r slog.Record) slog.Record {
	clash := false
	r.Attrs(func(a slog.Attr) bool {
		if safeKey(a.Key) != a.Key {
			clash = true
			return false
		}
		return true
	})
	if !clash {
		return r
	}
	out := slog.NewRecord(r.Time, r.Level, r.Message, r.PC)
	r.Attrs(func(a slog.Attr) bool {
		a.Key = safeKey(a.Key)
		out.AddAttrs(a)
		return true
	})
	return out
}
