package ike

import (
	"bytes"
	"log/slog"
	"strings"
	"testing"

	"github.com/stretchr/testify/assert"

	"github.com/keyplane/keyplane/ike/config"
)

// TestSALog: an SA's lines carry its attributes as they are when the line
// is logged, before the line's own and those added by With, as a logger
// made by With would write them; a child's name it, then its IKE SA.
func TestSALog(t *testing.T) {
	var buf bytes.Buffer
	h := slog.NewTextHandler(&buf, &slog.HandlerOptions{
		ReplaceAttr: func(_ []string, a slog.Attr) slog.Attr {
			if a.Key == slog.TimeKey {
				return slog.Attr{}
			}
			return a
		},
	})
	e := &Engine{log: slog.New(h).With("peer", "a")}
	sa := &ikeSA{e: e, id: 7, conn: &config.Connection{Name: "gw"}, spii: 0x1122334455667788}
	sa.setLogger()
	line := func(f func()) string {
		buf.Reset()
		f()
		return strings.TrimSpace(buf.String())
	}
	assert.Equal(t, `level=INFO msg=one peer=a ike=gw ike-id=7 spis="1122334455667788_i 0000000000000000_r" k=v`,
		line(func() { sa.log.Info("one", "k", "v") }))
	first := sa.log
	sa.spir = 0xaabbccddeeff0011
	sa.setLogger()
	assert.Same(t, first, sa.log, "made once")
	assert.Equal(t, `level=INFO msg=two peer=a ike=gw ike-id=7 spis="1122334455667788_i aabbccddeeff0011_r" w=1 k=v`,
		line(func() { sa.log.With("w", 1).Info("two", "k", "v") }))
	assert.Equal(t, `level=INFO msg=three peer=a ike=gw ike-id=7 spis="1122334455667788_i aabbccddeeff0011_r" g.k=v`,
		line(func() { sa.log.WithGroup("g").Info("three", "k", "v") }))
	assert.Empty(t, line(func() { sa.log.Debug("not enabled") }))

	ch := &childSA{e: e, ike: sa, id: 3, cfg: &config.Child{Name: "net"}, reqid: 0x10, inSPI: 0xc1, outSPI: 0xc2}
	assert.Equal(t, `level=WARN msg=four peer=a child=net child-id=3 reqid=0x10 spi-in=000000c1 spi-out=000000c2 ike=gw ike-id=7 spis="1122334455667788_i aabbccddeeff0011_r" k=v`,
		line(func() { ch.logger().Warn("four", "k", "v") }))
}
