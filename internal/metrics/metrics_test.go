package metrics

import (
	"context"
	"errors"
	"log/slog"
	"testing"
	"time"

	"github.com/prometheus/client_golang/prometheus/testutil"
	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"

	"github.com/keyplane/keyplane/ike"
	"github.com/keyplane/keyplane/ike/observe"
	"github.com/keyplane/keyplane/internal/buildinfo"
	"github.com/keyplane/keyplane/kernelops"
)

// statusDouble is a named test double of the engine's status API; the
// real engine is scraped in cmd/keyplane's TestMetricsScrape.
type statusDouble struct {
	sas []ike.IKESAInfo
	hs  []time.Duration
	err error
}

func (s *statusDouble) IKESAs(context.Context) ([]ike.IKESAInfo, error)     { return s.sas, s.err }
func (s *statusDouble) Handshakes(context.Context) ([]time.Duration, error) { return s.hs, s.err }

func TestRefreshAndSnapshot(t *testing.T) {
	src := &statusDouble{}
	m := New(src, buildinfo.Info{Version: "v1", Commit: "c", GoVersion: "go1", Backends: []string{"nokernel"}})
	st, err := m.Snapshot(t.Context())
	require.NoError(t, err)
	assert.Equal(t, map[string]int{"established": 0}, st.IKESAs)
	assert.Equal(t, map[string]int{"installed": 0}, st.ChildSAs)
	assert.Equal(t, []string{"cookies_sent", "datagrams_dropped", "handshake_failures", "retransmits"}, st.NotMeasured)

	src.sas = []ike.IKESAInfo{
		{Name: "a", State: "established", Children: []ike.ChildInfo{{State: "installed"}, {State: "installed"}}},
		{Name: "b", State: "init-sent"},
	}
	src.hs = []time.Duration{2 * time.Millisecond, 4 * time.Millisecond}
	st, err = m.Snapshot(t.Context())
	require.NoError(t, err)
	assert.Equal(t, map[string]int{"established": 1, "init-sent": 1}, st.IKESAs)
	assert.Equal(t, map[string]int{"installed": 2}, st.ChildSAs)
	assert.EqualValues(t, 2, st.Handshakes.Count)
	assert.Equal(t, "3ms", st.Handshakes.Average)
	// Handshakes are observed once, not at every refresh; a state that
	// emptied reads 0 (established) or disappears (others).
	src.sas = src.sas[:1]
	src.hs = append(src.hs, 6*time.Millisecond)
	st, err = m.Snapshot(t.Context())
	require.NoError(t, err)
	assert.EqualValues(t, 3, st.Handshakes.Count)
	assert.Equal(t, map[string]int{"established": 1}, st.IKESAs)

	src.err = errors.New("engine closed")
	m.Refresh(t.Context())
	assert.Equal(t, 1.0, testutil.ToFloat64(m.statusErrors))
}

func TestEventsLogAndEngineCounters(t *testing.T) {
	m := New(&statusDouble{}, buildinfo.Info{})
	m.EngineEvent(ike.Event{Kind: "child", State: "installed"})
	m.EngineEvent(ike.Event{Kind: "child", State: "installed"})
	m.EngineEvent(ike.Event{Kind: "ike", State: "dead"})
	m.DataplaneEvent(&kernelops.OverrunEvent{Lost: 7, Source: "netlink"})
	m.DataplaneEvent(&kernelops.OverrunEvent{Lost: 3, Source: "subscriber queue"})
	m.DataplaneEvent(&kernelops.AcquireEvent{})
	m.LogHook(slog.LevelWarn, []error{&kernelops.Error{Op: "add SA", Err: kernelops.ErrExists}, errors.New("plain")})
	m.LogHook(slog.LevelError, nil)
	m.Reload(true)
	m.Reload(false)
	st, err := m.Snapshot(t.Context())
	require.NoError(t, err)
	assert.Equal(t, map[string]uint64{"child installed": 2, "ike dead": 1}, st.EngineEvents)
	assert.Equal(t, map[string]uint64{"overrun": 1, "acquire": 1}, st.DataplaneEvents)
	assert.EqualValues(t, 7, st.DataplaneEventsLost)
	assert.Equal(t, map[string]uint64{"dataplane": 1}, st.StatsOverruns)
	assert.Equal(t, map[string]uint64{"add SA": 1}, st.DataplaneErrors)
	assert.Equal(t, map[string]uint64{"warn": 1, "error": 1}, st.LogMessages)
	assert.Equal(t, map[string]uint64{"applied": 1, "refused": 1}, st.Reloads)

	// Phase B's engine reports through observe.Recorder.
	var r observe.Recorder = m.EngineCounters()
	r.Retransmit("IKE_SA_INIT")
	r.CookieSent()
	r.HandshakeFailed(observe.Initiator, "AUTHENTICATION_FAILED")
	r.DatagramDropped("unknown SPI")
	r.DataplaneError("add SA")
	r.HandshakeDone(observe.Responder, 5*time.Millisecond)
	_ = m.EngineCounters() // idempotent
	st, err = m.Snapshot(t.Context())
	require.NoError(t, err)
	assert.Empty(t, st.NotMeasured)
	assert.Equal(t, map[string]uint64{"IKE_SA_INIT": 1}, st.EngineCounters["retransmits"])
	assert.Equal(t, map[string]uint64{"AUTHENTICATION_FAILED initiator": 1}, st.EngineCounters["handshake_failures"])
	assert.Equal(t, map[string]uint64{"": 1}, st.EngineCounters["cookies_sent"])
	assert.Equal(t, map[string]uint64{"add SA": 2}, st.DataplaneErrors)
	assert.EqualValues(t, 1, st.Handshakes.Count)
}

