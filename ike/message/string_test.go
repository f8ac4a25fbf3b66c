package message

import (
	"strings"
	"testing"
)

// String goes into log lines: a message of thousands of payloads names 32
// and counts the rest.
func TestStringBounded(t *testing.T) {
	m := &Message{Header: Header{Exchange: IKE_SA_INIT, Initiator: true}}
	for range 15000 {
		m.Payloads = append(m.Payloads, &VendorID{})
	}
	s := m.String()
	if len(s) > 1000 || !strings.HasSuffix(s, " ... 14968 more ]") {
		t.Errorf("%d bytes: %.200s...%s", len(s), s, s[max(0, len(s)-40):])
	}
	m.Payloads = m.Payloads[:2]
	if s := m.String(); !strings.HasSuffix(s, "[ V V ]") {
		t.Errorf("short message: %s", s)
	}
}
