package nokernel_test

import (
	"fmt"
	"net/netip"
	"sync"
	"testing"
	"time"

	"github.com/keyplane/keyplane/backends/nokernel"
	"github.com/keyplane/keyplane/kernelops"
)

// TestConcurrentChurn runs the model on the real clock with 8 goroutines
// adding, using and deleting SAs while lifetimes fire from timer
// goroutines, dumps and idle scans read, and a subscriber counts. Under
// -race this is the model's thread-safety proof; every SA must get its
// soft and hard expire exactly once, in order.
func TestConcurrentChurn(t *testing.T) {
	b, err := nokernel.Open(t.Context(), kernelops.Options{IdleScanInterval: 5 * time.Millisecond})
	noErr(t, "open", err)
	defer b.Close()
	sub, err := b.Subscribe(t.Context(), kernelops.SubscribeOptions{Kinds: kernelops.KindExpire})
	noErr(t, "subscribe", err)
	const workers, per = 8, 40

	var mu sync.Mutex
	expires := map[kernelops.SAID][]bool{}
	hards := 0
	done := make(chan struct{})
	go func() {
		for ev := range sub.Events() {
			x, ok := ev.(*kernelops.ExpireEvent)
			if !ok {
				t.Errorf("unexpected %T (overrun?)", ev)
				continue
			}
			mu.Lock()
			expires[x.SA] = append(expires[x.SA], x.Hard)
			if x.Hard {
				if hards++; hards == workers*per/2 {
					close(done)
				}
			}
			mu.Unlock()
		}
	}()

	var wg sync.WaitGroup
	for w := range workers {
		wg.Go(func() {
			inner := netip.AddrFrom4([4]byte{10, 9, byte(w), 1})
			reqid := uint32(100 + w)
			p := &kernelops.Policy{Selector: kernelops.Selector{Src: host(inner)}, Dir: kernelops.DirOut, Action: kernelops.ActionIPsec,
				Templates: []kernelops.Template{{Src: local, Dst: remote, Proto: kernelops.ProtoESP, Mode: kernelops.ModeTunnel, ReqID: reqid}}}
			if err := b.AddPolicy(t.Context(), p); err != nil {
				t.Error(err)
				return
			}
			for i := range per {
				sa := gcmSA(local, remote, reqid)
				if i%2 == 0 { // expires by itself: soft then hard
					sa.Lifetime.Soft.AddTime, sa.Lifetime.Hard.AddTime = 2*time.Millisecond, 4*time.Millisecond
				} else { // deleted by us; a packet limit it never reaches
					sa.Lifetime.Hard.Packets = 1 << 40
				}
				if err := b.AddSA(t.Context(), sa); err != nil {
					t.Error(err)
					return
				}
				b.WatchIdle(t.Context(), sa.ID, time.Millisecond)
				for range 5 {
					if _, err := b.Inject(t.Context(), nokernel.Packet{Src: inner, Dst: inner2, Proto: 17, Len: 100}); err != nil {
						t.Error(err)
					}
				}
				for range b.SAs(t.Context()) {
				}
				if i%2 == 1 {
					if err := b.DeleteSA(t.Context(), sa.ID); err != nil {
						t.Error(fmt.Errorf("delete %s: %w", sa.ID, err))
					}
				}
			}
		})
	}
	wg.Wait()
	select {
	case <-done:
	case <-time.After(20 * time.Second):
		t.Fatal("not every short-lived SA hard-expired within 20s")
	}
	mu.Lock()
	defer mu.Unlock()
	for id, evs := range expires {
		if len(evs) != 2 || evs[0] || !evs[1] {
			t.Errorf("%s: expires %v, want [soft hard]", id, evs)
		}
	}
	left := 0
	for range b.SAs(t.Context()) {
		left++
	}
	if left != 0 {
		t.Errorf("%d SAs left", left)
	}
}
