package kernelops_test

import (
	"context"
	"errors"
	"slices"
	"strings"
	"testing"

	"github.com/keyplane/keyplane/kernelops"
)

// dummyDriver claims nothing.
type dummyDriver struct{}

func (dummyDriver) Capabilities() kernelops.Capabilities { return kernelops.Capabilities{} }
func (dummyDriver) Close() error                         { return nil }

// rawBackend is a Backend that skipped the front end.
type rawBackend struct{ dummyDriver }

func (rawBackend) Name() string { return "raw" }

func TestRegistry(t *testing.T) {
	kernelops.Register("registry-test", func(ctx context.Context, o kernelops.Options) (kernelops.Backend, error) {
		return kernelops.NewHandle(ctx, "registry-test", o, func(context.Context, *kernelops.Env) (kernelops.Driver, error) {
			return dummyDriver{}, nil
		})
	})
	if !slices.Contains(kernelops.Backends(), "registry-test") {
		t.Fatalf("Backends() = %v", kernelops.Backends())
	}
	b, err := kernelops.Open(context.Background(), "registry-test", kernelops.Options{})
	if err != nil {
		t.Fatal(err)
	}
	o := b.(*kernelops.Handle).Options()
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
	kernelops.Register("registry-raw", func(context.Context, kernelops.Options) (kernelops.Backend, error) {
		return rawBackend{}, nil
	})
	if _, err := kernelops.Open(context.Background(), "registry-raw", kernelops.Options{}); !errors.Is(err, kernelops.ErrInvalid) {
		t.Errorf("a factory returning no Handle: got %v, want ErrInvalid", err)
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
