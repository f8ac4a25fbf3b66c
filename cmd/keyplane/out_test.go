package main

import (
	"bytes"
	"errors"
	"net/netip"
	"testing"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"

	"github.com/keyplane/keyplane/kernelops"
)

// Dataplane objects in JSON: every SPI and ReqID as the CLI writes them,
// lists closed even when the dump fails midway.
func TestDataplaneJSON(t *testing.T) {
	sa := &kernelops.SAEntry{SA: kernelops.SA{ID: kernelops.SAID{Src: netip.MustParseAddr("192.0.2.1"), Dst: netip.MustParseAddr("192.0.2.2"),
		SPI: 0xc0ffee, Proto: kernelops.ProtoESP}, ReqID: 0x4b500001}}
	pol := &kernelops.PolicyEntry{Policy: kernelops.Policy{Dir: kernelops.DirOut, Action: kernelops.ActionIPsec,
		Templates: []kernelops.Template{{Proto: kernelops.ProtoESP, Mode: kernelops.ModeTunnel, ReqID: 7}}}}
	var b bytes.Buffer
	seqSA := func(yield func(*kernelops.SAEntry, error) bool) { yield(sa, nil) }
	require.NoError(t, encodeList(&b, seqSA, false))
	a := jsonArray(t, b.String())
	require.Len(t, a, 1)
	assert.Equal(t, "0x00c0ffee", a[0]["ID"].(map[string]any)["SPI"])
	assert.Equal(t, "0x4b500001", a[0]["ReqID"])

	b.Reset()
	seqPol := func(yield func(*kernelops.PolicyEntry, error) bool) {
		if yield(pol, nil) {
			yield(nil, errors.New("dump failed"))
		}
	}
	err := encodeList(&b, seqPol, false)
	assert.EqualError(t, err, "dump failed")
	a = jsonArray(t, b.String()) // still a closed array
	require.Len(t, a, 1)
	assert.Equal(t, "0x00000007", a[0]["Templates"].([]any)[0].(map[string]any)["ReqID"])

	b.Reset()
	require.NoError(t, encodeList(&b, seqSA, true))
	assert.Equal(t, "0x00c0ffee", jsonObject(t, b.String())["ID"].(map[string]any)["SPI"])
	b.Reset()
	require.NoError(t, encodeList(&b, func(func(*kernelops.SAEntry, error) bool) {}, false))
	assert.Equal(t, "[]\n", b.String())

	// The text forms.
	assert.Equal(t, "0x00c0ffee", spi32(0xc0ffee))
	assert.Equal(t, "0x000000000000abcd", spi64(0xabcd))
	assert.Equal(t, "0xc2fa282d_i 0x00000000_o", spisText("c2fa282d_i 00000000_o"))
	assert.Equal(t, "acquire reqid 0x4b500001", "acquire reqid "+reqid(0x4b500001))
}
