package ike

import "testing"

// TestRetryMoot: a child exchange answered TEMPORARY_FAILURE is tried
// again only while it has tries left and, for a rekey, the child it
// rekeys is still installed and not replaced by the peer.
func TestRetryMoot(t *testing.T) {
	installed := func() *childSA { return &childSA{state: childInstalled} }
	with := func(s childState) *childSA { return &childSA{state: s} }
	replaced := installed()
	replaced.theirs = &childRekey{}
	tests := []struct {
		name string
		x    childExchange
		moot bool
	}{
		{"a create, first failure", childExchange{attempts: 1}, false},
		{"a create, tries used up", childExchange{attempts: tempFailureTries}, true},
		{"a rekey of an installed child", childExchange{attempts: 1, old: installed()}, false},
		{"a rekey, tries used up", childExchange{attempts: tempFailureTries, old: installed()}, true},
		{"a rekey of a child the peer replaced", childExchange{attempts: 1, old: replaced}, true},
		{"a rekey of a child the peer deleted", childExchange{attempts: 1, old: with(childDeleted)}, true},
		{"a rekey of a child being deleted", childExchange{attempts: 1, old: with(childDeleting)}, true},
		{"a rekey of a failed child", childExchange{attempts: 1, old: with(childFailed)}, true},
	}
	for _, tt := range tests {
		if got := retryMoot(&tt.x); got != tt.moot {
			t.Errorf("%s: retryMoot %v, want %v", tt.name, got, tt.moot)
		}
	}
}
