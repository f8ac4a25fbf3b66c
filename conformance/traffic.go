package conformance

import (
	"time"

	"github.com/keyplane/keyplane/kernelops"
)

// installOut installs an outbound SA and the policy that sends the test
// flow through it, removing both when the case ends.
func (h *Harness) installOut(t TB, sa *kernelops.SA) {
	t.Helper()
	sad, spd := sadOf(t, h), spdOf(t, h)
	ctx := t.Context()
	noErr(t, "add SA", sad.AddSA(ctx, sa))
	p := h.outPolicy(kernelops.ActionIPsec, sa.ReqID)
	noErr(t, "add policy", spd.AddPolicy(ctx, p))
	t.Cleanup(func() {
		spd.DeletePolicy(ctx, p.ID())
		sad.DeleteSA(ctx, sa.ID)
	})
}

// testCounters: traffic through an SA moves its packet and byte counters,
// and last-used where the dataplane claims it.
func testCounters(t TB, h *Harness) {
	need(t, h, kernelops.CapCounters)
	needTraffic(t, h)
	sad := sadOf(t, h)
	ctx := t.Context()
	sa := h.outSA(nextReqID())
	h.installOut(t, sa)

	const packets, size = 10, 100
	h.send(t, packets, size)
	e, err := sad.GetSA(ctx, sa.ID)
	noErr(t, "get", err)
	if e.Counters.Packets != packets {
		t.Errorf("Packets = %d after %d sent", e.Counters.Packets, packets)
	}
	if e.Counters.Bytes < packets*size {
		t.Errorf("Bytes = %d after %d packets of %d bytes", e.Counters.Bytes, packets, size)
	}
	if !h.caps().Has(kernelops.CapLastUsed) {
		t.Logf("last-used not checked: %s", h.caps().Why(kernelops.CapLastUsed))
		return
	}
	first := e.Counters.LastUsed
	if first.IsZero() {
		t.Fatalf("LastUsed is zero after traffic though the backend claims last-used")
	}
	if first.Before(e.Counters.AddTime.Truncate(time.Second)) {
		t.Errorf("LastUsed %v before AddTime %v", first, e.Counters.AddTime)
	}
	if !h.caps().Has(kernelops.CapLastUsedAllTraffic) {
		t.Logf("last-used on later traffic not checked: %s", h.caps().Why(kernelops.CapLastUsedAllTraffic))
		return
	}
	h.sleep(2 * time.Second) // kernels keep last-used in whole seconds
	h.send(t, 1, size)
	e, err = sad.GetSA(ctx, sa.ID)
	noErr(t, "get", err)
	if !e.Counters.LastUsed.After(first) {
		t.Errorf("LastUsed did not move with later traffic: %v then %v", first, e.Counters.LastUsed)
	}
}

// testTrapAcquire: a trap policy without an SA raises one acquire for the
// flow, naming the policy's reqid and tunnel endpoints.
func testTrapAcquire(t TB, h *Harness) {
	need(t, h, kernelops.CapTrap)
	needTraffic(t, h)
	spd := spdOf(t, h)
	ev := subscribe(t, h, kernelops.KindAcquire, 0)
	reqid := nextReqID()
	p := h.outPolicy(kernelops.ActionTrap, reqid)
	noErr(t, "add trap policy", spd.AddPolicy(t.Context(), p))
	h.send(t, 1, 64)
	got := ev.wait("acquire", eventWait, func(e kernelops.Event) bool {
		a, ok := e.(*kernelops.AcquireEvent)
		return ok && a.ReqID == reqid
	}).(*kernelops.AcquireEvent)
	if got.Src != h.Local || got.Dst != h.Remote {
		t.Errorf("acquire endpoints %s -> %s, want %s -> %s", got.Src, got.Dst, h.Local, h.Remote)
	}
	if got.Policy.Dir != kernelops.DirOut || got.Policy.Selector != p.Selector {
		t.Errorf("acquire names policy %v, want %v", got.Policy, p.ID())
	}
	if got.Proto != kernelops.ProtoESP {
		t.Errorf("acquire protocol %v, want esp", got.Proto)
	}
	// While the acquire is pending, more packets of the flow raise none.
	h.send(t, 3, 64)
	if more := ev.poll(time.Second, func(e kernelops.Event) bool {
		a, ok := e.(*kernelops.AcquireEvent)
		return ok && a.ReqID == reqid
	}); len(more) != 0 {
		t.Errorf("%d further acquires for a pending flow", len(more))
	}
}

