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
	sa := &ikeSA{e: e, id: 7, conn: &config.Connection{Name: "gw"}, spii: 0x1122334455667788, hs: &handshake{}}
	line := func(f func()) string {
		buf.Reset()
		f()
		return strings.TrimSpace(buf.String())
	}
	assert.Equal(t, `level=INFO msg=one peer=a ike=gw ike-id=7 spis="1122334455667788_i 0000000000000000_r" k=v`,
		line(func() { sa.logger().Info("one", "k", "v") }))
	first := sa.logger()
	sa.spir = 0xaabbccddeeff0011
	assert.Same(t, first, sa.logger(), "made once while the handshake state is there")
	assert.Equal(t, `level=INFO msg=two peer=a ike=gw ike-id=7 spis="1122334455667788_i aabbccddeeff0011_r" w=1 k=v`,
		line(func() { sa.logger().With("w", 1).Info("two", "k", "v") }))
	assert.Equal(t, `level=INFO msg=three peer=a ike=gw ike-id=7 spis="1122334455667788_i aabbccddeeff0011_r" g.k=v`,
		line(func() { sa.logger().WithGroup("g").Info("three", "k", "v") }))
	assert.Empty(t, line(func() { sa.logger().Debug("not enabled") }))

	ch := &childSA{e: e, ike: sa, id: 3, cfg: &config.Child{Name: "net"}, reqid: 0x10, inSPI: 0xc1, outSPI: 0xc2}
	assert.Equal(t, `level=WARN msg=four peer=a child=net child-id=3 reqid=0x10 spi-in=000000c1 spi-out=000000c2 ike=gw ike-id=7 spis="1122334455667788_i aabbccddeeff0011_r" k=v`,
		line(func() { ch.logger().Warn("four", "k", "v") }))
	// Established (no handshake state): each line's logger is made then,
	// and reads the SA as it is.
	sa.state = ikeEstablished
	sa.dropHandshake()
	assert.Nil(t, sa.hs)
	assert.NotSame(t, sa.logger(), sa.logger(), "none kept after the handshake")
	sa.spir = 0x0102030405060708
	assert.Equal(t, `level=INFO msg=five peer=a ike=gw ike-id=7 spis="1122334455667788_i 0102030405060708_r"`,
		line(func() { sa.logger().Info("five") }))
}
