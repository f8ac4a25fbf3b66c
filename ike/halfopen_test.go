package ike

import (
	"fmt"
	"net"
	"net/netip"
	"strings"
	"testing"
	"time"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"

	"github.com/keyplane/keyplane/ike/config"
	"github.com/keyplane/keyplane/ike/message"
	"github.com/keyplane/keyplane/internal/ikeprobe"
	"github.com/keyplane/keyplane/internal/memtest"
	"github.com/keyplane/keyplane/kernelops/clock"
)

// rawInit is a test double of an initiator that only ever sends
// IKE_SA_INIT requests, from a socket of its own: what a flooding host
// does. It echoes COOKIEs when asked to.
type rawInit struct {
	t  testing.TB
	c  *net.UDPConn
	to *net.UDPAddr
}

func newRawInit(t testing.TB, from string, to uint16) *rawInit {
	t.Helper()
	c, err := net.ListenUDP("udp4", &net.UDPAddr{IP: net.ParseIP(from)})
	require.NoError(t, err)
	t.Cleanup(func() { c.Close() })
	// A flood's answers (≈2,000 COOKIEs) arrive faster than a starved
	// reader takes them on a loaded machine: with the default buffer the
	// kernel dropped some, and the test counted fewer echoes than the
	// engine had sent COOKIEs for.
	require.NoError(t, c.SetReadBuffer(4<<20))
	return &rawInit{t: t, c: c, to: &net.UDPAddr{IP: net.IPv4(127, 0, 0, 1), Port: int(to)}}
}

func (r *rawInit) port() uint16 { return uint16(r.c.LocalAddr().(*net.UDPAddr).Port) }

func initRequest(spii uint64, nonce, cookie []byte, extra ...message.Payload) []byte {
	return ikeprobe.InitRequest(spii, nonce, cookie, extra...)
}

func randSPI() uint64   { return ikeprobe.RandSPI() }
func randNonce() []byte { return ikeprobe.RandNonce() }

func (r *rawInit) send(b []byte) {
	r.t.Helper()
	_, err := r.c.WriteToUDP(b, r.to)
	require.NoError(r.t, err)
}

// answer reads the next answer; nil if none comes within d.
func (r *rawInit) answer(d time.Duration) *message.Message {
	r.t.Helper()
	r.c.SetReadDeadline(time.Now().Add(d))
	buf := make([]byte, 65536)
	n, _, err := r.c.ReadFromUDP(buf)
	if err != nil {
		return nil
	}
	m, err := message.Parse(buf[:n])
	require.NoError(r.t, err)
	return m
}

// initEchoing sends a new IKE_SA_INIT request and, if the answer is a
// COOKIE, the request again with it. It returns the last request sent
// and its answer (nil: none within wait, the request was dropped).
func (r *rawInit) initEchoing(wait time.Duration, extra ...message.Payload) ([]byte, *message.Message) {
	r.t.Helper()
	spii, ni := randSPI(), randNonce()
	req := initRequest(spii, ni, nil, extra...)
	r.send(req)
	a := r.answer(wait)
	if a != nil && a.Notify(message.COOKIE) != nil && a.Find(message.PayloadSA) == nil {
		req = initRequest(spii, ni, a.Notify(message.COOKIE).Data, extra...)
		r.send(req)
		a = r.answer(wait)
	}
	return req, a
}

// flood sends n new IKE_SA_INIT requests from each of rs, echoing
// COOKIEs (ikeprobe.Flood).
func flood(t testing.TB, rs []*rawInit, n int, quiet time.Duration, extra ...message.Payload) ikeprobe.Result {
	t.Helper()
	var cs []*net.UDPConn
	for _, r := range rs {
		cs = append(cs, r.c)
	}
	res, err := ikeprobe.Flood(cs, rs[0].to, n, quiet, extra...)
	require.NoError(t, err)
	return res
}

// responder is an engine answering on loopback with daemon settings
// extra (on top of the tests' defaults).
func responder(t *testing.T, daemon string, opts ...peerOpt) (*peer, side, side) {
	sa, sb := pairSides(t)
	sb.daemonExtra = daemon
	return newPeer(t, "b", sb.config(t, "b"), opts...), sa, sb
}

