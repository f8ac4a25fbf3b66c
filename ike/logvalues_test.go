package ike

import (
	"bytes"
	"fmt"
	"log/slog"
	"testing"

	"github.com/stretchr/testify/assert"
)

// The lazily formatted attribute values write what fmt wrote for them.
func TestLogValuesText(t *testing.T) {
	for _, tc := range []struct {
		v    slog.LogValuer
		want string
	}{
		{hex32(0xc0ffee), "00c0ffee"},
		{reqidText(0x2a), "0x2a"},
		{reqidText(0), "0x0"},
		{hex64(0x1234), "0000000000001234"},
		{ikeSPIs{0xab, 0xcd}, fmt.Sprintf("%016x_i %016x_r", 0xab, 0xcd)},
	} {
		noTime := &slog.HandlerOptions{ReplaceAttr: func(_ []string, a slog.Attr) slog.Attr {
			if a.Key == slog.TimeKey {
				return slog.Attr{}
			}
			return a
		}}
		for _, json := range []bool{false, true} {
			var got, want bytes.Buffer
			h := func(b *bytes.Buffer) slog.Handler {
				if json {
					return slog.NewJSONHandler(b, noTime)
				}
				return slog.NewTextHandler(b, noTime)
			}
			slog.New(h(&got)).With("k", tc.v).Info("m")
			slog.New(h(&want)).With("k", tc.want).Info("m")
			assert.Equal(t, want.String(), got.String(), "%T", tc.v)
		}
	}
}
