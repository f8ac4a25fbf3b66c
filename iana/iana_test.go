package iana_test

import (
	"encoding/json"
	"testing"

	"github.com/keyplane/keyplane/iana"
	"github.com/keyplane/keyplane/internal/gencheck"
)

func TestGeneratedStringsFresh(t *testing.T) { gencheck.Stringers(t, ".") }

func TestNames(t *testing.T) {
	for _, tc := range []struct {
		got  string
		want string
	}{
		{iana.EncrAESGCM16.String(), "ENCR_AES_GCM_16"},
		{iana.EncrID(99).String(), "EncrID(99)"},
		{iana.IntegHMACSHA256_128.String(), "AUTH_HMAC_SHA2_256_128"},
		{iana.PRFHMACSHA384.String(), "PRF_HMAC_SHA2_384"},
		{iana.DHMLKEM768.String(), "ML_KEM_768"},
		{iana.ESNYes.String(), "ESN"},
	} {
		if tc.got != tc.want {
			t.Errorf("got %q, want %q", tc.got, tc.want)
		}
	}
}

func TestKeyLen(t *testing.T) {
	for _, tc := range []struct {
		e    iana.EncrID
		bits int
		want int
		ok   bool
	}{
		{iana.EncrAESGCM16, 128, 20, true},
		{iana.EncrAESCBC, 256, 32, true},
		{iana.EncrAESCCM8, 192, 27, true},
		{iana.EncrChaCha20Poly1305, 0, 36, true},
		{iana.EncrChaCha20Poly1305, 128, 0, false},
		{iana.EncrAESCBC, 100, 0, false},
		{iana.EncrCamelliaCBC, 128, 0, false}, // no layout known
	} {
		n, err := tc.e.KeyLen(tc.bits)
		if (err == nil) != tc.ok || n != tc.want {
			t.Errorf("%s/%d: %d, %v", tc.e, tc.bits, n, err)
		}
	}
	if !iana.EncrAESGCM16.AEAD() || iana.EncrAESCBC.AEAD() {
		t.Error("AEAD is wrong")
	}
}

func TestJSON(t *testing.T) {
	b, err := json.Marshal(struct {
		E iana.EncrID
		I iana.IntegID
	}{iana.EncrAESCBC, iana.IntegHMACSHA512_256})
	if err != nil || string(b) != `{"E":"ENCR_AES_CBC","I":"AUTH_HMAC_SHA2_512_256"}` {
		t.Fatalf("%s %v", b, err)
	}
	var back struct {
		E iana.EncrID
		I iana.IntegID
	}
	if err := json.Unmarshal(b, &back); err != nil || back.E != iana.EncrAESCBC || back.I != iana.IntegHMACSHA512_256 {
		t.Fatalf("%+v %v", back, err)
	}
	if err := json.Unmarshal([]byte(`{"E":"ENCR_BOGUS"}`), &back); err == nil {
		t.Error("unknown name accepted")
	}
}