// expireSequence checks that the SA got one soft then one hard expire for
// limit, and is gone after the hard one.
func expireSequence(t TB, h *Harness, ev *events, sa *kernelops.SA, limit kernelops.LimitKind, trigger func(hard bool)) {
	t.Helper()
	trigger(false)
	soft := ev.wait("soft expire", eventWait, isExpireOf(sa.ID)).(*kernelops.ExpireEvent)
	if soft.Hard {
		t.Fatalf("hard expire came before the soft one")
	}
	if soft.Limit != limit {
		t.Errorf("soft expire says limit %s, want %s", soft.Limit, limit)
	}
	if soft.ReqID != sa.ReqID {
		t.Errorf("soft expire reqid %d, want %d", soft.ReqID, sa.ReqID)
	}
	if _, err := sadOf(t, h).GetSA(t.Context(), sa.ID); err != nil {
		t.Errorf("SA gone after the soft expire: %v", err)
	}
	trigger(true)
	hard := ev.wait("hard expire", eventWait, isExpireOf(sa.ID)).(*kernelops.ExpireEvent)
	if !hard.Hard {
		t.Fatalf("second soft expire instead of the hard one")
	}
	if hard.Limit != limit {
		t.Errorf("hard expire says limit %s, want %s", hard.Limit, limit)
	}
	_, err := sadOf(t, h).GetSA(t.Context(), sa.ID)
	wantErr(t, "get after hard expire", err, kernelops.ErrNotFound)
	h.sleep(2 * time.Second)
	if extra := ev.poll(500*time.Millisecond, isExpireOf(sa.ID)); len(extra) != 0 {
		t.Errorf("%d more expires after the hard one: %s", len(extra), describe(extra[0]))
	}
}

func testLifetimeAddTime(t TB, h *Harness) {
	need(t, h, kernelops.CapLifetimeTime)
	sad := sadOf(t, h)
	ev := subscribe(t, h, kernelops.KindExpire, 0)
	sa := h.outSA(nextReqID())
	sa.Lifetime.Soft.AddTime, sa.Lifetime.Hard.AddTime = 2*time.Second, 4*time.Second
	noErr(t, "add", sad.AddSA(t.Context(), sa))
	expireSequence(t, h, ev, sa, kernelops.LimitAddTime, func(bool) { h.sleep(2100 * time.Millisecond) })
}

func testLifetimeUseTime(t TB, h *Harness) {
	need(t, h, kernelops.CapLifetimeTime)
	needTraffic(t, h)
	ev := subscribe(t, h, kernelops.KindExpire, 0)
	sa := h.outSA(nextReqID())
	sa.Lifetime.Soft.UseTime, sa.Lifetime.Hard.UseTime = 2*time.Second, 4*time.Second
	h.installOut(t, sa)
	// Unused, the SA does not expire however long it lives.
	h.sleep(5 * time.Second)
	if early := ev.poll(200*time.Millisecond, isExpireOf(sa.ID)); len(early) != 0 {
		t.Fatalf("use-time expire before first use: %s", describe(early[0]))
	}
	h.send(t, 1, 64)
	expireSequence(t, h, ev, sa, kernelops.LimitUseTime, func(bool) { h.sleep(2100 * time.Millisecond) })
}

func testLifetimeBytes(t TB, h *Harness) {
	need(t, h, kernelops.CapLifetimeBytes)
	needTraffic(t, h)
	ev := subscribe(t, h, kernelops.KindExpire, 0)
	const size = 100
	sa := h.outSA(nextReqID())
	sa.Lifetime.Soft.Bytes, sa.Lifetime.Hard.Bytes = 20*size, 60*size
	h.installOut(t, sa)
	expireSequence(t, h, ev, sa, kernelops.LimitBytes, func(hard bool) {
		if hard {
			h.send(t, 42, size)
		} else {
			h.send(t, 22, size)
		}
	})
}