// checkHalfOpenBooks compares the running counts and the index with a
// scan of every SA: what each IKE_SA_INIT used to pay for.
func checkHalfOpenBooks(t *testing.T, p *peer) (total int) {
	t.Helper()
	require.NoError(t, p.e.call(t.Context(), func() {
		byBucket := map[netip.Addr]int{}
		indexed := 0
		for _, sa := range p.e.sas {
			if sa.state == ikeHalfOpen {
				total++
				byBucket[sourceBucket(sa.hs.ho.bucket)]++
				assert.Same(t, sa, p.e.initIndex[sa.hs.ho.key], "half-open SA not indexed")
				indexed++
			}
		}
		assert.Equal(t, total, p.e.adm.ho.total, "running count")
		assert.Equal(t, byBucket, map[netip.Addr]int(p.e.adm.ho.from), "per-source counts")
		for _, n := range p.e.adm.ho.from {
			assert.Positive(t, n, "an empty per-source entry was kept")
		}
		assert.Len(t, p.e.initIndex, indexed, "the index holds SAs that are not half-open")
	}))
	return total
}

func TestAdmitTable(t *testing.T) {
	d := config.Daemon{CookieThreshold: 30, CookieThresholdIP: 3, BlockThreshold: 5, InitLimitHalfOpen: 1000}
	off := config.Daemon{}
	yes, no := func() bool { return true }, func() bool { return false }
	for _, tc := range []struct {
		name          string
		d             config.Daemon
		total, source int
		cookie        bool
		valid         func() bool
		want          initVerdict
	}{
		{"first from a source", d, 0, 0, false, no, initAdmit},
		{"below both thresholds", d, 29, 2, false, no, initAdmit},
		{"cookie_threshold_ip reached", d, 3, 3, false, no, initCookie},
		{"cookie_threshold_ip, invalid COOKIE", d, 3, 3, true, no, initCookie},
		{"cookie_threshold_ip, valid COOKIE", d, 3, 3, true, yes, initAdmit},
		{"cookie_threshold reached", d, 30, 0, false, no, initCookie},
		{"cookie_threshold, valid COOKIE", d, 30, 0, true, yes, initAdmit},
		{"block_threshold, even with a valid COOKIE", d, 5, 5, true, yes, initDropBlocked},
		{"init_limit_half_open", d, 1000, 0, true, yes, initDropOverload},
		{"all limits off", off, 1 << 20, 1 << 20, false, no, initAdmit},
	} {
		t.Run(tc.name, func(t *testing.T) {
			assert.Equal(t, tc.want, admit(&tc.d, tc.total, tc.source, tc.cookie, tc.valid))
		})
	}
}

func TestSourceBucket(t *testing.T) {
	for in, want := range map[string]string{
		"203.0.113.7":          "203.0.113.7",
		"::ffff:203.0.113.7":   "203.0.113.7",
		"2001:db8:1:2:3:4:5:6": "2001:db8:1:2::",
		"fe80::1%eth0":         "fe80::",
	} {
		assert.Equal(t, want, sourceBucket(netip.MustParseAddr(in)).String(), in)
	}
}

