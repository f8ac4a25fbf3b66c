package main

import (
	"fmt"
	"os"
	"strings"
	"testing"
	"time"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"
)

// TestTerminateByID is issue 18's regression at the CLI: west's two
// children are narrowed onto east's one, so east has two CHILD SAs named
// east-net (with two reqids, their selectors differing); `terminate --child-id` removes only the one it
// names. Then rekey and terminate by ID, text and -json, and the
// failures: an unknown ID (not_found, exit 1), a bad or doubled
// reference (usage, exit 2).
func TestTerminateByID(t *testing.T) {
	p, _ := startPair(t, nil)
	west, east := p.sock("west"), p.sock("east")
	// A second child on west, inside east's selectors.
	conf, err := os.ReadFile(p.conf("west"))
	require.NoError(t, err)
	end := "\t\t\t\tstart_action = none\n\t\t\t}\n"
	require.Contains(t, string(conf), end)
	two := strings.Replace(string(conf), end, end+"\t\t\twest-two {\n\t\t\t\tlocal_ts = 10.1.9.0/24\n\t\t\t\tremote_ts = 10.2.9.0/24\n\t\t\t\tesp_proposals = aes128gcm16\n\t\t\t}\n", 1)
	require.NoError(t, os.WriteFile(p.conf("west"), []byte(two), 0o644))
	code, _, errs := runCLI(t, "reload", "-s", west)
	require.Equal(t, 0, code, errs)
	for _, c := range []string{"west-net", "west-two"} {
		code, out, errs := runCLI(t, "initiate", c, "-s", west)
		require.Equal(t, 0, code, errs)
		// The progress lines carry the SAs' IDs.
		assert.Regexp(t, `(?m) child\s+`+c+`\s+installed ike-id=1 child-id=[12] \[`, out)
	}
	list := func(what, sock string) []map[string]any {
		_, out, _ := runCLI(t, what, "list", "-s", sock, "-json")
		return jsonArray(t, out)
	}
	var chs []map[string]any
	for deadline := time.Now().Add(5 * time.Second); ; time.Sleep(20 * time.Millisecond) {
		chs = list("child", east)
		if len(chs) == 2 && chs[0]["state"] == "installed" && chs[1]["state"] == "installed" {
			break
		}
		require.False(t, time.Now().After(deadline), "east's two children: %v", chs)
	}
	assert.Equal(t, chs[0]["name"], chs[1]["name"])
	assert.NotEqual(t, chs[0]["reqid"], chs[1]["reqid"], "two selector sets, two reqids")
	require.NotEqual(t, chs[0]["child_id"], chs[1]["child_id"])
	ikes := list("ike", east)
	require.Len(t, ikes, 1)
	ikeID := ikes[0]["ike_id"].(float64)
	assert.Positive(t, ikeID)
	for _, c := range chs {
		assert.Equal(t, ikeID, c["ike_id"])
	}
	gone, kept := int(chs[0]["child_id"].(float64)), int(chs[1]["child_id"].(float64))

	// The IDs in the text listings.
	_, out, _ := runCLI(t, "child", "list", "-s", east)
	assert.Regexp(t, `(?m)^ID\s+CHILD\s+IKE_ID\s+IKE\s+STATE`, out)
	assert.Regexp(t, fmt.Sprintf(`(?m)^%d\s+east-net\s+%d\s+east\s+installed`, gone, int(ikeID)), out)
	assert.Regexp(t, fmt.Sprintf(`(?m)^%d\s+east-net\s+%d\s+east\s+installed`, kept, int(ikeID)), out)
	_, out, _ = runCLI(t, "ike", "list", "-s", east)
	assert.Regexp(t, fmt.Sprintf(`(?m)^%d\s+east\s+established`, int(ikeID)), out)

	// One child by its ID: the other stays, on both ends.
	code, out, errs = runCLI(t, "terminate", "--child-id", fmt.Sprint(gone), "-s", east, "-json")
	require.Equal(t, 0, code, errs)
	assert.Equal(t, map[string]any{"child_id": float64(gone), "result": "terminated"}, jsonObject(t, out))
	left := list("child", east)
	require.Len(t, left, 1)
	assert.Equal(t, float64(kept), left[0]["child_id"])
	assert.Equal(t, "installed", left[0]["state"])
	for deadline := time.Now().Add(5 * time.Second); ; time.Sleep(20 * time.Millisecond) {
		w := list("child", west)
		if len(w) == 1 {
			assert.Equal(t, left[0]["spi_in"], w[0]["spi_out"])
			break
		}
		require.False(t, time.Now().After(deadline), "west's children: %v", w)
	}

	// Gone now: not_found, exit 1, in JSON and text.
	code, out, errs = runCLI(t, "terminate", "--child-id", fmt.Sprint(gone), "-s", east, "-json")
	assert.Equal(t, 1, code)
	assert.Empty(t, out)
	m := jsonObject(t, errs)
	assert.Equal(t, "not_found", m["code"])
	assert.Equal(t, "terminate", m["command"])
	assert.Contains(t, m["error"], fmt.Sprintf("no CHILD SA with ID %d", gone))
	code, _, errs = runCLI(t, "rekey", "-s", east, "--ike-id", "4000")
	assert.Equal(t, 1, code)
	assert.Contains(t, errs, "keyplane rekey:")
	assert.Contains(t, errs, "no IKE SA with ID 4000")
	// Wrong references: usage errors, exit 2, nothing sent.
	for _, args := range [][]string{
		{"terminate", "east-net", "--child-id", fmt.Sprint(kept)},
		{"terminate", "--ike-id", "1", "--child-id", "1"},
		{"rekey", "--child-id", "4294967296"},
		{"rekey", "--ike-id", "x"},
		{"terminate"},
	} {
		code, _, errs = runCLI(t, append(args, "-s", east)...)
		assert.Equal(t, 2, code, "%v: %s", args, errs)
	}
	assert.Len(t, list("child", east), 1, "nothing touched by the refused commands")

	// Rekey the kept child by ID (text): a new CHILD SA, a new ID.
	code, out, errs = runCLI(t, "rekey", "-s", east, "--child-id", fmt.Sprint(kept))
	require.Equal(t, 0, code, errs)
	assert.Equal(t, fmt.Sprintf("CHILD SA %d: rekey started\n", kept), out)
	for deadline := time.Now().Add(5 * time.Second); ; time.Sleep(20 * time.Millisecond) {
		c := list("child", east)
		if len(c) == 1 && c[0]["state"] == "installed" && c[0]["child_id"].(float64) > float64(kept) {
			break
		}
		require.False(t, time.Now().After(deadline), "east's child not rekeyed: %v", c)
	}

	// The IKE SA by its ID (text): gone on both ends.
	code, out, errs = runCLI(t, "terminate", "--ike-id", fmt.Sprint(int(ikeID)), "-s", east)
	require.Equal(t, 0, code, errs)
	assert.Equal(t, fmt.Sprintf("IKE SA %d terminated\n", int(ikeID)), out)
	assert.Empty(t, list("ike", east))
	for deadline := time.Now().Add(5 * time.Second); len(list("ike", west)) != 0; time.Sleep(20 * time.Millisecond) {
		require.False(t, time.Now().After(deadline), "west's IKE SA not gone")
	}
}
