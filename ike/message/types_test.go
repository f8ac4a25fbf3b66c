package message

import (
	"testing"

	"github.com/keyplane/keyplane/internal/gencheck"
)

// TestGeneratedStringsFresh fails when a constant was added to types.go
// without `go generate`.
func TestGeneratedStringsFresh(t *testing.T) { gencheck.Stringers(t, ".") }

func TestTypeNames(t *testing.T) {
	for _, tc := range []struct{ got, want string }{
		{IKE_AUTH.String(), "IKE_AUTH"},
		{ExchangeType(99).String(), "ExchangeType(99)"},
		{PayloadNotify.String(), "N"},
		{TransformADDKE3.String(), "ADDKE3"},
		{EncrAESGCM16.String(), "ENCR_AES_GCM_16"},
		{PRFHMACSHA2256.String(), "PRF_HMAC_SHA2_256"},
		{AuthNull.String(), "NULL_AUTH"},
		{NotifyType(65000).String(), "NotifyType(65000)"},
	} {
		if tc.got != tc.want {
			t.Errorf("got %q, want %q", tc.got, tc.want)
		}
	}
}
