package nokernel_test

import (
	"errors"
	"net/netip"
	"syscall"
	"testing"
	"time"

	"github.com/keyplane/keyplane/backends/nokernel"
	"github.com/keyplane/keyplane/iana"
	"github.com/keyplane/keyplane/kernelops"
)

func TestRegistered(t *testing.T) {
	b, err := kernelops.Open(t.Context(), nokernel.Name, kernelops.Options{})
	noErr(t, "open through the registry", err)
	defer b.Close()
	if b.Name() != "nokernel" {
		t.Fatalf("name %q", b.Name())
	}
	_, err = kernelops.Open(t.Context(), nokernel.Name, kernelops.Options{Params: map[string]string{"nope": "1"}})
	var ke *kernelops.Error
	if !errors.As(err, &ke) || ke.Field != "Params.nope" {
		t.Fatalf("unknown parameter: %v, want ErrInvalid naming Params.nope", err)
	}
}

func TestLarvalSA(t *testing.T) {
	b, clk := model(t, nil)
	ev := subscribe(t, b, kernelops.KindExpire)
	const one = 0xc1000000
	req := kernelops.SPIRequest{Src: remote, Dst: local, Proto: kernelops.ProtoESP, ReqID: 7, Min: one, Max: one}
	spi, err := b.AllocSPI(ctx(t), req)
	noErr(t, "alloc", err)
	id := kernelops.SAID{Src: remote, Dst: local, SPI: spi, Proto: kernelops.ProtoESP}
	e, err := b.GetSA(ctx(t), id)
	noErr(t, "get larval", err)
	if e.State != kernelops.SALarval || e.ReqID != 7 {
		t.Fatalf("larval entry %+v", e)
	}
	_, err = b.AllocSPI(ctx(t), req)
	mustErr(t, "second alloc in a one-SPI range", err, kernelops.ErrNoSpace, 0)
	if u := collectUsage(t, b); len(u) != 0 {
		t.Errorf("usage lists larval SAs: %v", u)
	}

	// Unfilled, it expires after 30s like XFRM's acquire state, and its
	// SPI is free again.
	clk.Advance(29 * time.Second)
	if evs := ev.take(); len(evs) != 0 {
		t.Fatalf("early: %v", evs)
	}
	clk.Advance(time.Second)
	evs := ev.take()
	if len(evs) != 1 || !evs[0].(*kernelops.ExpireEvent).Hard || evs[0].(*kernelops.ExpireEvent).SA != id {
		t.Fatalf("events at 30s: %v, want one hard expire of the larval SA", evs)
	}
	_, err = b.GetSA(ctx(t), id)
	mustErr(t, "get expired larval", err, kernelops.ErrNotFound, syscall.ESRCH)
	spi2, err := b.AllocSPI(ctx(t), req)
	noErr(t, "alloc after the reservation expired", err)

	// Filled, it lives on.
	sa := gcmSA(remote, local, 7)
	sa.ID.SPI = spi2
	noErr(t, "fill", b.AddSA(ctx(t), sa))
	clk.Advance(time.Hour)
	if evs := ev.take(); len(evs) != 0 {
		t.Fatalf("a filled SA expired: %v", evs)
	}
	e, err = b.GetSA(ctx(t), sa.ID)
	noErr(t, "get filled", err)
	if e.State != kernelops.SAValid || e.Encryption.ID != iana.EncrAESGCM16 {
		t.Fatalf("filled entry %+v", e)
	}
}

func collectUsage(t *testing.T, b *nokernel.Backend) []kernelops.Usage {
	var out []kernelops.Usage
	for u, err := range b.Usage(ctx(t)) {
		noErr(t, "usage", err)
		out = append(out, u)
	}
	return out
}

func TestAllocSPIBadInput(t *testing.T) {
	b, _ := model(t, nil)
	for _, tc := range []struct {
		req   kernelops.SPIRequest
		field string
	}{
		{kernelops.SPIRequest{Src: remote, Proto: kernelops.ProtoESP}, "Dst"},
		{kernelops.SPIRequest{Src: netip.MustParseAddr("2001:db8::1"), Dst: local, Proto: kernelops.ProtoESP}, "Src"},
		{kernelops.SPIRequest{Src: remote, Dst: local, Proto: 99}, "Proto"},
		{kernelops.SPIRequest{Src: remote, Dst: local, Proto: kernelops.ProtoESP, Min: 1, Max: 100}, "Min"},
		{kernelops.SPIRequest{Src: remote, Dst: local, Proto: kernelops.ProtoESP, Min: 2000, Max: 1000}, "Min"},
		{kernelops.SPIRequest{Src: remote, Dst: local, Proto: kernelops.ProtoIPComp, Min: 300, Max: 0x10000}, "Max"},
	} {
		_, err := b.AllocSPI(ctx(t), tc.req)
		var ke *kernelops.Error
		if !errors.Is(err, kernelops.ErrInvalid) || !errors.As(err, &ke) || ke.Field != tc.field {
			t.Errorf("%+v: %v, want ErrInvalid naming %s", tc.req, err, tc.field)
		}
	}
	cpi, err := b.AllocSPI(ctx(t), kernelops.SPIRequest{Src: remote, Dst: local, Proto: kernelops.ProtoIPComp})
	noErr(t, "alloc CPI", err)
	if cpi < 256 || cpi > 0xffff {
		t.Errorf("CPI %#x outside 256..65535", cpi)
	}
}

