package ike

import (
	"context"
	"net/netip"
	"slices"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"

	"github.com/keyplane/keyplane/backends/nokernel"
	"github.com/keyplane/keyplane/ike/message"
	"github.com/keyplane/keyplane/kernelops"
)

// restartA closes a without telling b (a crash: b keeps its SAs) and
// starts a again with the same configuration and ports; the new a
// initiates.
func restartA(t *testing.T, a *peer, sa side) *peer {
	t.Helper()
	require.NoError(t, a.e.Close())
	a2 := newPeer(t, "a2", sa.config(t, "a"))
	require.NoError(t, a2.e.Initiate(ctxT(t, 5*time.Second), "a-net"))
	return a2
}

// TestInitialContact: a restarts and initiates again. Its IKE_AUTH
// carries INITIAL_CONTACT (it has no IKE SA with b), and b drops the IKE
// SA and children the old a left, at once — unless either end has
// unique = never.
func TestInitialContact(t *testing.T) {
	noLeaks(t)
	for _, tc := range []struct {
		name         string
		aConn, bConn string
		stale        bool // b keeps the old SA
	}{
		{"sent and honoured", "", "", false},
		{"b unique=never ignores it", "", "unique = never", true},
		{"a unique=never sends none", "unique = never", "", true},
		{"b unique=keep yields to it", "", "unique = keep", false},
	} {
		t.Run(tc.name, func(t *testing.T) {
			sa, sb := pairSides(t)
			sa.extraConn, sb.extraConn = tc.aConn, tc.bConn
			a := newPeer(t, "a", sa.config(t, "a"))
			b := newPeer(t, "b", sb.config(t, "b"))
			establish(t, a, b, "a-net")
			old := b.sas(t)[0]
			a2 := restartA(t, a, sa)
			want := 1
			if tc.stale {
				want = 2
			}
			waitFor(t, "b's IKE SAs", 3*time.Second, func() bool { return len(b.sas(t)) == want && installed(b.sas(t)) == want })
			time.Sleep(100 * time.Millisecond)
			sas := b.sas(t)
			require.Len(t, sas, want)
			s, _ := b.counts(t)
			assert.Equal(t, 2*want, s, "b's dataplane SAs")
			if !tc.stale {
				assert.NotEqual(t, old.SPIi, sas[0].SPIi, "the old IKE SA is gone")
				assert.Contains(t, b.logText(), "INITIAL_CONTACT: removed the peer's other IKE SAs")
			}
			_ = a2
		})
	}
}

// secondIKE makes p start another IKE SA of its connection with child,
// beside the one it has (so without INITIAL_CONTACT), and returns the
// outcome.
func secondIKE(t *testing.T, p *peer, child string) error {
	t.Helper()
	done := make(chan error, 1)
	require.NoError(t, p.e.call(t.Context(), func() {
		c, ch := p.e.cfg.Child(child)
		nc := p.e.newChild(ch)
		nr := made(&nc.rec)
		nr.newIKE = true
		nr.waiters = append(nr.waiters, done)
		p.e.initiateChild(c, nc)
	}))
	select {
	case err := <-done:
		return err
	case <-time.After(5 * time.Second):
		t.Fatal("no outcome")
	}
	return nil
}

// TestUnique: a second IKE SA between the same identities (no
// INITIAL_CONTACT: the first is still there). b, responder: unique = no
// keeps both; replace deletes the old one, telling a; keep refuses the
// new one with AUTHENTICATION_FAILED.
func TestUnique(t *testing.T) {
	noLeaks(t)
	for _, tc := range []struct {
		unique string
		check  func(t *testing.T, a, b *peer, first IKESAInfo, err error)
	}{
		{"no", func(t *testing.T, a, b *peer, first IKESAInfo, err error) {
			require.NoError(t, err)
			time.Sleep(100 * time.Millisecond)
			assert.Len(t, a.sas(t), 2)
			assert.Len(t, b.sas(t), 2)
		}},
		{"replace", func(t *testing.T, a, b *peer, first IKESAInfo, err error) {
			require.NoError(t, err)
			waitFor(t, "the old IKE SA deleted on both sides", 3*time.Second, func() bool {
				x, _, ok := steady(t, a, b)
				return ok && x.SPIi != first.SPIi
			})
			assert.Contains(t, b.logText(), "unique = replace")
		}},
		{"keep", func(t *testing.T, a, b *peer, first IKESAInfo, err error) {
			wantNotify(t, err, message.AUTHENTICATION_FAILED, true)
			waitFor(t, "the first IKE SA alone", 3*time.Second, func() bool {
				x, _, ok := steady(t, a, b)
				return ok && x.SPIi == first.SPIi
			})
			assert.True(t, strings.Contains(b.logText(), "unique = keep"))
		}},
	} {
		t.Run(tc.unique, func(t *testing.T) {
			sa, sb := pairSides(t)
			sb.extraConn = "unique = " + tc.unique
			a := newPeer(t, "a", sa.config(t, "a"))
			b := newPeer(t, "b", sb.config(t, "b"))
			establish(t, a, b, "a-net")
			first := a.sas(t)[0]
			err := secondIKE(t, a, "a-net")
			tc.check(t, a, b, first, err)
		})
	}
}

