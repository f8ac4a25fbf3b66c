package metrics

import (
	"context"
	"strings"
	"time"

	dto "github.com/prometheus/client_model/go"
)

// Stats is the registry in a form for humans and scripts: what
// `keyplane stats` prints. It is read from the same series /metrics
// exports, so both always agree.
type Stats struct {
	Started  time.Time      `json:"started"`
	Uptime   string         `json:"uptime"`
	IKESAs   map[string]int `json:"ike_sas"`
	ChildSAs map[string]int `json:"child_sas"`
	// Handshakes are the measured ones (the engine measures those it
	// initiated): how many and how long on average.
	Handshakes          HandshakeStats    `json:"handshakes"`
	EngineEvents        map[string]uint64 `json:"engine_events"` // "ike established", "child failed", ...
	DataplaneEvents     map[string]uint64 `json:"dataplane_events"`
	DataplaneEventsLost uint64            `json:"dataplane_events_lost"`
	DataplaneErrors     map[string]uint64 `json:"dataplane_errors"`
	LogMessages         map[string]uint64 `json:"log_messages"`
	Reloads             map[string]uint64 `json:"reloads"`
	// IKESocketDrops: datagrams the kernel dropped per IKE socket
	// ("ADDR:PORT", "ADDR:PORT nat-t"), where the OS counts them.
	IKESocketDrops map[string]uint64 `json:"ike_socket_drops"`
	// StatsOverruns: times these counters lost events (they undercount).
	StatsOverruns map[string]uint64 `json:"stats_overruns"`
	// EngineCounters: retransmits, cookies, dropped datagrams and
	// handshake failures by reason, once the engine reports them (nil
	// until then: NotMeasured names them).
	EngineCounters map[string]map[string]uint64 `json:"engine_counters,omitempty"`
	NotMeasured    []string                     `json:"not_measured"`
}

// HandshakeStats summarizes the handshake histogram.
type HandshakeStats struct {
	Count   uint64  `json:"count"`
	Seconds float64 `json:"seconds_total"`
	Average string  `json:"average,omitempty"`
}

// Snapshot refreshes the SA counts and reads every series.
func (m *Metrics) Snapshot(ctx context.Context) (*Stats, error) {
	m.Refresh(ctx)
	fams, err := m.reg.Gather()
	if err != nil {
		return nil, err
	}
	st := &Stats{Started: m.started, Uptime: time.Since(m.started).Round(time.Second).String(),
		IKESAs: map[string]int{}, ChildSAs: map[string]int{}, EngineEvents: map[string]uint64{},
		DataplaneEvents: map[string]uint64{}, DataplaneErrors: map[string]uint64{}, LogMessages: map[string]uint64{},
		Reloads: map[string]uint64{}, StatsOverruns: map[string]uint64{}, IKESocketDrops: map[string]uint64{}, NotMeasured: []string{}}
	engineSeries := map[string]string{
		"keyplane_handshake_failures_total": "handshake_failures", "keyplane_retransmits_total": "retransmits",
		"keyplane_cookies_sent_total": "cookies_sent", "keyplane_datagrams_dropped_total": "datagrams_dropped",
	}
	seen := map[string]bool{}
	for _, f := range fams {
		name := f.GetName()
		for _, mt := range f.GetMetric() {
			labels := labelValues(mt)
			switch name {
			case "keyplane_ike_sas":
				st.IKESAs[labels] = int(mt.GetGauge().GetValue())
			case "keyplane_child_sas":
				st.ChildSAs[labels] = int(mt.GetGauge().GetValue())
			case "keyplane_handshake_seconds":
				h := mt.GetHistogram()
				st.Handshakes.Count += h.GetSampleCount()
				st.Handshakes.Seconds += h.GetSampleSum()
			case "keyplane_engine_events_total":
				st.EngineEvents[labels] = counter(mt)
			case "keyplane_dataplane_events_total":
				st.DataplaneEvents[labels] = counter(mt)
			case "keyplane_dataplane_events_lost_total":
				st.DataplaneEventsLost = counter(mt)
			case "keyplane_dataplane_errors_total":
				st.DataplaneErrors[labels] = counter(mt)
			case "keyplane_log_messages_total":
				st.LogMessages[labels] = counter(mt)
			case "keyplane_reloads_total":
				st.Reloads[labels] = counter(mt)
			case "keyplane_ike_socket_drops":
				addr, nat, _ := strings.Cut(labels, " ")
				if nat == "true" {
					addr += " nat-t"
				}
				st.IKESocketDrops[addr] = uint64(mt.GetGauge().GetValue())
			case "keyplane_metrics_overruns_total":
				st.StatsOverruns[labels] = counter(mt)
			default:
				if key, ok := engineSeries[name]; ok {
					if st.EngineCounters == nil {
						st.EngineCounters = map[string]map[string]uint64{}
					}
					if st.EngineCounters[key] == nil {
						st.EngineCounters[key] = map[string]uint64{}
					}
					st.EngineCounters[key][labels] = counter(mt)
					seen[key] = true
				}
			}
		}
	}
	if st.Handshakes.Count > 0 {
		avg := time.Duration(st.Handshakes.Seconds / float64(st.Handshakes.Count) * float64(time.Second))
		st.Handshakes.Average = avg.Round(time.Microsecond).String()
	}
	for _, k := range sortedKeys(engineSeries) {
		if key := engineSeries[k]; !seen[key] && !m.engineOn.Load() {
			st.NotMeasured = append(st.NotMeasured, key)
		}
	}
	return st, nil
}

// labelValues joins a series' label values with spaces ("ike established").
func labelValues(mt *dto.Metric) string {
	var parts []string
	for _, l := range mt.GetLabel() {
		parts = append(parts, l.GetValue())
	}
	return strings.Join(parts, " ")
}

func counter(mt *dto.Metric) uint64 { return uint64(mt.GetCounter().GetValue()) }