// TestCookieRotation: a COOKIE is accepted under the secret it was made
// with and the next one, not later; the version byte tells them apart.
func TestCookieRotation(t *testing.T) {
	var j cookieJar
	t0 := time.Unix(1e9, 0)
	from, ni := netip.MustParseAddr("192.0.2.1"), randNonce()
	c := j.make(t0, ni, from, 7)
	require.Len(t, c, cookieLen)
	assert.True(t, j.valid(t0, c, ni, from, 7))
	assert.False(t, j.valid(t0, c, ni, from, 8), "another SPIi")
	assert.False(t, j.valid(t0, c, ni, netip.MustParseAddr("192.0.2.2"), 7), "another address")
	assert.False(t, j.valid(t0, c[:16], ni, from, 7), "short")
	c2 := j.make(t0.Add(cookieRotate), ni, from, 7)
	assert.NotEqual(t, c[0], c2[0], "a new secret has a new version")
	assert.True(t, j.valid(t0.Add(cookieRotate+time.Second), c, ni, from, 7), "the previous secret is accepted")
	assert.False(t, j.valid(t0.Add(2*cookieRotate), c, ni, from, 7), "two rotations later it is not")
	assert.True(t, j.valid(t0.Add(2*cookieRotate), c2, ni, from, 7))
	// Unused for long: both secrets go at once.
	assert.False(t, j.valid(t0.Add(10*cookieRotate), c2, ni, from, 7))
	// An explicit rotation (a configuration load) keeps the current one
	// as the previous.
	now := t0.Add(10 * cookieRotate)
	c3 := j.make(now, ni, from, 7)
	j.rotate(now)
	assert.True(t, j.valid(now, c3, ni, from, 7))
	j.rotate(now)
	assert.False(t, j.valid(now, c3, ni, from, 7))
}

// The probe "2,000 IKE_SA_INIT from one IP, COOKIE echoed": 2,000
// half-open SAs, no cap per IP or in total. Now block_threshold (5) of
// them, whatever the flood; the counts kept as they go match a scan; a
// peer at another address establishes meanwhile.
func TestHalfOpenFloodFromOneSource(t *testing.T) {
	noLeaks(t)
	b, sa, _ := responder(t, "", withLogLevel(0))
	fl := newRawInit(t, "127.0.0.1", b.e.cfg.Connections[0].LocalPort)
	// Quiet for 1 s ends the flood: a loaded machine can hold the
	// engine's answers back for longer than 300 ms.
	res := flood(t, []*rawInit{fl}, 2000, time.Second)
	st, err := b.e.Admission(t.Context())
	require.NoError(t, err)
	t.Logf("flood: %+v; engine: %+v", res, st)
	assert.Equal(t, config.DefaultBlockThreshold, res.Full, "IKE_SA_INIT answered in full")
	assert.Equal(t, config.DefaultBlockThreshold, checkHalfOpenBooks(t, b))
	assert.Equal(t, config.DefaultBlockThreshold, st.HalfOpen)
	// From cookie_threshold_ip half-open SAs on, COOKIEs are demanded;
	// from block_threshold on, requests are dropped unanswered.
	assert.GreaterOrEqual(t, res.Cookies, config.DefaultBlockThreshold-config.DefaultCookieThresholdIP, "COOKIEs demanded")
	assert.Equal(t, 2000-config.DefaultBlockThreshold, st.Blocked+st.Behind, "dropped")
	// A legitimate peer elsewhere is not held up: a's address differs.
	sa.extraConn = ""
	acfg := sa.config(t, "a")
	acfg.Connections[0].LocalAddr = netip.MustParseAddr("127.0.0.2")
	// b expects a at 127.0.0.1: accept it from anywhere.
	require.NoError(t, b.e.call(t.Context(), func() { b.e.cfg.Connections[0].RemoteAddr = netip.Addr{} }))
	a := newPeer(t, "a", acfg)
	establish(t, a, b, "a-net")
	assert.Equal(t, config.DefaultBlockThreshold, checkHalfOpenBooks(t, b))
	// The log holds a handful of lines about the flood, not thousands.
	lines := strings.Count(b.logText(), "\n")
	assert.Less(t, lines, 40, "log lines for a 2,000-request flood:\n%s", b.logText())
}

// The total cap: init_limit_half_open across sources.
func TestHalfOpenTotalLimit(t *testing.T) {
	noLeaks(t)
	b, _, _ := responder(t, "init_limit_half_open = 10\ncookie_threshold = 0", withLogLevel(0))
	require.NoError(t, b.e.call(t.Context(), func() { b.e.cfg.Connections[0].RemoteAddr = netip.Addr{} }))
	var rs []*rawInit
	for i := range 30 {
		rs = append(rs, newRawInit(t, fmt.Sprintf("127.0.0.%d", 10+i), b.e.cfg.Connections[0].LocalPort))
	}
	answered := flood(t, rs, 1, 300*time.Millisecond).Full
	st, err := b.e.Admission(t.Context())
	require.NoError(t, err)
	assert.Equal(t, 10, answered)
	assert.Equal(t, 10, checkHalfOpenBooks(t, b))
	assert.Equal(t, 10, st.HalfOpenSources)
	assert.Equal(t, 20, st.OverLimit)
}