// dpOps is a test double over the nokernel model that records the SA
// and policy changes the engine makes, in order ("add SA", "delete SA",
// "add policy out", "replace policy out", "delete policy out").
type dpOps struct {
	*nokernel.Backend
	mu  sync.Mutex
	ops []string
}

func (d *dpOps) rec(op string) {
	d.mu.Lock()
	d.ops = append(d.ops, op)
	d.mu.Unlock()
}

func (d *dpOps) taken() []string {
	d.mu.Lock()
	defer d.mu.Unlock()
	out := d.ops
	d.ops = nil
	return out
}

func (d *dpOps) AddSA(ctx context.Context, sa *kernelops.SA) error {
	d.rec("add SA")
	return d.Backend.AddSA(ctx, sa)
}

func (d *dpOps) DeleteSA(ctx context.Context, id kernelops.SAID) error {
	d.rec("delete SA")
	return d.Backend.DeleteSA(ctx, id)
}

func (d *dpOps) AddPolicy(ctx context.Context, p *kernelops.Policy) error {
	d.rec("add policy " + p.Dir.String())
	return d.Backend.AddPolicy(ctx, p)
}

func (d *dpOps) ReplacePolicy(ctx context.Context, p *kernelops.Policy) error {
	d.rec("replace policy " + p.Dir.String())
	return d.Backend.ReplacePolicy(ctx, p)
}

func (d *dpOps) DeletePolicy(ctx context.Context, id kernelops.PolicyID) error {
	d.rec("delete policy " + id.Dir.String())
	return d.Backend.DeletePolicy(ctx, id)
}

// TestInitialContactMakeBeforeBreak: b drops the IKE SA a left behind
// only after the new IKE_AUTH installed the new child, so the two
// children's policies are shared and handed over (a template replaced),
// never deleted and added again: traffic never meets a missing policy
// or SA. Before, b removed the old child first; in the VM a packet in
// that gap left an XFRM acquire state behind (TestVMCharonRestart).
func TestInitialContactMakeBeforeBreak(t *testing.T) {
	noLeaks(t)
	sa, sb := pairSides(t)
	ops := &dpOps{}
	a := newPeer(t, "a", sa.config(t, "a"))
	b := newPeer(t, "b", sb.config(t, "b"), withBackend(func(nb *nokernel.Backend) kernelops.Backend {
		ops.Backend = nb
		return ops
	}))
	establish(t, a, b, "a-net")
	old := b.sas(t)[0]
	ops.taken()
	restartA(t, a, sa)
	waitFor(t, "b's one new IKE SA", 3*time.Second, func() bool {
		sas := b.sas(t)
		return len(sas) == 1 && sas[0].SPIi != old.SPIi && installed(sas) == 1
	})
	require.Contains(t, b.logText(), "INITIAL_CONTACT: removed the peer's other IKE SAs")
	got := ops.taken()
	for _, op := range got {
		assert.NotContains(t, op, "delete policy", "b deleted a policy the new child needs: %q", got)
	}
	firstDel := slices.Index(got, "delete SA")
	require.NotEqual(t, -1, firstDel, "old SAs deleted: %q", got)
	assert.Equal(t, 2, strings.Count(strings.Join(got[:firstDel], ","), "add SA"), "the new child's two SAs come before the old ones go: %q", got)
	assert.Equal(t, 2, strings.Count(strings.Join(got[firstDel:], ","), "delete SA"), "the old child's two SAs go: %q", got)
	s, p := b.counts(t)
	assert.Equal(t, 2, s, "b's dataplane SAs")
	assert.Positive(t, p)
	res, err := b.b.Inject(t.Context(), nokernel.Packet{Src: netip.MustParseAddr("10.2.0.9"), Dst: netip.MustParseAddr("10.1.0.5"), Proto: 6, Len: 100})
	require.NoError(t, err)
	assert.Equal(t, nokernel.Protected, res.Verdict, "b's traffic to a: %+v", res)
}

// TestUninstallPoliciesFirst: a child's removal deletes its policies
// before its SAs (as install's rollback does), so that no out policy is
// ever left without its SA: on XFRM a packet in that instant makes the
// kernel hold an acquire state for 30 s.
func TestUninstallPoliciesFirst(t *testing.T) {
	noLeaks(t)
	sa, sb := pairSides(t)
	ops := &dpOps{}
	a := newPeer(t, "a", sa.config(t, "a"), withBackend(func(nb *nokernel.Backend) kernelops.Backend {
		ops.Backend = nb
		return ops
	}))
	b := newPeer(t, "b", sb.config(t, "b"))
	establish(t, a, b, "a-net")
	ops.taken()
	require.NoError(t, a.e.Terminate(ctxT(t, 5*time.Second), "a-net"))
	waitFor(t, "a's child gone", 3*time.Second, func() bool { return installed(a.sas(t)) == 0 })
	got := ops.taken()
	firstSA := slices.Index(got, "delete SA")
	firstPol := slices.IndexFunc(got, func(op string) bool { return strings.HasPrefix(op, "delete policy") })
	require.NotEqual(t, -1, firstSA, "%q", got)
	require.NotEqual(t, -1, firstPol, "%q", got)
	for i, op := range got {
		if strings.HasPrefix(op, "delete policy") {
			assert.Less(t, i, firstSA, "policy deleted after an SA: %q", got)
		}
	}
}
