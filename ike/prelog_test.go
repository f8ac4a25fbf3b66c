package ike

import (
	"fmt"
	"log/slog"
	"net/netip"
	"strings"
	"testing"
	"time"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"

	"github.com/keyplane/keyplane/ike/message"
	"github.com/keyplane/keyplane/kernelops/clock"
)

// inject hands datagrams to the engine as its plain socket's reader
// would, on the loop: no socket buffer loses any of them.
func inject(t *testing.T, p *peer, from netip.AddrPort, datagrams ...[]byte) {
	t.Helper()
	var plain *sock
	require.NoError(t, p.e.call(t.Context(), func() {
		for _, s := range p.e.sockets {
			if !s.nat {
				plain = s
			}
		}
	}))
	require.NoError(t, p.e.call(t.Context(), func() {
		for _, d := range datagrams {
			p.e.handleDatagram(plain, append([]byte(nil), d...), plain.bound, from)
		}
	}))
}

// linesAbove counts log lines at level or above that contain s.
func linesAbove(log string, level slog.Level, s string) int {
	n := 0
	for l := range strings.SplitSeq(log, "\n") {
		lv := ""
		if _, rest, ok := strings.Cut(l, " level="); ok {
			lv, _, _ = strings.Cut(rest, " ")
		}
		var got slog.Level
		if got.UnmarshalText([]byte(lv)) != nil || got < level {
			continue
		}
		if strings.Contains(l, s) {
			n++
		}
	}
	return n
}

// The probe "pre-authentication traffic: one INFO/WARN line per packet
// (2,990 lines for 3,000 packets)". Now each kind of line is logged once
// per source and window, and the rest told in one line at the window's
// end.
func TestPreauthLogAggregated(t *testing.T) {
	noLeaks(t)
	clk := clock.NewFake(epoch)
	b, _, _ := responder(t, "", withClock(clk), withLogLevel(slog.LevelInfo))
	// From an address no connection accepts: NO_PROPOSAL_CHOSEN.
	stranger := netip.MustParseAddrPort("127.0.0.5:500")
	var inits [][]byte
	for range 3000 {
		inits = append(inits, initRequest(randSPI(), randNonce(), nil))
	}
	inject(t, b, stranger, inits...)
	// Requests for IKE SAs b does not have: INVALID_IKE_SPI.
	var unknown [][]byte
	for range 3000 {
		m := &message.Message{Header: message.Header{SPIi: randSPI(), SPIr: randSPI(), Exchange: message.INFORMATIONAL, Initiator: true, MessageID: 1},
			Payloads: []message.Payload{&message.Encrypted{NextPayload: message.PayloadNone, Data: make([]byte, 40)}}}
		d, err := m.Encode()
		require.NoError(t, err)
		unknown = append(unknown, d)
	}
	inject(t, b, netip.MustParseAddrPort("127.0.0.6:500"), unknown...)
	// Many sources: each told apart up to prelogMaxSources, then one
	// count for the rest.
	for i := range 200 {
		inject(t, b, netip.AddrPortFrom(netip.AddrFrom4([4]byte{127, 1, byte(i / 250), byte(1 + i%250)}), 500), initRequest(randSPI(), randNonce(), nil))
	}
	log := b.logText()
	noConn := "no connection for these addresses"
	assert.Equal(t, 1, linesAbove(log, slog.LevelInfo, "from=127.0.0.5"), "the stranger's first line")
	// Sources told apart: 127.0.0.5, 127.0.0.6 (another kind of line)
	// and 62 of the 200; the 63rd of them has the other sources' line.
	assert.Equal(t, 1+62+1, linesAbove(log, slog.LevelInfo, noConn), "one line per source told apart, one for the others")
	assert.Equal(t, 1, linesAbove(log, slog.LevelInfo, "answering INVALID_IKE_SPI"))
	total := linesAbove(log, slog.LevelInfo, "")
	assert.Less(t, total, 80, "log lines for 6,200 pre-authentication datagrams")

	clk.Advance(prelogWindow)
	waitFor(t, "the window's summary", 3*time.Second, func() bool {
		return strings.Contains(b.logText(), "in the last 10s")
	})
	log = b.logText()
	for _, want := range []string{
		noConn + "; answering NO_PROPOSAL_CHOSEN: 2999 more from 127.0.0.5 in the last 10s",
		fmt.Sprintf(noConn+"; answering NO_PROPOSAL_CHOSEN: %d more from other sources in the last 10s", 200-62-1),
		// The others went over INVALID_IKE_SPI's own rate: unanswered,
		// logged at debug only.
		fmt.Sprintf("answering INVALID_IKE_SPI: %d more from 127.0.0.6 in the last 10s", invalidSPIBurst-1),
	} {
		assert.Contains(t, log, want)
	}
	// The next window starts afresh.
	inject(t, b, stranger, initRequest(randSPI(), randNonce(), nil))
	assert.Equal(t, 2, linesAbove(b.logText(), slog.LevelInfo, "from=127.0.0.5"))
}

// The probe "at debug one 60 KB datagram made a 255 KB log line". 60 KB
// is now over max_packet (dropped, logged with its size only); under it,
// 2,400 payloads show as 32 and a count.
func TestDebugDumpTruncated(t *testing.T) {
	noLeaks(t)
	b, _, _ := responder(t, "")
	var vids []message.Payload
	for range 2400 {
		vids = append(vids, &message.VendorID{})
	}
	m := &message.Message{Header: message.Header{SPIi: randSPI(), Exchange: message.IKE_SA_INIT, Initiator: true}, Payloads: vids}
	d, err := m.Encode()
	require.NoError(t, err)
	require.Greater(t, len(d), 9000)
	inject(t, b, netip.MustParseAddrPort("127.0.0.1:500"), d)
	fl := newRawInit(t, "127.0.0.1", b.e.cfg.Connections[0].LocalPort)
	fl.send(initRequest(randSPI(), randNonce(), nil, &message.VendorID{Data: make([]byte, 60*1024)}))
	waitFor(t, "the oversize datagram's line", 3*time.Second, func() bool {
		return strings.Contains(b.logText(), "larger than max_packet")
	})
	longest := 0
	for l := range strings.SplitSeq(b.logText(), "\n") {
		longest = max(longest, len(l))
	}
	assert.Contains(t, b.logText(), "... 2368 more ]")
	assert.Less(t, longest, 2000, "longest log line")
}
