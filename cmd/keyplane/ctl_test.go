package main

import (
	"bytes"
	"context"
	"encoding/json"
	"fmt"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"
)

// pair is two real daemons in this process (nokernel, loopback), west
// and east, whose children west-net and east-net make one tunnel.
type pair struct {
	dir   string
	ports []int
	// extra[n] is appended to daemon n's daemon { } section.
	extra map[string]string
}

func (p *pair) sock(n string) string { return filepath.Join(p.dir, n+".sock") }
func (p *pair) conf(n string) string { return filepath.Join(p.dir, n+".conf") }

// write writes daemon n's configuration; more is appended inside
// connections { }.
func (p *pair) write(t *testing.T, n, daemonExtra, more string) {
	t.Helper()
	w, e := []int{p.ports[0], p.ports[1]}, []int{p.ports[2], p.ports[3]}
	peer, lts, rts, mine, theirs := "east", "10.1.0.0/16", "10.2.0.0/16", w, e
	if n == "east" {
		peer, lts, rts, mine, theirs = "west", "10.2.0.0/16", "10.1.0.0/16", e, w
	}
	text := fmt.Sprintf(demoConf, n, p.sock(n), mine[0], mine[1], theirs[0], theirs[1], peer, lts, rts)
	text = strings.Replace(text, "\tlog_level = info\n", "\tlog_level = info\n"+daemonExtra, 1)
	if more != "" {
		i := strings.LastIndex(text, "}")
		text = text[:i] + more + "\n}\n"
	}
	require.NoError(t, os.WriteFile(p.conf(n), []byte(text), 0o644))
}

// startPair starts west and east (extra(name), if not nil, added to
// each one's daemon section) and returns their stderr; they stop at the
// test's end.
func startPair(t *testing.T, extra func(name string) string) (*pair, map[string]*syncBuffer) {
	t.Helper()
	ports, err := freeUDPPorts(4)
	require.NoError(t, err)
	p := &pair{dir: t.TempDir(), ports: ports}
	require.NoError(t, os.WriteFile(filepath.Join(p.dir, "demo.psk"), []byte("ctl test secret, long enough\n"), 0o600))
	logs := map[string]*syncBuffer{}
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan int, 2)
	for _, n := range []string{"west", "east"} {
		daemonExtra := ""
		if extra != nil {
			daemonExtra = extra(n)
		}
		p.write(t, n, daemonExtra, "")
		stderr := &syncBuffer{}
		logs[n] = stderr
		conf := p.conf(n)
		go func() {
			done <- run(ctx, &env{stdout: &bytes.Buffer{}, stderr: stderr}, []string{"daemon", "-c", conf})
		}()
	}
	t.Cleanup(func() {
		cancel()
		for range 2 {
			if code := <-done; code != 0 {
				t.Errorf("daemon exited %d:\nwest:\n%s\neast:\n%s", code, logs["west"], logs["east"])
			}
		}
	})
	for deadline := time.Now().Add(10 * time.Second); ; time.Sleep(20 * time.Millisecond) {
		c1, _, _ := runCLI(t, "child", "list", "-s", p.sock("west"))
		c2, _, _ := runCLI(t, "child", "list", "-s", p.sock("east"))
		if c1 == 0 && c2 == 0 {
			return p, logs
		}
		if time.Now().After(deadline) {
			t.Fatalf("daemons' control sockets did not come up:\n%s\n%s", logs["west"], logs["east"])
		}
	}
}

func jsonObject(t *testing.T, s string) map[string]any {
	t.Helper()
	var m map[string]any
	require.NoError(t, json.Unmarshal([]byte(s), &m), "not a JSON object: %q", s)
	return m
}

func jsonArray(t *testing.T, s string) []map[string]any {
	t.Helper()
	var a []map[string]any
	require.NoError(t, json.Unmarshal([]byte(s), &a), "not a JSON array: %q", s)
	require.NotNil(t, a, "null instead of []: %q", s)
	return a
}

