// Package metrics is the daemon's Prometheus exporter and the source of
// `keyplane stats`: one registry, filled from what the engine already
// exposes (its status API, its event stream, the dataplane's event
// stream, the log's warnings and errors) and, through observe.Recorder,
// from the engine's own measurements once it reports them.
//
// Serve puts it on an HTTP listener with net/http/pprof under
// /debug/pprof/.
package metrics

import (
	"context"
	"errors"
	"log/slog"
	"slices"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/client_golang/prometheus/collectors"

	"github.com/keyplane/keyplane/ike"
	"github.com/keyplane/keyplane/ike/observe"
	"github.com/keyplane/keyplane/internal/buildinfo"
	"github.com/keyplane/keyplane/kernelops"
)

// Source is the engine's status API, read at each scrape.
type Source interface {
	IKESAs(ctx context.Context) ([]ike.IKESAInfo, error)
	Handshakes(ctx context.Context) ([]time.Duration, error)
}

// CountSource is a Source that counts its SAs by state without listing
// them (the engine's StateCounts); Refresh then uses it instead of
// IKESAs, which makes the text and reads the counters of every SA.
type CountSource interface {
	StateCounts(ctx context.Context) (map[ike.IKEState]int, map[ike.ChildState]int, error)
}

// SocketSource is a Source that also reads its IKE sockets' receive
// queues (the engine's SocketStats); the exporter then adds their
// buffer sizes and drop counts.
type SocketSource interface {
	SocketStats(ctx context.Context) ([]ike.SocketStats, error)
}

// The states always exported (as zero when no SA is in them), so that
// alerts on them work from the first scrape.
var (
	ikeStates   = []string{"established"}
	childStates = []string{"installed"}
)

// HandshakeBuckets are the handshake histogram's buckets, in seconds:
// 1 ms (two engines on loopback) to 30 s (retransmissions to a slow
// peer).
var HandshakeBuckets = []float64{.001, .0025, .005, .01, .025, .05, .1, .25, .5, 1, 2.5, 5, 10, 30}

// Metrics is the exporter's state.
type Metrics struct {
	reg     *prometheus.Registry
	src     Source
	started time.Time
	// StatusTimeout bounds one read of the status API at a scrape.
	StatusTimeout time.Duration

	ikeSAs, childSAs   *prometheus.GaugeVec
	statusErrors       prometheus.Counter
	engineEvents       *prometheus.CounterVec
	dataplaneEvents    *prometheus.CounterVec
	dataplaneLost      prometheus.Counter
	subscriberOverruns *prometheus.CounterVec
	dataplaneErrors    *prometheus.CounterVec
	logMessages        *prometheus.CounterVec
	reloads            *prometheus.CounterVec
	handshakes         *prometheus.HistogramVec
	socketBuffer       *prometheus.GaugeVec
	socketDrops        *prometheus.GaugeVec
	socketBehind       *prometheus.GaugeVec

	// Counted only once the engine reports them (EngineCounters).
	handshakeFailures *prometheus.CounterVec
	retransmits       *prometheus.CounterVec
	cookies           prometheus.Counter
	dropped           *prometheus.CounterVec
	engineOn          atomic.Bool

	mu       sync.Mutex // one refresh at a time
	seenHS   int        // handshakes of Source already in the histogram
	lastRead time.Time
}