func testLifetimePackets(t TB, h *Harness) {
	need(t, h, kernelops.CapLifetimePackets)
	needTraffic(t, h)
	ev := subscribe(t, h, kernelops.KindExpire, 0)
	sa := h.outSA(nextReqID())
	sa.Lifetime.Soft.Packets, sa.Lifetime.Hard.Packets = 10, 20
	h.installOut(t, sa)
	expireSequence(t, h, ev, sa, kernelops.LimitPackets, func(hard bool) {
		if hard {
			h.send(t, 11, 64)
		} else {
			h.send(t, 12, 64)
		}
	})
}

// testIdle: of two watched SAs, the one without traffic is reported idle
// and the busy one is not.
func testIdle(t TB, h *Harness) {
	needTraffic(t, h)
	iw := facet[kernelops.IdleWatcher](t, h, kernelops.CapIdle)
	sad := sadOf(t, h)
	ctx := t.Context()
	ev := subscribe(t, h, kernelops.KindIdle, 0)
	busy := h.outSA(nextReqID())
	h.installOut(t, busy)
	quiet := h.outSA(nextReqID())
	noErr(t, "add quiet SA", sad.AddSA(ctx, quiet))
	const threshold = 3 * time.Second
	noErr(t, "watch busy", iw.WatchIdle(ctx, busy.ID, threshold))
	noErr(t, "watch quiet", iw.WatchIdle(ctx, quiet.ID, threshold))

	var idle []kernelops.Event
	for range 30 { // 6 s of the backend's time, traffic every 200 ms
		h.send(t, 1, 64)
		h.sleep(200 * time.Millisecond)
		idle = append(idle, ev.poll(time.Millisecond, func(kernelops.Event) bool { return true })...)
	}
	idle = append(idle, ev.poll(500*time.Millisecond, func(kernelops.Event) bool { return true })...)
	var sawQuiet bool
	for _, e := range idle {
		ie := e.(*kernelops.IdleEvent)
		switch ie.SA.SPI {
		case busy.ID.SPI:
			t.Errorf("busy SA reported idle: %+v", ie)
		case quiet.ID.SPI:
			sawQuiet = true
			if ie.IdleFor < threshold || ie.Threshold != threshold {
				t.Errorf("idle event %+v: IdleFor below threshold %v", ie, threshold)
			}
		}
	}
	if !sawQuiet {
		t.Errorf("no idle event for the SA without traffic")
	}
	noErr(t, "unwatch", iw.WatchIdle(ctx, quiet.ID, 0))
}

// testOverrun: a subscriber that does not read loses events but is told
// so, and a re-dump shows the truth.
func testOverrun(t TB, h *Harness) {
	need(t, h, kernelops.CapLifetimeTime)
	sad := sadOf(t, h)
	ctx := t.Context()
	ev := subscribe(t, h, 0, 4) // all kinds, a queue of four, unread
	var ids []kernelops.SAID
	for range h.bulkN(50) {
		sa := h.outSA(nextReqID())
		sa.Lifetime.Soft.AddTime, sa.Lifetime.Hard.AddTime = 1*time.Second, 2*time.Second
		noErr(t, "add", sad.AddSA(ctx, sa))
		ids = append(ids, sa.ID)
	}
	h.sleep(2100 * time.Millisecond)
	// The soft+hard expires of every SA are due; wait until they are gone.
	deadline := time.Now().Add(eventWait)
	for {
		left := 0
		for _, id := range ids {
			if _, err := sad.GetSA(ctx, id); err == nil {
				left++
			}
		}
		if left == 0 {
			break
		}
		if time.Now().After(deadline) {
			t.Fatalf("%d SAs still present long after their hard lifetime", left)
		}
		h.sleep(500 * time.Millisecond)
	}
	ov := ev.wait("overrun", eventWait, func(e kernelops.Event) bool { return e.Kind() == kernelops.KindOverrun })
	if o := ov.(*kernelops.OverrunEvent); o.Lost == 0 {
		t.Errorf("overrun reports 0 lost events")
	}
	// After the overrun the consumer re-reads; the dump must agree.
	present := map[kernelops.SAID]bool{}
	for e, err := range sad.SAs(ctx) {
		noErr(t, "re-dump", err)
		present[e.ID] = true
	}
	for _, id := range ids {
		if present[id] {
			t.Errorf("re-dump still lists hard-expired SA %s", id)
		}
	}
}