// TestControlCommands drives two daemons with the CLI's control
// commands: initiate, child list, reload and terminate, in text and
// -json, failures included.
func TestControlCommands(t *testing.T) {
	p, _ := startPair(t, nil)
	west, east := p.sock("west"), p.sock("east")

	// Flags after the name.
	code, out, errs := runCLI(t, "initiate", "west-net", "-s", west, "-json")
	require.Equal(t, 0, code, errs)
	assert.Equal(t, map[string]any{"name": "west-net", "result": "up"}, jsonObject(t, out))
	code, out, _ = runCLI(t, "child", "list", "-s", east, "-json")
	chs := jsonArray(t, out)
	require.Equal(t, 0, code)
	require.Len(t, chs, 1)
	assert.Equal(t, "installed", chs[0]["state"])
	for _, k := range []string{"spi_in", "spi_out", "reqid"} {
		assert.Regexp(t, `^0x[0-9a-f]{8}$`, chs[0][k], k)
	}
	// The same SPIs in text.
	_, out, _ = runCLI(t, "child", "list", "-s", east)
	assert.Contains(t, out, chs[0]["spi_in"].(string))
	assert.Contains(t, out, chs[0]["reqid"].(string))
	// Already up: said, not renegotiated.
	code, out, _ = runCLI(t, "initiate", "-s", west, "west")
	assert.Equal(t, 0, code)
	assert.Equal(t, "west is already up\n", out)
	code, out, _ = runCLI(t, "-s", west, "initiate", "-json", "west-net")
	assert.Equal(t, 0, code)
	assert.Equal(t, "already-up", jsonObject(t, out)["result"])

	code, out, errs = runCLI(t, "terminate", "-s", east, "-json", "nosuch")
	assert.Equal(t, 1, code)
	assert.Empty(t, out, "a failure under -json writes nothing to stdout")
	m := jsonObject(t, errs)
	assert.Equal(t, "not_found", m["code"])
	assert.Equal(t, "terminate", m["command"])
	assert.Contains(t, m["error"], "nosuch")
	code, _, errs = runCLI(t, "terminate", "-s", east, "nosuch")
	assert.Equal(t, 1, code)
	assert.Contains(t, errs, "keyplane terminate:")
	assert.Contains(t, errs, "nosuch")
	code, out, errs = runCLI(t, "terminate", "east", "-s", east, "-json")
	require.Equal(t, 0, code, errs)
	assert.Equal(t, map[string]any{"name": "east", "result": "terminated"}, jsonObject(t, out))
	for deadline := time.Now().Add(5 * time.Second); ; time.Sleep(20 * time.Millisecond) {
		_, out, _ := runCLI(t, "child", "list", "-s", west, "-json")
		if strings.TrimSpace(out) == "[]" {
			break
		}
		if time.Now().After(deadline) {
			t.Fatalf("west still lists children after east's terminate: %s", out)
		}
	}
	// Empty lists: [] in JSON, nothing with --stream, a count in text.
	_, out, _ = runCLI(t, "ike", "list", "-s", west, "-json")
	assert.Equal(t, "[]\n", out)
	_, out, _ = runCLI(t, "ike", "list", "-s", west, "-json", "--stream")
	assert.Equal(t, "", out)
	_, out, _ = runCLI(t, "ike", "list", "-s", west)
	assert.Contains(t, out, "0 IKE SAs")

	// initiate prints one line per state change, then the outcome.
	code, out, errs = runCLI(t, "initiate", "west-net", "-s", west)
	require.Equal(t, 0, code, errs)
	for _, want := range []string{"ike       west       init-sent", "ike       west       established", "child     west-net   installed", "west-net is up"} {
		assert.Contains(t, out, want)
	}
	assert.Regexp(t, `\[0x[0-9a-f]{16}_i 0x[0-9a-f]{16}_r\]`, out)

	// Lists with two entries: an array, or one object per line.
	_, out, _ = runCLI(t, "ike", "list", "-s", west, "-json")
	ikes := jsonArray(t, out)
	require.Len(t, ikes, 1)
	assert.Regexp(t, `^0x[0-9a-f]{16}$`, ikes[0]["spi_i"])
	_, out, _ = runCLI(t, "child", "list", "-s", west, "-json", "-stream")
	lines := strings.Split(strings.TrimSpace(out), "\n")
	require.Len(t, lines, 1)
	assert.Equal(t, "west-net", jsonObject(t, lines[0])["name"])

	// Paging: --limit N, --after the last ID shown.
	id := fmt.Sprint(ikes[0]["ike_id"])
	_, out, _ = runCLI(t, "ike", "list", "-s", west, "-json", "--limit", "1")
	assert.Len(t, jsonArray(t, out), 1)
	_, out, _ = runCLI(t, "ike", "list", "-s", west, "-json", "--after", id)
	assert.Equal(t, "[]\n", out)
	_, out, _ = runCLI(t, "child", "list", "-s", west, "--after", id)
	assert.Contains(t, out, "0 child SAs")
	code, _, _ = runCLI(t, "child", "list", "-s", west, "--after", "4294967296")
	assert.Equal(t, 2, code, "an ID beyond 32 bits is a usage error")
}

