package kernelops

import (
	"context"
	"errors"
	"runtime"
	"testing"
	"time"
)

func recv(t *testing.T, s Subscription) Event {
	t.Helper()
	select {
	case ev, ok := <-s.Events():
		if !ok {
			t.Fatal("channel closed")
		}
		return ev
	case <-time.After(5 * time.Second):
		t.Fatal("no event within 5s")
	}
	return nil
}

func TestOrderAndFilter(t *testing.T) {
	b := newBus()
	defer b.Close()
	s, err := b.Subscribe(context.Background(), SubscribeOptions{Kinds: KindExpire})
	if err != nil {
		t.Fatal(err)
	}
	b.Publish(&AcquireEvent{Seq: 1}) // filtered out
	for i := range 3 {
		b.Publish(&ExpireEvent{ReqID: uint32(i)})
	}
	for i := range 3 {
		ev := recv(t, s).(*ExpireEvent)
		if ev.ReqID != uint32(i) {
			t.Fatalf("got reqid %d, want %d", ev.ReqID, i)
		}
	}
}

// The overrun contract: a flooded, unread subscription loses events, and
// the reader then sees every queued event, an OverrunEvent counting the
// lost ones, and after that new events again.
func TestOverrunOnFullQueue(t *testing.T) {
	b := newBus()
	defer b.Close()
	s, _ := b.Subscribe(context.Background(), SubscribeOptions{Buffer: 8})
	const flood = 100
	for i := range flood {
		b.Publish(&ExpireEvent{ReqID: uint32(i)})
	}
	// The pump may hold one event outside the ring, so 8 or 9 arrive.
	var delivered, lost int
	var sawOverrun bool
	for !sawOverrun {
		switch ev := recv(t, s).(type) {
		case *ExpireEvent:
			if ev.ReqID != uint32(delivered) {
				t.Fatalf("out of order: got %d, want %d", ev.ReqID, delivered)
			}
			delivered++
		case *OverrunEvent:
			sawOverrun = true
			lost = ev.Lost
		}
	}
	if delivered+lost != flood {
		t.Fatalf("delivered %d + lost %d != %d published", delivered, lost, flood)
	}
	if delivered > 9 {
		t.Fatalf("queue of 8 delivered %d", delivered)
	}
	b.Publish(&ExpireEvent{ReqID: 999})
	if ev := recv(t, s).(*ExpireEvent); ev.ReqID != 999 {
		t.Fatalf("after overrun got %+v", ev)
	}
}

func TestDataplaneOverrunAlwaysDelivered(t *testing.T) {
	b := newBus()
	defer b.Close()
	s, _ := b.Subscribe(context.Background(), SubscribeOptions{Kinds: KindAcquire})
	b.Overrun(-1, "kernel socket")
	ev, ok := recv(t, s).(*OverrunEvent)
	if !ok || ev.Source != "kernel socket" {
		t.Fatalf("got %#v", ev)
	}
}

func TestCloseAndCancelLeaveNoGoroutines(t *testing.T) {
	before := runtime.NumGoroutine()
	b := newBus()
	ctx, cancel := context.WithCancel(context.Background())
	s1, _ := b.Subscribe(ctx, SubscribeOptions{})
	s2, _ := b.Subscribe(context.Background(), SubscribeOptions{})
	s3, _ := b.Subscribe(context.Background(), SubscribeOptions{})
	b.Publish(&LinkEvent{IfName: "x"}) // leave it unread in s1..s3
	cancel()
	s2.Close()
	b.Close()
	for _, s := range []Subscription{s1, s2, s3} {
		for range s.Events() { // drains to close
		}
	}
	if _, err := b.Subscribe(context.Background(), SubscribeOptions{}); !errors.Is(err, ErrClosed) {
		t.Fatalf("subscribe after close: %v", err)
	}
	deadline := time.Now().Add(5 * time.Second)
	for runtime.NumGoroutine() > before && time.Now().Before(deadline) {
		time.Sleep(10 * time.Millisecond)
	}
	if n := runtime.NumGoroutine(); n > before {
		t.Fatalf("goroutines: %d before, %d after", before, n)
	}
}

func BenchmarkPublish(b *testing.B) {
	bus := newBus()
	defer bus.Close()
	s, _ := bus.Subscribe(context.Background(), SubscribeOptions{})
	go func() {
		for range s.Events() {
		}
	}()
	ev := &ExpireEvent{}
	for b.Loop() {
		bus.Publish(ev)
	}
}

// TestSubscribeWithDoneContext: a context that is already done closes the
// subscription at once, in another goroutine, while Subscribe may still be
// arming it; that Close must not find its stop function unset (it did, and
// crashed the daemon when a control client left during Subscribe).
func TestSubscribeWithDoneContext(t *testing.T) {
	b := newBus()
	defer b.Close()
	for range 2000 {
		ctx, cancel := context.WithCancel(context.Background())
		cancel()
		s, err := b.Subscribe(ctx, SubscribeOptions{})
		if err != nil {
			t.Fatal(err)
		}
		select {
		case _, ok := <-s.Events():
			if ok {
				t.Fatal("an event on a subscription whose context was done")
			}
		case <-time.After(5 * time.Second):
			t.Fatal("a subscription with a done context stayed open")
		}
	}
	if n := b.Subscribers(); n != 0 {
		t.Fatalf("%d subscribers left", n)
	}
}