// TestSAKey: XFRM finds SAs by destination, SPI, protocol and mark; the
// source address is not part of the key.
func TestSAKey(t *testing.T) {
	b, _ := model(t, nil)
	sa := gcmSA(local, remote, 1)
	noErr(t, "add", b.AddSA(ctx(t), sa))
	other := sa.Clone()
	other.ID.Src = netip.MustParseAddr("192.0.2.99")
	mustErr(t, "add with another source", b.AddSA(ctx(t), other), kernelops.ErrExists, syscall.EEXIST)
	e, err := b.GetSA(ctx(t), other.ID)
	noErr(t, "get with another source", err)
	if e.ID.Src != local {
		t.Errorf("found %s", e.ID)
	}
	marked := sa.Clone()
	marked.ID.Mark = kernelops.Mark{Value: 5, Mask: 0xff}
	noErr(t, "same SPI, another mark", b.AddSA(ctx(t), marked))
	noErr(t, "delete unmarked", b.DeleteSA(ctx(t), sa.ID))
	_, err = b.GetSA(ctx(t), marked.ID)
	noErr(t, "marked SA survives", err)
	mustErr(t, "delete again", b.DeleteSA(ctx(t), sa.ID), kernelops.ErrNotFound, syscall.ESRCH)
}

func TestUpdateSA(t *testing.T) {
	b, _ := model(t, nil)
	sa := gcmSA(local, remote, 1)
	sa.Encap = &kernelops.Encap{SrcPort: 4500, DstPort: 4500}
	noErr(t, "add", b.AddSA(ctx(t), sa))
	for _, tc := range []struct {
		field string
		mod   func(*kernelops.SA)
	}{
		{"Encryption.Key", func(s *kernelops.SA) { s.Encryption.Key = make(kernelops.Key, 20); s.Encryption.Key[0] = 1 }},
		{"ReqID", func(s *kernelops.SA) { s.ReqID = 2 }},
		{"Mode", func(s *kernelops.SA) { s.Mode = kernelops.ModeTransport }},
		{"Encap", func(s *kernelops.SA) { s.Encap = nil }},
	} {
		up := sa.Clone()
		tc.mod(up)
		err := b.UpdateSA(ctx(t), up)
		var ke *kernelops.Error
		if !errors.As(err, &ke) || !errors.Is(err, kernelops.ErrInvalid) || ke.Field != tc.field {
			t.Errorf("update changing %s: %v", tc.field, err)
		}
	}
	up := sa.Clone()
	up.Encap.DstPort = 31000
	up.Lifetime.Hard.Packets = 100
	noErr(t, "update ports and lifetime", b.UpdateSA(ctx(t), up))
	e, _ := b.GetSA(ctx(t), sa.ID)
	if e.Encap.DstPort != 31000 || e.Lifetime.Hard.Packets != 100 {
		t.Errorf("update did not apply: %+v", e.SA)
	}
	// The new lifetime is enforced.
	noErr(t, "policy", b.AddPolicy(ctx(t), tunnelPolicy(kernelops.DirOut, kernelops.ActionIPsec, 1)))
	out(b, t, 100, 10)
	_, err := b.GetSA(ctx(t), sa.ID)
	mustErr(t, "after 100 packets with a hard limit of 100", err, kernelops.ErrNotFound, 0)
}

func TestReplayWindowLimit(t *testing.T) {
	b, _ := model(t, nil)
	sa := gcmSA(local, remote, 1)
	sa.ReplayWindow = nokernel.MaxReplayWindow + 1
	err := b.AddSA(ctx(t), sa)
	var ke *kernelops.Error
	if !errors.As(err, &ke) || ke.Field != "ReplayWindow" {
		t.Fatalf("window above the maximum: %v", err)
	}
}