// A daemon nobody listens for: the error names the socket, as text or
// as the JSON error object.
func TestUnreachableDaemon(t *testing.T) {
	sock := filepath.Join(t.TempDir(), "none.sock")
	code, out, errs := runCLI(t, "ike", "list", "-s", sock, "-json")
	assert.Equal(t, 1, code)
	assert.Empty(t, out)
	m := jsonObject(t, errs)
	assert.Equal(t, "unreachable", m["code"])
	assert.Equal(t, "ike list", m["command"])
	assert.Contains(t, m["error"], sock)
	code, _, errs = runCLI(t, "-s", sock, "reload")
	assert.Equal(t, 1, code)
	assert.Contains(t, errs, "keyplane reload: control socket "+sock)
	assert.Contains(t, errs, "is the daemon running?")
	t.Setenv("KEYPLANE_CONTROL", sock)
	code, _, errs = runCLI(t, "stats")
	assert.Equal(t, 1, code)
	assert.Contains(t, errs, sock)
}

// TestRekeyCommand: rekey by child and by connection name, in text and
// -json, with its failures (no such name; nothing of that name up). The
// rekeys are real: new SPIs at both ends, one child and one IKE SA left.
func TestRekeyCommand(t *testing.T) {
	p, _ := startPair(t, nil)
	west, east := p.sock("west"), p.sock("east")

	code, out, errs := runCLI(t, "rekey", "west-net", "-s", west, "-json")
	assert.Equal(t, 1, code)
	assert.Empty(t, out, "a failure under -json writes nothing to stdout")
	m := jsonObject(t, errs)
	assert.Equal(t, "rekey", m["command"])
	assert.Contains(t, m["error"], `"west-net" is not up`)
	code, out, errs = runCLI(t, "rekey", "-s", west, "nosuch", "-json")
	assert.Equal(t, 1, code)
	assert.Empty(t, out)
	assert.Equal(t, "not_found", jsonObject(t, errs)["code"])
	code, _, errs = runCLI(t, "rekey", "-s", west, "nosuch")
	assert.Equal(t, 1, code)
	assert.Contains(t, errs, "keyplane rekey:")
	assert.Contains(t, errs, "nosuch")
	code, _, errs = runCLI(t, "rekey", "-s", west)
	assert.Equal(t, 2, code, "no NAME is a usage error")
	assert.Contains(t, errs, "want one NAME")

	code, _, errs = runCLI(t, "initiate", "west-net", "-s", west)
	require.Equal(t, 0, code, errs)
	children := func(sock string) []map[string]any {
		_, out, _ := runCLI(t, "child", "list", "-s", sock, "-json")
		return jsonArray(t, out)
	}
	ikes := func(sock string) []map[string]any {
		_, out, _ := runCLI(t, "ike", "list", "-s", sock, "-json")
		return jsonArray(t, out)
	}
	before := children(west)
	require.Len(t, before, 1)
	// settled waits until each end has one IKE SA with one installed child,
	// ok says the rekey is done, and the ends agree on the child's SPIs.
	settled := func(what string, ok func(w, e []map[string]any) bool) {
		t.Helper()
		for deadline := time.Now().Add(10 * time.Second); ; time.Sleep(20 * time.Millisecond) {
			w, e := ikes(west), ikes(east)
			if len(w) == 1 && len(e) == 1 && w[0]["state"] == "established" && e[0]["state"] == "established" {
				wc, ec := w[0]["children"].([]any), e[0]["children"].([]any)
				if len(wc) == 1 && len(ec) == 1 {
					wch, ech := wc[0].(map[string]any), ec[0].(map[string]any)
					if wch["state"] == "installed" && ech["state"] == "installed" && ok(w, e) {
						assert.Equal(t, wch["spi_in"], ech["spi_out"])
						assert.Equal(t, wch["spi_out"], ech["spi_in"])
						return
					}
				}
			}
			if time.Now().After(deadline) {
				t.Fatalf("%s: not settled:\nwest %v\neast %v", what, w, e)
			}
		}
	}

	// A child, -json: new SPIs, the old SAs gone.
	code, out, errs = runCLI(t, "rekey", "west-net", "-s", west, "-json")
	require.Equal(t, 0, code, errs)
	assert.Equal(t, map[string]any{"name": "west-net", "result": "rekeying"}, jsonObject(t, out))
	settled("child rekey", func(w, _ []map[string]any) bool {
		return w[0]["children"].([]any)[0].(map[string]any)["spi_in"] != before[0]["spi_in"]
	})
	after := children(west)
	require.Len(t, after, 1)

	// A connection, text: new IKE SPIs, the child moved over unchanged.
	ikeBefore := ikes(west)
	code, out, errs = runCLI(t, "rekey", "-s", west, "west")
	require.Equal(t, 0, code, errs)
	assert.Equal(t, "west: rekey started\n", out)
	settled("IKE SA rekey", func(w, _ []map[string]any) bool {
		return w[0]["spi_i"] != ikeBefore[0]["spi_i"]
	})
	moved := children(west)
	require.Len(t, moved, 1)
	assert.Equal(t, after[0]["spi_in"], moved[0]["spi_in"], "an IKE SA rekey keeps the children")
}

