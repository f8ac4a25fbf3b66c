package main

import (
	"bufio"
	"bytes"
	"encoding/json"
	"fmt"
	"io"
	"net"
	"net/http"
	"os"
	"regexp"
	"runtime"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"
)

func freeTCPPort(t *testing.T) int {
	t.Helper()
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	require.NoError(t, err)
	defer ln.Close()
	return ln.Addr().(*net.TCPAddr).Port
}

func get(t *testing.T, url string) (int, string) {
	t.Helper()
	c := &http.Client{Timeout: 10 * time.Second}
	resp, err := c.Get(url)
	require.NoError(t, err)
	defer resp.Body.Close()
	b, err := io.ReadAll(resp.Body)
	require.NoError(t, err)
	return resp.StatusCode, string(b)
}

// metric reads one sample's value from a scrape ("" labels: none).
func metric(t *testing.T, scrape, name, labels string) float64 {
	t.Helper()
	series := name
	if labels != "" {
		series += "{" + labels + "}"
	}
	re := regexp.MustCompile(`(?m)^` + regexp.QuoteMeta(series) + ` (\S+)$`)
	m := re.FindStringSubmatch(scrape)
	if m == nil {
		return -1
	}
	v, err := strconv.ParseFloat(m[1], 64)
	require.NoError(t, err)
	return v
}

// The metrics listener: counters move with a handshake; pprof answers.
func TestMetricsScrape(t *testing.T) {
	port := freeTCPPort(t)
	p, _ := startPair(t, func(n string) string {
		if n == "west" {
			return fmt.Sprintf("\tmetrics = 127.0.0.1:%d\n", port)
		}
		return ""
	})
	base := fmt.Sprintf("http://127.0.0.1:%d", port)
	code, before := get(t, base+"/metrics")
	require.Equal(t, 200, code)
	assert.Equal(t, 0.0, metric(t, before, "keyplane_ike_sas", `state="established"`))
	assert.Equal(t, 0.0, metric(t, before, "keyplane_child_sas", `state="installed"`))
	assert.Regexp(t, `keyplane_build_info\{backends="[^"]*nokernel[^"]*",commit="[^"]+",goversion="go1\.[^"]+",version="[^"]+"\} 1`, before)
	assert.Contains(t, before, "go_goroutines ")
	assert.GreaterOrEqual(t, metric(t, before, "go_sched_gomaxprocs_threads", ""), 1.0, "the Ps the daemon runs with (internal/procs)")
	assert.Contains(t, before, "process_resident_memory_bytes ")
	assert.NotContains(t, before, "keyplane_retransmits_total", "not exported until the engine counts them")
	// The daemon's IKE sockets: the kernel's buffer and drop count.
	assert.Regexp(t, `(?m)^keyplane_ike_socket_drops\{addr="[^"]+",nat_t="false"\} 0$`, before)
	assert.Regexp(t, `(?m)^keyplane_ike_socket_receive_buffer_bytes\{addr="[^"]+",nat_t="true"\} [1-9]`, before)

	code, _, errs := runCLI(t, "initiate", "-s", p.sock("west"), "-q", "west-net")
	require.Equal(t, 0, code, errs)
	_, after := get(t, base+"/metrics")
	assert.Equal(t, 1.0, metric(t, after, "keyplane_ike_sas", `state="established"`))
	assert.Equal(t, 1.0, metric(t, after, "keyplane_child_sas", `state="installed"`))
	assert.Equal(t, 1.0, metric(t, after, "keyplane_handshake_seconds_count", `role="initiator"`))
	assert.Greater(t, metric(t, after, "keyplane_handshake_seconds_sum", `role="initiator"`), 0.0)
	waitFor(t, "the installed event counted", func() bool {
		_, s := get(t, base+"/metrics")
		return metric(t, s, "keyplane_engine_events_total", `kind="child",state="installed"`) == 1 &&
			metric(t, s, "keyplane_engine_events_total", `kind="ike",state="established"`) == 1
	})
	// A refused reload is counted, and logged as an error.
	p.edit(t, "west", func(s string) string { return strings.Replace(s, "name = nokernel", "name = xfrm", 1) })
	code, _, _ = runCLI(t, "reload", "-s", p.sock("west"))
	require.Equal(t, 1, code)
	_, s := get(t, base+"/metrics")
	assert.Equal(t, 1.0, metric(t, s, "keyplane_reloads_total", `result="refused"`))
	assert.GreaterOrEqual(t, metric(t, s, "keyplane_log_messages_total", `level="error"`), 1.0)

	code, body := get(t, base+"/debug/pprof/")
	assert.Equal(t, 200, code)
	assert.Contains(t, body, "goroutine")
	code, body = get(t, base+"/debug/pprof/goroutine?debug=1")
	assert.Equal(t, 200, code)
	assert.Contains(t, body, "goroutine profile")
	code, _ = get(t, base+"/nosuch")
	assert.Equal(t, 404, code)
}