// New registers keyplane's metrics, Go's runtime and the process's.
func New(src Source, info buildinfo.Info) *Metrics {
	m := &Metrics{reg: prometheus.NewRegistry(), src: src, started: time.Now(), StatusTimeout: 5 * time.Second}
	m.reg.MustRegister(collectors.NewGoCollector(), collectors.NewProcessCollector(collectors.ProcessCollectorOpts{}))
	build := prometheus.NewGauge(prometheus.GaugeOpts{Name: "keyplane_build_info",
		Help: "The binary: module version, VCS commit, Go version and the dataplane backends it carries; always 1.",
		ConstLabels: prometheus.Labels{"version": info.Version, "commit": info.Commit, "goversion": info.GoVersion,
			"backends": strings.Join(info.Backends, ",")}})
	build.Set(1)
	start := prometheus.NewGauge(prometheus.GaugeOpts{Name: "keyplane_start_time_seconds",
		Help: "When the daemon started, in seconds since the Unix epoch."})
	start.Set(float64(m.started.UnixNano()) / 1e9)
	m.ikeSAs = prometheus.NewGaugeVec(prometheus.GaugeOpts{Name: "keyplane_ike_sas",
		Help: "IKE SAs by state, read from the engine's status at the scrape."}, []string{"state"})
	m.childSAs = prometheus.NewGaugeVec(prometheus.GaugeOpts{Name: "keyplane_child_sas",
		Help: "CHILD SAs by state, read from the engine's status at the scrape."}, []string{"state"})
	m.statusErrors = prometheus.NewCounter(prometheus.CounterOpts{Name: "keyplane_status_read_errors_total",
		Help: "Scrapes whose read of the engine's status failed (its gauges keep their last values)."})
	m.engineEvents = prometheus.NewCounterVec(prometheus.CounterOpts{Name: "keyplane_engine_events_total",
		Help: "The engine's events by kind (ike, child, dataplane, link, addr) and state: each IKE and CHILD SA state change, failures (state failed, dead) included."},
		[]string{"kind", "state"})
	m.dataplaneEvents = prometheus.NewCounterVec(prometheus.CounterOpts{Name: "keyplane_dataplane_events_total",
		Help: "The dataplane's events by kind (acquire, expire, overrun, ...)."}, []string{"kind"})
	m.dataplaneLost = prometheus.NewCounter(prometheus.CounterOpts{Name: "keyplane_dataplane_events_lost_total",
		Help: "Events the dataplane reported lost in its overrun events (e.g. netlink ENOBUFS); the engine re-reads the SAD and SPD after each."})
	m.subscriberOverruns = prometheus.NewCounterVec(prometheus.CounterOpts{Name: "keyplane_metrics_overruns_total",
		Help: "Times this exporter fell behind an event stream and lost events: the event counters undercount. The dataplane's is the one stream it reads; the engine's events are counted as they happen."},
		[]string{"stream"})
	m.dataplaneErrors = prometheus.NewCounterVec(prometheus.CounterOpts{Name: "keyplane_dataplane_errors_total",
		Help: "Failed dataplane operations by op, as the engine logged them (warnings and errors carrying a kernelops.Error)."},
		[]string{"op"})
	m.logMessages = prometheus.NewCounterVec(prometheus.CounterOpts{Name: "keyplane_log_messages_total",
		Help: "Log lines at warn and error, whatever the log level shows."}, []string{"level"})
	m.reloads = prometheus.NewCounterVec(prometheus.CounterOpts{Name: "keyplane_reloads_total",
		Help: "Configuration reloads by result (applied, refused)."}, []string{"result"})
	m.handshakes = prometheus.NewHistogramVec(prometheus.HistogramOpts{Name: "keyplane_handshake_seconds",
		Help:    "IKE handshakes, first IKE_SA_INIT to first child installed (the engine measures the ones it initiated).",
		Buckets: HandshakeBuckets}, []string{"role"})
	m.socketBuffer = prometheus.NewGaugeVec(prometheus.GaugeOpts{Name: "keyplane_ike_socket_receive_buffer_bytes",
		Help: "Each IKE socket's receive buffer as the kernel accounts it (Linux doubles what daemon.ike_socket_buffer asks for)."},
		[]string{"addr", "nat_t"})
	m.socketDrops = prometheus.NewGaugeVec(prometheus.GaugeOpts{Name: "keyplane_ike_socket_drops",
		Help: "IKE datagrams the kernel dropped for each socket since it opened (its receive buffer was full); only where the OS counts them (Linux)."},
		[]string{"addr", "nat_t"})
	m.socketBehind = prometheus.NewGaugeVec(prometheus.GaugeOpts{Name: "keyplane_ike_socket_behind_drops",
		Help: "IKE datagrams the engine read from each socket and dropped because its queue for the loop was full (new IKE SA requests first)."},
		[]string{"addr", "nat_t"})
	m.reg.MustRegister(m.socketBehind)
	m.reg.MustRegister(build, start, m.ikeSAs, m.childSAs, m.statusErrors, m.engineEvents, m.dataplaneEvents,
		m.dataplaneLost, m.subscriberOverruns, m.dataplaneErrors, m.logMessages, m.reloads, m.handshakes,
		m.socketBuffer, m.socketDrops)
	m.handshakeFailures = prometheus.NewCounterVec(prometheus.CounterOpts{Name: "keyplane_handshake_failures_total",
		Help: "IKE SAs that did not come up, by role and reason (a notify type or a fixed cause)."}, []string{"role", "reason"})
	m.retransmits = prometheus.NewCounterVec(prometheus.CounterOpts{Name: "keyplane_retransmits_total",
		Help: "Requests sent again, by exchange type."}, []string{"exchange"})
	m.cookies = prometheus.NewCounter(prometheus.CounterOpts{Name: "keyplane_cookies_sent_total",
		Help: "IKE_SA_INIT requests answered with a COOKIE (RFC 7296 §2.6)."})
	m.dropped = prometheus.NewCounterVec(prometheus.CounterOpts{Name: "keyplane_datagrams_dropped_total",
		Help: "IKE datagrams dropped unanswered, by reason."}, []string{"reason"})
	for _, s := range ikeStates {
		m.ikeSAs.WithLabelValues(s)
	}
	for _, s := range childStates {
		m.childSAs.WithLabelValues(s)
	}
	return m
}