// hw_offload through the daemon: nokernel's loopback device offloads
// nothing, so packet offload fails the child and the initiate reply
// says which device refused what and why; auto installs in software,
// and child list shows the offload installed.
func TestControlOffload(t *testing.T) {
	p, logs := startPair(t, nil)
	west := p.sock("west")
	setOffload := func(mode string) {
		t.Helper()
		p.write(t, "west", "", "")
		b, err := os.ReadFile(p.conf("west"))
		require.NoError(t, err)
		b = bytes.Replace(b, []byte("start_action = none\n"), []byte("start_action = none\n\t\t\t\thw_offload = "+mode+"\n"), 1)
		require.NoError(t, os.WriteFile(p.conf("west"), b, 0o644))
		code, _, errs := runCLI(t, "reload", "-s", west)
		require.Equal(t, 0, code, errs)
	}
	setOffload("packet")
	code, out, errs := runCLI(t, "initiate", "west-net", "-s", west)
	assert.Equal(t, 1, code, out)
	assert.Contains(t, errs, `device "lo" refused packet offload: device does not support packet offload`)
	assert.Contains(t, logs["west"].String(), `refused packet offload`)

	setOffload("auto")
	code, _, errs = runCLI(t, "initiate", "west-net", "-s", west)
	require.Equal(t, 0, code, errs)
	_, out, _ = runCLI(t, "child", "list", "-s", west, "-json")
	chs := jsonArray(t, out)
	require.Len(t, chs, 1)
	assert.Equal(t, "no", chs[0]["offload"])
	_, out, _ = runCLI(t, "child", "list", "-s", west)
	assert.Contains(t, out, "OFFLOAD")
	assert.Contains(t, logs["west"].String(), "hw_offload auto fell back")
}