// socketDouble adds the engine's socket figures to statusDouble; the
// kernel's own figures are tested in ike's TestSocketStats.
type socketDouble struct {
	statusDouble
	socks []ike.SocketStats
}

func (s *socketDouble) SocketStats(context.Context) ([]ike.SocketStats, error) { return s.socks, s.err }

func TestSocketMetrics(t *testing.T) {
	src := &socketDouble{socks: []ike.SocketStats{
		{Addr: "127.0.0.1:500", RecvBuffer: 16 << 20, Drops: 7, Measured: true, Behind: 3},
		{Addr: "127.0.0.1:4500", NATT: true, RecvBuffer: 16 << 20, Measured: true},
		{Addr: "[::1]:500", RecvBuffer: 1 << 20}, // drops not counted by the OS
	}}
	m := New(src, buildinfo.Info{})
	st, err := m.Snapshot(t.Context())
	require.NoError(t, err)
	assert.Equal(t, map[string]uint64{"127.0.0.1:500": 7, "127.0.0.1:4500 nat-t": 0}, st.IKESocketDrops)
	assert.Equal(t, 3, testutil.CollectAndCount(m.Registry(), "keyplane_ike_socket_receive_buffer_bytes"))
	assert.InDelta(t, 16<<20, testutil.ToFloat64(m.socketBuffer.WithLabelValues("127.0.0.1:500", "false")), 0)
	assert.InDelta(t, 3, testutil.ToFloat64(m.socketBehind.WithLabelValues("127.0.0.1:500", "false")), 0)

	// A socket that closed disappears; drops rise.
	src.socks = src.socks[:1]
	src.socks[0].Drops = 9
	st, err = m.Snapshot(t.Context())
	require.NoError(t, err)
	assert.Equal(t, map[string]uint64{"127.0.0.1:500": 9}, st.IKESocketDrops)
	assert.Equal(t, 1, testutil.CollectAndCount(m.Registry(), "keyplane_ike_socket_receive_buffer_bytes"))

	src.err = errors.New("engine closed")
	before := testutil.ToFloat64(m.statusErrors)
	m.Refresh(t.Context())
	assert.InDelta(t, before+1, testutil.ToFloat64(m.statusErrors), 0)
}

// countDouble is a statusDouble that also counts by state (CountSource):
// Refresh takes the counts from it and never lists the SAs.
type countDouble struct {
	statusDouble
	ikes     map[ike.IKEState]int
	children map[ike.ChildState]int
	listed   int
}

func (c *countDouble) IKESAs(ctx context.Context) ([]ike.IKESAInfo, error) {
	c.listed++
	return c.statusDouble.IKESAs(ctx)
}

func (c *countDouble) StateCounts(context.Context) (map[ike.IKEState]int, map[ike.ChildState]int, error) {
	return c.ikes, c.children, c.err
}

func TestRefreshCountsWithoutListing(t *testing.T) {
	src := &countDouble{ikes: map[ike.IKEState]int{"established": 100000, "half-open": 3},
		children: map[ike.ChildState]int{"installed": 100000, "negotiating": 2}}
	m := New(src, buildinfo.Info{Version: "v1"})
	st, err := m.Snapshot(t.Context())
	require.NoError(t, err)
	assert.Equal(t, map[string]int{"established": 100000, "half-open": 3}, st.IKESAs)
	assert.Equal(t, map[string]int{"installed": 100000, "negotiating": 2}, st.ChildSAs)
	assert.Zero(t, src.listed, "IKESAs calls")
	assert.InDelta(t, 100000, testutil.ToFloat64(m.ikeSAs.WithLabelValues("established")), 0)

	src.err = errors.New("engine closed")
	m.Refresh(t.Context())
	assert.InDelta(t, 1, testutil.ToFloat64(m.statusErrors), 0)
}
