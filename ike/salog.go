package ike

import (
	"context"
	"log/slog"
	"slices"
)

// saLog is an IKE SA's log handler: it puts the SA's name, ID and SPIs,
// read as each line is logged, before the line's own attributes — the
// lines read as from a logger made by With, but the logger is made once
// per SA. A logger made by With on every change of state or SPIs cost a
// handler clone per change and ≈350 bytes kept per SA.
type saLog struct {
	inner slog.Handler
	sa    *ikeSA
	attrs []slog.Attr // from WithAttrs: after the SA's
}

func (h *saLog) Enabled(ctx context.Context, l slog.Level) bool { return h.inner.Enabled(ctx, l) }

func (h *saLog) Handle(ctx context.Context, r slog.Record) error {
	out := slog.NewRecord(r.Time, r.Level, r.Message, r.PC)
	out.AddAttrs(h.saAttrs()...)
	out.AddAttrs(h.attrs...)
	r.Attrs(func(a slog.Attr) bool {
		out.AddAttrs(a)
		return true
	})
	return h.inner.Handle(ctx, out)
}

// saAttrs are the attributes naming the SA (logvalues.go), as they are now.
func (h *saLog) saAttrs() []slog.Attr {
	sa := h.sa
	return []slog.Attr{
		slog.String("ike", sa.name()),
		slog.Any("ike-id", sa.id),
		slog.Any("spis", ikeSPIs{sa.spii, sa.spir}),
	}
}

func (h *saLog) WithAttrs(as []slog.Attr) slog.Handler {
	if len(as) == 0 {
		return h
	}
	return &saLog{inner: h.inner, sa: h.sa, attrs: append(slices.Clip(h.attrs), as...)}
}

// WithGroup fixes the SA's attributes as they are now: the group's lines
// keep them outside the group, as With would have.
func (h *saLog) WithGroup(name string) slog.Handler {
	if name == "" {
		return h
	}
	return h.inner.WithAttrs(append(h.saAttrs(), h.attrs...)).WithGroup(name)
}
