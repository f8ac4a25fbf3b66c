package main

import (
	"context"
	"encoding/json"
	"fmt"
	"io"
	"slices"
	"strings"

	"github.com/keyplane/keyplane/ike/control"
	"github.com/keyplane/keyplane/internal/metrics"
)

func init() {
	register(&command{name: "stats", run: runStats,
		summary: "the daemon's counters: uptime, SAs by state, handshakes, events, errors",
		help: `What the daemon counted since it started, read from the same series as its Prometheus
metrics (docs/cli.md lists them): SAs by state, measured handshakes, engine events by kind
and state (failures included), dataplane events and events lost, dataplane errors the
engine logged, warnings and errors logged, reloads. Retransmits, cookies, dropped datagrams
and handshake failures by notify are not counted yet (the engine does not report them);
'not measured' names them. With -json one object.`})
}

func runStats(ctx context.Context, e *env, args []string) error {
	fs := newFlags(e, "stats")
	cf := addCtlFlags(e, fs)
	if err := e.parse(fs, args); err != nil {
		return err
	}
	if fs.NArg() != 0 {
		return usageError{fmt.Sprintf("no arguments, got %q", fs.Args())}
	}
	r, err := cf.client().Do(ctx, control.Request{Cmd: "stats"})
	if err != nil {
		return err
	}
	var st metrics.Stats
	if err := json.Unmarshal(r.Data, &st); err != nil {
		return fmt.Errorf("stats reply: %w", err)
	}
	if cf.json {
		return writeJSON(e.stdout, st)
	}
	printStats(e.stdout, &st)
	return nil
}

func printStats(w io.Writer, st *metrics.Stats) {
	fmt.Fprintf(w, "uptime            %s (since %s)\n", st.Uptime, st.Started.Format("2006-01-02 15:04:05 MST"))
	fmt.Fprintf(w, "IKE SAs           %s\n", counts(st.IKESAs))
	fmt.Fprintf(w, "child SAs         %s\n", counts(st.ChildSAs))
	hs := fmt.Sprintf("%d measured", st.Handshakes.Count)
	if st.Handshakes.Average != "" {
		hs += ", average " + st.Handshakes.Average
	}
	fmt.Fprintf(w, "handshakes        %s\n", hs)
	fmt.Fprintf(w, "engine events     %s\n", counts(st.EngineEvents))
	fmt.Fprintf(w, "dataplane events  %s; %d lost\n", counts(st.DataplaneEvents), st.DataplaneEventsLost)
	fmt.Fprintf(w, "dataplane errors  %s\n", counts(st.DataplaneErrors))
	fmt.Fprintf(w, "log messages      %s\n", counts(st.LogMessages))
	fmt.Fprintf(w, "reloads           %s\n", counts(st.Reloads))
	fmt.Fprintf(w, "IKE socket drops  %s\n", counts(st.IKESocketDrops))
	for k, v := range st.EngineCounters {
		fmt.Fprintf(w, "%-17s %s\n", strings.ReplaceAll(k, "_", " "), counts(v))
	}
	if n := sum(st.StatsOverruns); n > 0 {
		fmt.Fprintf(w, "(these counters lost events %d times: they undercount)\n", n)
	}
	if len(st.NotMeasured) > 0 {
		fmt.Fprintf(w, "not measured yet  %s\n", strings.ReplaceAll(strings.Join(st.NotMeasured, ", "), "_", " "))
	}
}

// counts prints a map as "a 1, b 2" in key order, "-" when empty.
func counts[V int | uint64](m map[string]V) string {
	if len(m) == 0 {
		return "-"
	}
	keys := make([]string, 0, len(m))
	for k := range m {
		keys = append(keys, k)
	}
	slices.Sort(keys)
	parts := make([]string, len(keys))
	for i, k := range keys {
		parts[i] = fmt.Sprintf("%s %d", k, m[k])
	}
	return strings.Join(parts, ", ")
}

func sum(m map[string]uint64) uint64 {
	var n uint64
	for _, v := range m {
		n += v
	}
	return n
}