// Registry is where the metrics live (for tests and extra collectors).
func (m *Metrics) Registry() *prometheus.Registry { return m.reg }

// Started is when New was called: the daemon's start.
func (m *Metrics) Started() time.Time { return m.started }

// Refresh reads the engine's status: SA counts by state and the
// handshakes measured since the last read. Scrapes and `keyplane stats`
// call it; at most one read runs at a time.
func (m *Metrics) Refresh(ctx context.Context) {
	m.mu.Lock()
	defer m.mu.Unlock()
	ctx, cancel := context.WithTimeout(ctx, m.StatusTimeout)
	defer cancel()
	ikeN, childN := map[string]int{}, map[string]int{}
	for _, s := range ikeStates {
		ikeN[s] = 0
	}
	for _, s := range childStates {
		childN[s] = 0
	}
	if cs, ok := m.src.(CountSource); ok {
		ikes, children, err := cs.StateCounts(ctx)
		if err != nil {
			m.statusErrors.Inc()
			return
		}
		for s, n := range ikes {
			ikeN[s.String()] += n
		}
		for s, n := range children {
			childN[s.String()] += n
		}
	} else {
		sas, err := m.src.IKESAs(ctx)
		if err != nil {
			m.statusErrors.Inc()
			return
		}
		for _, sa := range sas {
			ikeN[sa.State.String()]++
			for _, ch := range sa.Children {
				childN[ch.State.String()]++
			}
		}
	}
	m.ikeSAs.Reset()
	m.childSAs.Reset()
	for s, n := range ikeN {
		m.ikeSAs.WithLabelValues(s).Set(float64(n))
	}
	for s, n := range childN {
		m.childSAs.WithLabelValues(s).Set(float64(n))
	}
	if ss, ok := m.src.(SocketSource); ok {
		socks, err := ss.SocketStats(ctx)
		if err != nil {
			m.statusErrors.Inc()
			return
		}
		m.socketBuffer.Reset()
		m.socketDrops.Reset()
		m.socketBehind.Reset()
		for _, s := range socks {
			nat := strconv.FormatBool(s.NATT)
			if s.RecvBuffer > 0 {
				m.socketBuffer.WithLabelValues(s.Addr, nat).Set(float64(s.RecvBuffer))
			}
			m.socketBehind.WithLabelValues(s.Addr, nat).Set(float64(s.Behind))
			if s.Measured {
				m.socketDrops.WithLabelValues(s.Addr, nat).Set(float64(s.Drops))
			}
		}
	}
	hs, err := m.src.Handshakes(ctx)
	if err != nil {
		m.statusErrors.Inc()
		return
	}
	if len(hs) < m.seenHS { // a new engine (not today: one per daemon)
		m.seenHS = 0
	}
	for _, d := range hs[m.seenHS:] {
		m.handshakes.WithLabelValues(string(observe.Initiator)).Observe(d.Seconds())
	}
	m.seenHS = len(hs)
	m.lastRead = time.Now()
}