// The probe "1,000 INITs padded with 60 KB vendor IDs": +108 MB, the
// whole INIT kept by each half-open SA. Now a datagram over max_packet
// (10,000) is dropped unread, and what a half-open SA keeps of its INIT
// is bounded by it. All limits but max_packet are off here, so only it
// stands between the flood and the memory.
func TestOversizeInitRefused(t *testing.T) {
	noLeaks(t)
	b, _, _ := responder(t, "cookie_threshold = 0\ncookie_threshold_ip = 0\nblock_threshold = 0\ninit_limit_half_open = 0", withLogLevel(0))
	fl := newRawInit(t, "127.0.0.1", b.e.cfg.Connections[0].LocalPort)
	heap := memtest.LiveHeap
	before := heap()
	vid := &message.VendorID{Data: make([]byte, 60*1024)}
	for i := range 1000 {
		fl.send(initRequest(randSPI(), randNonce(), nil, vid))
		if i%2 == 1 {
			time.Sleep(200 * time.Microsecond) // loopback's socket buffer holds 3 of them
		}
	}
	// Under the cap: answered, and kept.
	_, a := fl.initEchoing(2*time.Second, &message.VendorID{Data: make([]byte, 9000)})
	require.NotNil(t, a, "a 9,000-byte IKE_SA_INIT (under max_packet) is answered")
	st, err := b.e.Admission(t.Context())
	require.NoError(t, err)
	after := heap()
	assert.Equal(t, 1, st.HalfOpen, "only the request under max_packet made a half-open SA")
	assert.Greater(t, st.TooBig, 200, "oversize datagrams received and dropped")
	assert.Less(t, int64(after)-int64(before), int64(4<<20), "heap growth after 1,000 60 KB requests")
	require.NoError(t, b.e.call(t.Context(), func() {
		for _, sa := range b.e.sas {
			assert.LessOrEqual(t, len(sa.hs.initReq), config.DefaultMaxPacket)
		}
	}))
	assert.Equal(t, 1, strings.Count(b.logText(), "dropped an IKE datagram larger than max_packet"), "logged once")
	t.Logf("heap %d -> %d bytes; %d datagrams over max_packet dropped (the rest lost in the socket buffer)", before, after, st.TooBig)
}

