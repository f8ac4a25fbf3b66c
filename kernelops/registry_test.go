package kernelops_test

import (
	"context"
	"errors"
	"slices"
	"strings"
	"testing"

	"github.com/keyplane/keyplane/kernelops"
)

type dummyBackend struct{ opts kernelops.Options }

func (dummyBackend) Name() string                         { return "registry-test" }
func (dummyBackend) Capabilities() kernelops.Capabilities { return kernelops.Capabilities{} }
func (dummyBackend) Close() error                         { return nil }

func TestRegistry(t *testing.T) {
	kernelops.Register("registry-test", func(ctx context.Context, o kernelops.Options) (kernelops.Backend, error) {
		return dummyBackend{opts: o}, nil
	})
	if !slices.Contains(kernelops.Backends(), "registry-test") {
		t.Fatalf("Backends() = %v", kernelops.Backends())
	}
	b, err := kernelops.Open(context.Background(), "registry-test", kernelops.Options{})
	if err != nil {
		t.Fatal(err)
	}
	o := b.(dummyBackend).opts
	if o.SPIMin != kernelops.DefaultSPIMin || o.ReqIDMax != kernelops.DefaultReqIDMax || o.Clock == nil || o.Logger == nil {
		t.Errorf("defaults not applied: %+v", o)
	}
	_, err = kernelops.Open(context.Background(), "no-such-backend", kernelops.Options{})
	if !errors.Is(err, kernelops.ErrUnknownBackend) {
		t.Errorf("unknown backend: got %v", err)
	}
	if _, err := kernelops.As[kernelops.SAD](b); !errors.Is(err, kernelops.ErrNotSupported) {
		t.Errorf("As[SAD] on a backend without SAD: got %v", err)
	}
	defer func() {
		if recover() == nil {
			t.Error("duplicate Register did not panic")
		}
	}()
	kernelops.Register("registry-test", nil)
}

func TestCheckParams(t *testing.T) {
	o := kernelops.Options{Params: map[string]string{"socket": "/x", "sokcet": "/y"}}
	err := o.CheckParams("vpp", "socket", "stats-socket")
	var ke *kernelops.Error
	if !errors.As(err, &ke) || ke.Field != "Params.sokcet" || !errors.Is(err, kernelops.ErrInvalid) {
		t.Fatalf("got %v", err)
	}
}

func TestCapabilities(t *testing.T) {
	c := kernelops.Capabilities{Caps: kernelops.CapSAD | kernelops.CapSPD,
		Notes: map[kernelops.Cap]string{kernelops.CapTrap: "VPP raises no acquire"}}
	if !c.Has(kernelops.CapSAD|kernelops.CapSPD) || c.Has(kernelops.CapTrap) {
		t.Error("Has is wrong")
	}
	err := c.Require("vpp", "add policy", kernelops.CapTrap)
	if !errors.Is(err, kernelops.ErrNotSupported) || !strings.Contains(err.Error(), "VPP raises no acquire") {
		t.Errorf("Require: %v", err)
	}
	for _, x := range kernelops.AllCaps() {
		y, ok := kernelops.ParseCap(x.String())
		if !ok || y != x {
			t.Errorf("ParseCap(%q) = %v, %v", x, y, ok)
		}
	}
}