// Reload counts a reload's result.
func (m *Metrics) Reload(applied bool) {
	if applied {
		m.reloads.WithLabelValues("applied").Inc()
	} else {
		m.reloads.WithLabelValues("refused").Inc()
	}
}

// LogHook counts warnings and errors, and the dataplane errors among
// their attributes: a logging.Hook.
func (m *Metrics) LogHook(level slog.Level, errs []error) {
	m.logMessages.WithLabelValues(strings.ToLower(level.String())).Inc()
	for _, err := range errs {
		var ke *kernelops.Error
		if errors.As(err, &ke) {
			m.dataplaneErrors.WithLabelValues(ke.Op).Inc()
		}
	}
}

// Run counts the dataplane's events, when b has an event source, until
// ctx ends. The engine's events are counted by EngineEvent, which the
// daemon gives the engine as its Options.OnEvent: called on the engine's
// loop, it counts each event as it happens, where a subscription sent
// each one to this goroutine (a parked goroutine to ready; a responder
// publishes 3 events per handshake, and on a 2-core machine about one
// in fifteen woke an idle thread) and lost events when it fell behind.
func (m *Metrics) Run(ctx context.Context, b kernelops.Backend) {
	src, err := kernelops.As[kernelops.EventSource](b)
	if err != nil {
		return
	}
	ds, err := src.Subscribe(ctx, kernelops.SubscribeOptions{})
	if err != nil {
		return
	}
	defer ds.Close()
	for {
		select {
		case <-ctx.Done():
			return
		case ev, ok := <-ds.Events():
			if !ok {
				return
			}
			m.DataplaneEvent(ev)
		}
	}
}

// EngineEvent counts one engine event. It is quick and does not block,
// as ike.Options.OnEvent must be.
func (m *Metrics) EngineEvent(ev ike.Event) {
	m.engineEvents.WithLabelValues(ev.Kind.String(), ev.State).Inc()
}

// DataplaneEvent counts one dataplane event.
func (m *Metrics) DataplaneEvent(ev kernelops.Event) {
	if o, ok := ev.(*kernelops.OverrunEvent); ok && o.Source == "subscriber queue" {
		m.subscriberOverruns.WithLabelValues("dataplane").Inc()
		return
	}
	m.dataplaneEvents.WithLabelValues(ev.Kind().String()).Inc()
	if o, ok := ev.(*kernelops.OverrunEvent); ok {
		m.dataplaneLost.Add(float64(o.Lost))
	}
}

// EngineCounters registers the series the engine fills through
// observe.Recorder and returns the Recorder to give it. Until it is
// called they are not exported: a counter that nothing increments would
// read as "none happened".
func (m *Metrics) EngineCounters() observe.Recorder {
	if m.engineOn.CompareAndSwap(false, true) {
		m.reg.MustRegister(m.handshakeFailures, m.retransmits, m.cookies, m.dropped)
	}
	return recorder{m}
}

// recorder is Metrics as an observe.Recorder.
type recorder struct{ m *Metrics }

func (r recorder) HandshakeDone(role observe.Role, took time.Duration) {
	r.m.handshakes.WithLabelValues(string(role)).Observe(took.Seconds())
}
func (r recorder) HandshakeFailed(role observe.Role, reason string) {
	r.m.handshakeFailures.WithLabelValues(string(role), reason).Inc()
}
func (r recorder) Retransmit(exchange string)    { r.m.retransmits.WithLabelValues(exchange).Inc() }
func (r recorder) CookieSent()                   { r.m.cookies.Inc() }
func (r recorder) DatagramDropped(reason string) { r.m.dropped.WithLabelValues(reason).Inc() }
func (r recorder) DataplaneError(op string)      { r.m.dataplaneErrors.WithLabelValues(op).Inc() }

// sortedKeys is for stable output.
func sortedKeys[V any](m map[string]V) []string {
	out := make([]string, 0, len(m))
	for k := range m {
		out = append(out, k)
	}
	slices.Sort(out)
	return out
}