// The probe "one captured INIT carrying a valid COOKIE, replayed from 50
// other source ports": 50 half-open SAs. Now the half-open index is
// (address, SPIi): the replays are answered as retransmissions, no new
// SA. Once the COOKIE secret has rotated twice (time, or configuration
// loads) the captured request makes nothing either.
func TestCookieReplayFromOtherPorts(t *testing.T) {
	noLeaks(t)
	clk := clock.NewFake(epoch)
	// Every request needs a COOKIE.
	b, _, sb := responder(t, "cookie_threshold = 0\ncookie_threshold_ip = 0\nblock_threshold = 0", withClock(clk), withLogLevel(0))
	require.NoError(t, b.e.call(t.Context(), func() { b.e.cfg.Daemon.CookieThreshold = 1; b.e.cfg.Daemon.CookieThresholdIP = 0 }))
	port := b.e.cfg.Connections[0].LocalPort
	first := newRawInit(t, "127.0.0.1", port)
	_, a := first.initEchoing(2 * time.Second)
	require.NotNil(t, a)
	require.NotNil(t, a.Find(message.PayloadSA), "first one admitted: below the threshold")
	// The captured one: answered after a COOKIE round.
	victim := newRawInit(t, "127.0.0.1", port)
	captured, a := victim.initEchoing(2 * time.Second)
	require.NotNil(t, a)
	require.NotNil(t, a.Find(message.PayloadSA), "request with the COOKIE answered")
	cm, err := message.Parse(captured)
	require.NoError(t, err)
	require.NotNil(t, cm.Notify(message.COOKIE), "the captured request carries the COOKIE")
	require.Equal(t, 2, checkHalfOpenBooks(t, b))
	for range 50 {
		r := newRawInit(t, "127.0.0.1", port)
		r.send(captured)
		ans := r.answer(2 * time.Second)
		require.NotNil(t, ans, "the replay is answered as a retransmission")
		assert.Equal(t, a.SPIr, ans.SPIr, "with the same response")
	}
	assert.Equal(t, 2, checkHalfOpenBooks(t, b), "no new half-open SA from the replays")
	st, err := b.e.Admission(t.Context())
	require.NoError(t, err)
	assert.Equal(t, 50, st.SentAgain)

	// Once the half-open SA is gone the captured request would make a
	// new one while its COOKIE is valid; after two rotations it is not.
	for _, step := range []string{"reload", "time"} {
		require.NoError(t, b.e.call(t.Context(), func() {
			for _, sa := range b.e.sas {
				sa.destroy("test")
			}
		}))
		switch step {
		case "reload": // two loads rotate twice
			for range 2 {
				cfg := sb.config(t, "b")
				cfg.Daemon.CookieThreshold, cfg.Daemon.CookieThresholdIP = 1, 0
				require.NoError(t, b.e.Reload(t.Context(), cfg))
			}
		case "time":
			clk.Advance(2 * cookieRotate)
		}
		// One admitted SA first, so the next must show a COOKIE.
		_, a := newRawInit(t, "127.0.0.1", port).initEchoing(2 * time.Second)
		require.NotNil(t, a)
		r := newRawInit(t, "127.0.0.1", port)
		r.send(captured)
		ans := r.answer(2 * time.Second)
		require.NotNil(t, ans, step)
		assert.Nil(t, ans.Find(message.PayloadSA), "%s: the captured request is not admitted", step)
		assert.NotNil(t, ans.Notify(message.COOKIE), "%s: a fresh COOKIE is demanded", step)
		assert.Equal(t, 1, checkHalfOpenBooks(t, b), step)
	}
}

// The probe "each INIT counts half-open SAs by scanning every SA": the
// counts are kept as SAs come and go — admitted, authenticated, timed
// out, destroyed, reloaded away — and always match a scan.
func TestHalfOpenBooksKept(t *testing.T) {
	noLeaks(t)
	clk := clock.NewFake(epoch)
	sa, sb := pairSides(t)
	sb.daemonExtra = "block_threshold = 0\ncookie_threshold_ip = 0\ncookie_threshold = 0\nhalf_open_timeout = 10s"
	b := newPeer(t, "b", sb.config(t, "b"), withClock(clk), withLogLevel(0))
	a := newPeer(t, "a", sa.config(t, "a"), withClock(clk))
	require.NoError(t, b.e.call(t.Context(), func() { b.e.cfg.Connections[0].RemoteAddr = netip.Addr{} }))
	port := sb.port
	for i := range 20 {
		_, ans := newRawInit(t, fmt.Sprintf("127.0.0.%d", 1+i%4), port).initEchoing(2 * time.Second)
		require.NotNil(t, ans)
	}
	assert.Equal(t, 20, checkHalfOpenBooks(t, b))
	establish(t, a, b, "a-net") // one more half-open, then established
	assert.Equal(t, 20, checkHalfOpenBooks(t, b))
	// Destroyed directly.
	require.NoError(t, b.e.call(t.Context(), func() {
		n := 0
		for _, x := range b.e.sas {
			if x.state == ikeHalfOpen && n < 5 {
				x.destroy("test")
				n++
			}
		}
	}))
	assert.Equal(t, 15, checkHalfOpenBooks(t, b))
	// Timed out.
	clk.Advance(11 * time.Second)
	waitFor(t, "half-open SAs timed out", 3*time.Second, func() bool {
		st, _ := b.e.Admission(t.Context())
		return st.HalfOpen == 0
	})
	assert.Equal(t, 0, checkHalfOpenBooks(t, b))
	assert.Equal(t, 1, installed(b.sas(t)))
}