// A taken metrics port fails the daemon's start with the setting named.
func TestMetricsPortTaken(t *testing.T) {
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	require.NoError(t, err)
	defer ln.Close()
	d := newTestDaemon(t)
	ports, err := freeUDPPorts(2)
	require.NoError(t, err)
	d.write(t, "info", ports, "")
	d.edit(t, func(s string) string {
		return strings.Replace(s, "log_level = info", "log_level = info\n\tmetrics = "+ln.Addr().String(), 1)
	})
	code, _, errs := runCLI(t, "daemon", "-c", d.conf)
	assert.Equal(t, 1, code)
	assert.Contains(t, errs, "daemon.metrics: listen tcp "+ln.Addr().String())
}

// duplicateTopKeys returns the keys that appear twice at the top level of
// a JSON object (json.Unmarshal would silently keep the last).
func duplicateTopKeys(t *testing.T, line string) []string {
	t.Helper()
	dec := json.NewDecoder(strings.NewReader(line))
	tok, err := dec.Token()
	require.NoError(t, err, line)
	require.Equal(t, json.Delim('{'), tok, line)
	seen, dup := map[string]bool{}, []string(nil)
	for dec.More() {
		k, err := dec.Token()
		require.NoError(t, err, line)
		if seen[k.(string)] {
			dup = append(dup, k.(string))
		}
		seen[k.(string)] = true
		var v json.RawMessage
		require.NoError(t, dec.Decode(&v), line)
	}
	return dup
}

// log_format = json: every line of a daemon's log, debug lines with IKE
// messages included, is one JSON object without duplicate keys; and a
// connection's log_level applies to its lines only.
func TestJSONLogs(t *testing.T) {
	p, logs := startPair(t, func(n string) string {
		if n == "west" {
			return "\tlog_format = json\n"
		}
		return ""
	})
	p.edit(t, "west", func(s string) string {
		return strings.Replace(s, "\t\tpsk_file = demo.psk\n", "\t\tpsk_file = demo.psk\n\t\tlog_level = debug\n", 1)
	})
	code, _, errs := runCLI(t, "reload", "-s", p.sock("west"))
	require.Equal(t, 0, code, errs)
	code, _, errs = runCLI(t, "initiate", "-s", p.sock("west"), "-q", "west-net")
	require.Equal(t, 0, code, errs)
	sc := bufio.NewScanner(bytes.NewReader([]byte(logs["west"].String())))
	n, debug := 0, 0
	for sc.Scan() {
		line := sc.Text()
		n++
		assert.Empty(t, duplicateTopKeys(t, line), line)
		var m map[string]any
		require.NoError(t, json.Unmarshal([]byte(line), &m))
		if m["level"] == "DEBUG" {
			debug++
			assert.Equal(t, "west", m["ike"], "a debug line of another connection: %s", line)
		}
		if m["msg"] == "sending request" {
			assert.Contains(t, m["message"], "request #", "the engine's message attribute, renamed: %s", line)
		}
	}
	assert.Greater(t, n, 5)
	assert.Greater(t, debug, 0, "log_level = debug on connection west shows its debug lines")
	assert.NotContains(t, logs["east"].String(), "level=DEBUG", "east logs at info")
}

func (d *testDaemon) edit(t *testing.T, f func(string) string) {
	t.Helper()
	b, err := os.ReadFile(d.conf)
	require.NoError(t, err)
	require.NoError(t, os.WriteFile(d.conf, []byte(f(string(b))), 0o644))
}

// The daemon runs with one P while idle and puts the runtime's number
// back when it stops; GOMAXPROCS in its environment turns that off.
func TestDaemonProcs(t *testing.T) {
	initial := runtime.GOMAXPROCS(0)
	if initial < 2 {
		t.Skipf("GOMAXPROCS is %d here: nothing to adapt (the real run is on the 2-CPU CI machine)", initial)
	}
	ports, err := freeUDPPorts(2)
	require.NoError(t, err)
	run := func(t *testing.T, want int) {
		d := newTestDaemon(t)
		d.write(t, "info", ports, "")
		startDaemon(t, d)
		if want == initial {
			time.Sleep(300 * time.Millisecond) // time enough for Adapt to have set one
			assert.Equal(t, initial, runtime.GOMAXPROCS(0), "GOMAXPROCS while the daemon runs")
		} else {
			waitFor(t, fmt.Sprintf("GOMAXPROCS %d while the daemon runs idle", want), func() bool { return runtime.GOMAXPROCS(0) == want })
		}
		require.Equal(t, 0, d.stop())
		d.stop = nil
		assert.Equal(t, initial, runtime.GOMAXPROCS(0), "the runtime's number, back after the daemon stopped")
	}
	t.Run("adapted", func(t *testing.T) { run(t, 1) })
	t.Run("GOMAXPROCS set", func(t *testing.T) {
		t.Setenv("GOMAXPROCS", strconv.Itoa(initial))
		run(t, initial)
	})
}
