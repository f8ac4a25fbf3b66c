//go:build vpp

package main

import (
	"context"
	"flag"
	"net/netip"

	"github.com/keyplane/keyplane/backends/vpp"
	"github.com/keyplane/keyplane/backends/vpp/vppharness"
	"github.com/keyplane/keyplane/conformance"
)

func init() {
	backendFlagHooks = append(backendFlagHooks, func(fs *flag.FlagSet, b *backendFlags) {
		fs.Func("vpp-socket", "VPP API socket (vpp backend; default "+vpp.DefaultSocket+")", func(s string) error {
			b.params[vpp.ParamSocket] = s
			return nil
		})
		fs.Func("vpp-stats-socket", "VPP stats socket (vpp backend)", func(s string) error {
			b.params[vpp.ParamStatsSocket] = s
			return nil
		})
	})
	// Against a live VPP: no traffic source, real time; the cases that need
	// packets skip and say so. KEYPLANE_VPP_* style knobs go in -param.
	liveHarnesses[vpp.Name] = func(_ context.Context, params map[string]string) (func(t conformance.TB) *conformance.Harness, error) {
		o := vppharness.LiveOptions{Params: map[string]string{}}
		for k, v := range params {
			switch k {
			case "test-ifname":
				o.IfName = v
			case "test-local", "test-remote":
				a, err := netip.ParseAddr(v)
				if err != nil {
					return nil, usageError{"-param " + k + ": " + err.Error()}
				}
				if k == "test-local" {
					o.Local = a
				} else {
					o.Remote = a
				}
			default:
				o.Params[k] = v
			}
		}
		return vppharness.Live(o), nil
	}
}
