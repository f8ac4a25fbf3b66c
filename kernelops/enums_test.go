package kernelops_test

import (
	"encoding/json"
	"testing"

	"github.com/keyplane/keyplane/internal/gencheck"
	"github.com/keyplane/keyplane/kernelops"
)

// TestGeneratedStringsFresh fails when an enum constant was added without
// `go generate`.
func TestGeneratedStringsFresh(t *testing.T) { gencheck.Stringers(t, ".") }

func TestEnumNamesRoundTrip(t *testing.T) {
	for _, tc := range []struct {
		v    any
		want string
	}{
		{kernelops.ProtoIPComp, "comp"},
		{kernelops.ModeTunnel, "tunnel"},
		{kernelops.DirFwd, "fwd"},
		{kernelops.LimitAddTime, "add-time"},
		{kernelops.OffloadNone, "no"},
		{kernelops.SALarval, "larval"},
		{kernelops.ActionTrap, "trap"},
		{kernelops.OpReplacePolicy, "replace policy"},
		{kernelops.SyncTimer, "timer"},
		{kernelops.Mode(9), "Mode(9)"},
	} {
		if got := tc.v.(interface{ String() string }).String(); got != tc.want {
			t.Errorf("%#v: %q, want %q", tc.v, got, tc.want)
		}
	}
	var p kernelops.Policy
	if err := json.Unmarshal([]byte(`{"Dir":"out","Action":"block"}`), &p); err != nil || p.Dir != kernelops.DirOut || p.Action != kernelops.ActionBlock {
		t.Errorf("unmarshal by name: %+v %v", p, err)
	}
}
