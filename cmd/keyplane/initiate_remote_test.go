package main

import (
	"fmt"
	"testing"
	"time"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"
)

// TestInitiateRemote: `initiate --remote` brings up a connection with
// remote_addrs = %any to the address given, in -json and text; the
// failures: no address for a %any connection (exit 1), an address for a
// connection with a fixed one (exit 1), a malformed address (usage, 2).
func TestInitiateRemote(t *testing.T) {
	p, _ := startPair(t, nil)
	west, east := p.sock("west"), p.sock("east")
	p.write(t, "west", "", fmt.Sprintf(`
	roaming {
		local_addrs = 127.0.0.1
		remote_addrs = %%any
		local_port = %d
		local_port_nat = %d
		remote_port = %d
		remote_port_nat = %d
		proposals = aes128gcm16-prfsha256-x25519
		psk_file = demo.psk
		local {
			id = west.example.org
		}
		remote {
			id = east.example.org
		}
		children {
			roaming-net {
				local_ts = 10.1.0.0/16
				remote_ts = 10.2.0.0/16
				esp_proposals = aes128gcm16
			}
		}
	}`, p.ports[0], p.ports[1], p.ports[2], p.ports[3]))
	code, _, errs := runCLI(t, "reload", "-s", west)
	require.Equal(t, 0, code, errs)

	code, _, errs = runCLI(t, "initiate", "roaming-net", "-s", west, "-q")
	assert.Equal(t, 1, code)
	assert.Contains(t, errs, "no remote address to initiate to")

	code, out, errs := runCLI(t, "initiate", "roaming-net", "--remote", "127.0.0.1", "-s", west, "-json")
	require.Equal(t, 0, code, errs)
	assert.Equal(t, map[string]any{"name": "roaming-net", "result": "up"}, jsonObject(t, out))
	for deadline := time.Now().Add(5 * time.Second); ; time.Sleep(20 * time.Millisecond) {
		_, out, _ := runCLI(t, "child", "list", "-s", east, "-json")
		if chs := jsonArray(t, out); len(chs) == 1 && chs[0]["state"] == "installed" {
			break
		}
		require.False(t, time.Now().After(deadline), "east's child: %s", out)
	}
	_, out, _ = runCLI(t, "ike", "list", "-s", west, "-json")
	ikes := jsonArray(t, out)
	require.Len(t, ikes, 1)
	assert.Equal(t, "roaming", ikes[0]["name"])
	// With MOBIKE (the default) IKE_AUTH moved to the peer's NAT-T port (RFC 4555 §3.2).
	assert.Equal(t, fmt.Sprintf("127.0.0.1:%d", p.ports[3]), ikes[0]["remote"])

	// Again, with the port: the child is up with that peer; nothing new.
	code, out, errs = runCLI(t, "initiate", "roaming", "--remote", fmt.Sprintf("127.0.0.1:%d", p.ports[2]), "-s", west, "-q")
	require.Equal(t, 0, code, errs)
	assert.Equal(t, "roaming is already up with 127.0.0.1\n", out)
	code, out, errs = runCLI(t, "initiate", "roaming-net", "--remote", "127.0.0.1", "-s", west, "-json")
	require.Equal(t, 0, code, errs)
	assert.Equal(t, map[string]any{"name": "roaming-net", "result": "already-up"}, jsonObject(t, out))
	_, out, _ = runCLI(t, "child", "list", "-s", west, "-json")
	assert.Len(t, jsonArray(t, out), 1)

	code, out, errs = runCLI(t, "initiate", "west-net", "--remote", "127.0.0.1", "-s", west, "-json")
	assert.Equal(t, 1, code)
	assert.Empty(t, out)
	assert.Contains(t, jsonObject(t, errs)["error"], "remote_addrs = 127.0.0.1")
	for _, bad := range []string{"nonsense", "127.0.0.1:99999", "fe80::1%eth0"} {
		code, _, errs = runCLI(t, "initiate", "roaming-net", "--remote", bad, "-s", west)
		assert.Equal(t, 2, code, "%s: %s", bad, errs)
		assert.Contains(t, errs, "--remote")
	}
}
