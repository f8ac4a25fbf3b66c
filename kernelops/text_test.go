package kernelops

import (
	"encoding/json"
	"strings"
	"testing"
)

func TestJSONNamesAndRedaction(t *testing.T) {
	sa := goodSA()
	sa.Encryption.Key = Key("SECRETSECRETSECRETSE")
	b, err := json.Marshal(sa)
	if err != nil {
		t.Fatal(err)
	}
	s := string(b)
	if strings.Contains(s, "SECRET") || strings.Contains(s, "U0VDUkVU") {
		t.Fatalf("JSON leaks the key: %s", s)
	}
	for _, want := range []string{`"Proto":"esp"`, `"Mode":"tunnel"`, `"ID":"ENCR_AES_GCM_16"`} {
		if !strings.Contains(s, want) {
			t.Errorf("JSON lacks %s: %s", want, s)
		}
	}
	var back SA
	if err := json.Unmarshal(b, &back); err != nil {
		t.Fatal(err)
	}
	if back.ID != sa.ID || back.Mode != sa.Mode || back.Encryption.ID != sa.Encryption.ID || back.Encryption.Key != nil {
		t.Errorf("round trip: %+v", back)
	}
	var m Mode
	if err := m.UnmarshalText([]byte("sideways")); err == nil {
		t.Error("unknown mode accepted")
	}
}