// TestListSince: ike list and child list --since against a daemon: the
// full listing with its cursor (--since 0), what changed after a cursor
// (a child up, then nothing, then an IKE SA deleted), as JSON objects
// and as tables; counters only with --counters; usage errors and an
// expired cursor.
func TestListSince(t *testing.T) {
	p, _ := startPair(t, nil)
	west := p.sock("west")
	since := func(cmd string, args ...string) map[string]any {
		t.Helper()
		code, out, errs := runCLI(t, append([]string{cmd, "list", "-s", west, "-json"}, args...)...)
		require.Equal(t, 0, code, errs)
		return jsonObject(t, out)
	}
	first := since("child", "--since", "0")
	c0, ok := first["cursor"].(string)
	require.True(t, ok, "%v", first)
	require.Regexp(t, `^[0-9a-f]{8}\.[0-9]+$`, c0)
	assert.Equal(t, []any{}, first["deleted"])

	code, _, errs := runCLI(t, "initiate", "west-net", "-s", west)
	require.Equal(t, 0, code, errs)
	up := since("child", "--since", c0)
	kids := up["children"].([]any)
	require.Len(t, kids, 1)
	kid := kids[0].(map[string]any)
	assert.Equal(t, "installed", kid["state"])
	assert.Equal(t, true, kid["counters_omitted"])
	assert.Regexp(t, `^0x[0-9a-f]{8}$`, kid["spi_in"])
	c1 := up["cursor"].(string)
	assert.NotEqual(t, c0, c1)
	quiet := since("child", "--since", c1)
	assert.Equal(t, []any{}, quiet["children"])
	assert.Equal(t, c1, quiet["cursor"])
	counted := since("child", "--since", "0", "--counters")
	require.Len(t, counted["children"], 1)
	assert.NotContains(t, counted["children"].([]any)[0], "counters_omitted")
	_, out, _ := runCLI(t, "child", "list", "-s", west, "--since", c0)
	assert.Contains(t, out, "1 child SAs changed")
	assert.Contains(t, out, "cursor "+c1)

	ikes := since("ike", "--since", c1)
	assert.Equal(t, []any{}, ikes["ike_sas"])
	all := since("ike", "--since", "0")
	require.Len(t, all["ike_sas"], 1)
	id := all["ike_sas"].([]any)[0].(map[string]any)["ike_id"]
	code, _, errs = runCLI(t, "terminate", "west", "-s", west)
	require.Equal(t, 0, code, errs)
	var gone map[string]any
	for deadline := time.Now().Add(5 * time.Second); ; time.Sleep(20 * time.Millisecond) {
		gone = since("ike", "--since", c1)
		if len(gone["deleted"].([]any)) > 0 || time.Now().After(deadline) {
			break
		}
	}
	assert.Equal(t, []any{map[string]any{"ike_id": id}}, gone["deleted"])
	_, out, _ = runCLI(t, "ike", "list", "-s", west, "--since", c1)
	assert.Contains(t, out, fmt.Sprintf("deleted: IKE SA %v", id))
	kidsGone := since("child", "--since", c1)
	assert.Equal(t, []any{map[string]any{"ike_id": id, "child_id": kid["child_id"]}}, kidsGone["deleted"])

	for _, args := range [][]string{{"--since", "x"}, {"--since", "0", "--limit", "1"}, {"--since", "0", "--after", "1"},
		{"--counters"}, {"--since", "0", "-json", "--stream"}} {
		code, _, _ := runCLI(t, append([]string{"child", "list", "-s", west}, args...)...)
		assert.Equal(t, 2, code, "%v: a usage error", args)
	}
	// A cursor of another run (another epoch) is refused with its code.
	other := "1." + strings.Split(c1, ".")[1]
	if !strings.HasPrefix(c1, "00000001.") {
		code, out, errs = runCLI(t, "child", "list", "-s", west, "-json", "--since", other)
		assert.Equal(t, 1, code)
		assert.Empty(t, out)
		assert.Equal(t, "cursor_expired", jsonObject(t, errs)["code"])
	}
}
