package swan

import (
	"context"
	"fmt"
	"strconv"
	"testing"
	"time"

	"github.com/keyplane/keyplane/internal/lab"
	"github.com/vishvananda/netlink"
	"golang.org/x/sys/unix"
)

// TestKernelNetlinkPair runs two charons with kernel-netlink in the VM lab:
// kernel ESP through XFRM for two suites, established by start action and
// by Initiate, pinged through, with the kernel's XFRM counters (read over
// netlink, what `ip -s xfrm state` prints) moving on the SAs whose SPIs
// charon lists, then terminated with the kernel states gone.
func TestKernelNetlinkPair(t *testing.T) {
	lab.RequireVM(t, "kernel ESP through XFRM for charon's kernel-netlink")
	suites := []struct {
		ike, esp, encr string
		key            int
		dh             string
	}{
		{"aes128gcm16-prfsha256-x25519", "aes128gcm16", "AES_GCM_16", 128, "CURVE_25519"},
		{"aes256-sha256-ecp256", "aes256-sha256", "AES_CBC", 256, "ECP_256"},
	}
	p := newPair(t)
	for _, s := range suites {
		for _, how := range []string{"start", "initiate"} {
			t.Run(s.ike+"/"+how, func(t *testing.T) {
				ctx, cancel := context.WithTimeout(context.Background(), timeoutScale(30*time.Second))
				defer cancel()
				startA := "none"
				if how == "start" {
					startA = "start"
				}
				sp := startPair(t, p, KernelNetlink, s.ike, s.esp, startA)
				if how == "initiate" {
					t0 := time.Now()
					if err := sp.a.Initiate(ctx, "kp"); err != nil {
						t.Fatal(err)
					}
					t.Logf("Initiate returned after %v", time.Since(t0).Round(time.Millisecond))
				}
				sa, sb := sp.establish(t, ctx, s.encr, s.key, s.dh)
				if sa.NATAny {
					t.Errorf("kernel-netlink without encap should not signal a NAT: %+v", sa)
				}
				ca, _ := sa.Child("kp")
				cb, _ := sb.Child("kp")
				beforeA := xfrmCounters(t, sp.p.A, ca)
				sp.ping(t, 5)
				// A late echo may still be on its way: wait until the
				// counters agree crosswise (each side's out is the other's in).
				var afterA, afterB saCounters
				for deadline := time.Now().Add(timeoutScale(3 * time.Second)); ; {
					afterA, afterB = xfrmCounters(t, sp.p.A, ca), xfrmCounters(t, sp.p.B, cb)
					if afterB.in.Packets == afterA.out.Packets && afterB.out.Packets == afterA.in.Packets || time.Now().After(deadline) {
						break
					}
					time.Sleep(50 * time.Millisecond)
				}
				t.Logf("XFRM counters A out %+v in %+v; B out %+v in %+v", afterA.out, afterA.in, afterB.out, afterB.in)
				if afterA.out.Packets < beforeA.out.Packets+5 || afterA.in.Packets < beforeA.in.Packets+5 ||
					afterA.out.Bytes <= beforeA.out.Bytes {
					t.Errorf("A's XFRM counters did not move by 5 packets: before %+v, after %+v", beforeA, afterA)
				}
				if afterB.in.Packets != afterA.out.Packets || afterB.out.Packets != afterA.in.Packets {
					t.Errorf("XFRM packet counters not crosswise equal: A out %d in %d, B out %d in %d",
						afterA.out.Packets, afterA.in.Packets, afterB.out.Packets, afterB.in.Packets)
				}
				// charon reads the same kernel counters.
				if got := childOf(t, ctx, sp.a); got.PacketsOut != afterA.out.Packets || got.BytesOut != afterA.out.Bytes {
					t.Errorf("charon's counters %d packets / %d bytes out, the kernel's %d / %d", got.PacketsOut, got.BytesOut, afterA.out.Packets, afterA.out.Bytes)
				}
				sp.terminate(t, ctx)
				// charon drops the IKE_SA from its list before it destroys
				// the CHILD_SAs and their kernel states, so the states may
				// outlive WaitGone by a few milliseconds.
				for _, ns := range []*lab.NS{sp.p.A, sp.p.B} {
					if n, waited := waitNoStates(t, ns, timeoutScale(2*time.Second)); n != 0 {
						t.Errorf("XFRM states left in %s %v after terminate: %d", ns.Name, waited, n)
					} else if waited > 0 {
						t.Logf("XFRM states in %s gone %v after charon listed the IKE_SA gone", ns.Name, waited)
					}
				}
			})
		}
	}
}

type saCounters struct{ in, out netlink.XfrmStateStats }

// waitNoStates polls ns until it has no XFRM state or limit passes; it
// returns how many states are left and how long it waited (0 when the
// first look found none).
func waitNoStates(t *testing.T, ns *lab.NS, limit time.Duration) (int, time.Duration) {
	t.Helper()
	t0 := time.Now()
	for first := true; ; first = false {
		n := len(xfrmStates(t, ns))
		if n == 0 && first {
			return 0, 0
		}
		if n == 0 || time.Since(t0) > limit {
			return n, time.Since(t0).Round(time.Millisecond)
		}
		time.Sleep(20 * time.Millisecond)
	}
}

// xfrmStates lists the kernel's XFRM states in ns.
func xfrmStates(t *testing.T, ns *lab.NS) []netlink.XfrmState {
	t.Helper()
	h, err := netlink.NewHandleAt(ns.Handle, unix.NETLINK_XFRM)
	if err != nil {
		t.Fatal(err)
	}
	defer h.Close()
	states, err := h.XfrmStateList(netlink.FAMILY_ALL)
	if err != nil {
		t.Fatalf("XFRM state dump in %s: %v", ns.Name, err)
	}
	return states
}

// xfrmCounters returns the kernel's counters of the inbound and outbound
// ESP states of child c in ns, found by the SPIs charon listed.
func xfrmCounters(t *testing.T, ns *lab.NS, c ChildSA) saCounters {
	t.Helper()
	spi := func(s string) int {
		v, err := strconv.ParseUint(s, 16, 32)
		if err != nil {
			t.Fatalf("charon's SPI %q: %v", s, err)
		}
		return int(v)
	}
	in, out := spi(c.SPIIn), spi(c.SPIOut)
	var got saCounters
	found := 0
	var seen []string
	for _, st := range xfrmStates(t, ns) {
		seen = append(seen, fmt.Sprintf("%s %08x %v->%v", st.Proto, uint32(st.Spi), st.Src, st.Dst))
		if st.Proto != netlink.XFRM_PROTO_ESP {
			continue
		}
		switch st.Spi {
		case in:
			got.in = st.Statistics
			found++
		case out:
			got.out = st.Statistics
			found++
		}
	}
	if found != 2 {
		t.Fatalf("kernel ESP states for SPIs in %s out %s not found in %s: %v", c.SPIIn, c.SPIOut, ns.Name, seen)
	}
	return got
}