func TestFlushOwnedOnly(t *testing.T) {
	b, _ := model(t, nil)
	owned := gcmSA(local, remote, kernelops.DefaultReqIDMin)
	foreign := gcmSA(local, remote, 42)
	noErr(t, "add owned", b.AddSA(ctx(t), owned))
	noErr(t, "add foreign", b.AddSA(ctx(t), foreign))
	_, err := b.AllocSPI(ctx(t), kernelops.SPIRequest{Src: remote, Dst: local, Proto: kernelops.ProtoESP, ReqID: kernelops.DefaultReqIDMin + 1})
	noErr(t, "alloc owned", err)
	po := tunnelPolicy(kernelops.DirOut, kernelops.ActionIPsec, kernelops.DefaultReqIDMin)
	pf := tunnelPolicy(kernelops.DirIn, kernelops.ActionIPsec, 42)
	pass := &kernelops.Policy{Selector: kernelops.Selector{Proto: 6, DstPort: 22}, Dir: kernelops.DirIn, Action: kernelops.ActionPass}
	for _, p := range []*kernelops.Policy{po, pf, pass} {
		noErr(t, "add policy", b.AddPolicy(ctx(t), p))
	}
	noErr(t, "flush SAs", b.FlushSAs(ctx(t)))
	noErr(t, "flush policies", b.FlushPolicies(ctx(t)))
	var left []kernelops.SAID
	for e, err := range b.SAs(ctx(t)) {
		noErr(t, "dump", err)
		left = append(left, e.ID)
	}
	if len(left) != 1 || left[0] != foreign.ID {
		t.Errorf("after flush: %v, want only the foreign SA", left)
	}
	var pols []kernelops.PolicyID
	for e, err := range b.Policies(ctx(t)) {
		noErr(t, "dump", err)
		pols = append(pols, e.ID())
	}
	if len(pols) != 2 {
		t.Errorf("after flush: %v, want the foreign ipsec and the pass policy", pols)
	}
}

// TestDumpDuringChanges: SAs deleted during a dump are skipped; the dump
// never fails or repeats.
func TestDumpDuringChanges(t *testing.T) {
	b, _ := model(t, nil)
	var ids []kernelops.SAID
	for range 1000 {
		sa := gcmSA(local, remote, 1)
		noErr(t, "add", b.AddSA(ctx(t), sa))
		ids = append(ids, sa.ID)
	}
	seen := map[kernelops.SAID]bool{}
	deleted := map[kernelops.SAID]bool{}
	n := 0
	for e, err := range b.SAs(ctx(t)) {
		noErr(t, "dump", err)
		if seen[e.ID] || deleted[e.ID] {
			t.Fatalf("dump yielded %s again or after its delete", e.ID)
		}
		seen[e.ID] = true
		if n++; n == 10 {
			for _, id := range ids {
				if !seen[id] && len(deleted) < 500 {
					noErr(t, "delete", b.DeleteSA(ctx(t), id))
					deleted[id] = true
				}
			}
		}
	}
	if len(seen)+len(deleted) != 1000 {
		t.Errorf("dump saw %d, %d deleted during it; want 1000 together", len(seen), len(deleted))
	}
}

func TestKeysNotAliased(t *testing.T) {
	b, _ := model(t, nil)
	sa := gcmSA(local, remote, 1)
	noErr(t, "add", b.AddSA(ctx(t), sa))
	sa.Encryption.Key[0] = 0xaa // the caller's slice is not the model's
	e, _ := b.GetSA(ctx(t), sa.ID)
	if e.Encryption.Key[0] == 0xaa {
		t.Fatal("the model kept the caller's key slice")
	}
	e.Encryption.Key[1] = 0xbb
	e2, _ := b.GetSA(ctx(t), sa.ID)
	if e2.Encryption.Key[1] == 0xbb {
		t.Fatal("GetSA returned the model's own key slice")
	}
}

// A marked SA fills the unmarked larval SA of its SPI, as XFRM's UPDSA
// finds it with (mark & m) == v: no second SA, no reservation left.
func TestLarvalSAFilledWithMark(t *testing.T) {
	b, _ := model(t, nil)
	const one = 0xc1000001
	spi, err := b.AllocSPI(ctx(t), kernelops.SPIRequest{Src: remote, Dst: local, Proto: kernelops.ProtoESP, ReqID: 7, Min: one, Max: one})
	noErr(t, "alloc", err)
	sa := gcmSA(remote, local, 7)
	sa.ID.SPI, sa.ID.Mark = spi, kernelops.Mark{Value: 0x2a, Mask: 0xff}
	noErr(t, "fill with a mark", b.AddSA(ctx(t), sa))
	n := 0
	for e, err := range b.SAs(ctx(t)) {
		noErr(t, "dump", err)
		if e.State == kernelops.SALarval || e.ID.Mark != sa.ID.Mark {
			t.Errorf("entry %s state %v, want the marked SA only", e.ID, e.State)
		}
		n++
	}
	if n != 1 {
		t.Fatalf("%d SAs, want 1", n)
	}
}
