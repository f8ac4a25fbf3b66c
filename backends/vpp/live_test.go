//go:build vpp

package vpp_test

import (
	"os"
	"strings"
	"testing"

	"github.com/keyplane/keyplane/backends/vpp"
	"github.com/keyplane/keyplane/backends/vpp/vppharness"
	"github.com/keyplane/keyplane/conformance"
)

// TestLiveConformance runs the suite against a real VPP when
// KEYPLANE_VPP_SOCKET names its API socket (KEYPLANE_VPP_STATS its stats
// socket, KEYPLANE_VPP_INTERFACES the interfaces to bind the SPD to). No
// VPP exists on keyplane's build machines, so it skips there.
func TestLiveConformance(t *testing.T) {
	sock := os.Getenv("KEYPLANE_VPP_SOCKET")
	if sock == "" {
		t.Skip("KEYPLANE_VPP_SOCKET not set: no live VPP (none can be installed on keyplane's build machines)")
	}
	params := map[string]string{}
	if v := os.Getenv("KEYPLANE_VPP_INTERFACES"); v != "" {
		params[vpp.ParamInterfaces] = v
	}
	o := vppharness.LiveOptions{Socket: sock, StatsSocket: os.Getenv("KEYPLANE_VPP_STATS"), Params: params}
	if ifs := strings.Split(params[vpp.ParamInterfaces], ","); ifs[0] != "" {
		o.IfName = ifs[0]
	}
	conformance.Run(t, vppharness.Live(o))
}

// TestMessageList prints the VPP messages and CRCs the backend needs.
func TestMessageList(t *testing.T) {
	crcs := vpp.MessageCRCs()
	if len(crcs) != len(vpp.Messages()) {
		t.Fatalf("%d CRCs for %d messages", len(crcs), len(vpp.Messages()))
	}
	for _, c := range crcs {
		t.Log(c)
	}
}
