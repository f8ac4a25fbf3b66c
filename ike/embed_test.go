package ike

import (
	"context"
	"errors"
	"net/netip"
	"runtime"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"

	"github.com/keyplane/keyplane/backends/nokernel"
	"github.com/keyplane/keyplane/ike/config"
	"github.com/keyplane/keyplane/ike/message"
	"github.com/keyplane/keyplane/kernelops"
)

func withEngineOptions(f func(*Options)) peerOpt {
	return func(s *peerSetup) { s.options = f }
}

// fakeKeys is a Credentials test double: the keys by remote identity,
// and every question asked.
type fakeKeys struct {
	mu    sync.Mutex
	keys  map[string][]byte
	err   error
	asked []string // "local remote"
}

func (k *fakeKeys) PSK(ctx context.Context, local, remote config.Identity) ([]byte, error) {
	k.mu.Lock()
	defer k.mu.Unlock()
	k.asked = append(k.asked, local.String()+" "+remote.String())
	if _, ok := ctx.Deadline(); !ok {
		return nil, errors.New("no deadline")
	}
	if k.err != nil {
		return nil, k.err
	}
	return k.keys[remote.String()], nil
}

func (k *fakeKeys) questions() []string {
	k.mu.Lock()
	defer k.mu.Unlock()
	return append([]string(nil), k.asked...)
}

// noPSK is a side's configuration without its pre-shared key.
func noPSK(t *testing.T, s side, name string) *config.Config {
	cfg := s.config(t, name)
	cfg.Connections[0].PSK = nil
	return cfg
}

// TestCredentials: a connection without a key of its own asks the
// Credentials, as responder (with the identity the peer sent) and as
// initiator (with remote.id), once per IKE SA; a wrong key, a failed
// lookup or a short key fail the authentication; without Credentials
// such a configuration is refused.
func TestCredentials(t *testing.T) {
	noLeaks(t)
	const key = "shared secret"
	good := map[string][]byte{"a.example.org": []byte(key + " and more"), "b.example.org": []byte(key + " and more")}
	for _, tc := range []struct {
		name    string
		keys    map[string][]byte
		err     error
		wantLog string
	}{
		{name: "right key", keys: good},
		{name: "wrong key", keys: map[string][]byte{"a.example.org": []byte("another key, long enough")}, wantLog: "does not verify"},
		{name: "lookup fails", err: errors.New("database down"), wantLog: "database down"},
		{name: "short key", keys: map[string][]byte{"a.example.org": []byte("short")}, wantLog: "credentials gave 5 bytes, want at least 16"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			sa, sb := pairSides(t)
			sa.psk = key + " and more"
			bk := &fakeKeys{keys: tc.keys, err: tc.err}
			a := newPeer(t, "a", sa.config(t, "a"))
			b := newPeer(t, "b", noPSK(t, sb, "b"), withEngineOptions(func(o *Options) { o.Credentials = bk }))
			err := a.e.Initiate(ctxT(t, 5*time.Second), "a-net")
			assert.Equal(t, []string{"b.example.org a.example.org"}, bk.questions())
			if tc.wantLog == "" {
				require.NoError(t, err)
				waitFor(t, "b's child", 3*time.Second, func() bool { return installed(b.sas(t)) == 1 })
				return
			}
			wantNotify(t, err, message.AUTHENTICATION_FAILED, true)
			// b logs why as the SA ends, just after its answer.
			waitFor(t, "b's reason in its log", 3*time.Second, func() bool { return strings.Contains(b.logText(), tc.wantLog) })
			assert.NotContains(t, b.logText(), "and more", "the key is never logged")
		})
	}

	t.Run("initiator", func(t *testing.T) {
		sa, sb := pairSides(t)
		sb.psk = key + " and more"
		ak := &fakeKeys{keys: good}
		a := newPeer(t, "a", noPSK(t, sa, "a"), withEngineOptions(func(o *Options) { o.Credentials = ak }))
		b := newPeer(t, "b", sb.config(t, "b"))
		establish(t, a, b, "a-net")
		assert.Equal(t, []string{"a.example.org b.example.org"}, ak.questions(), "asked once for the IKE SA")
	})

	t.Run("no credentials", func(t *testing.T) {
		sa, _ := pairSides(t)
		b, err := nokernel.Open(t.Context(), kernelops.Options{})
		require.NoError(t, err)
		t.Cleanup(func() { b.Close() })
		_, err = New(t.Context(), Options{Backend: b, Config: noPSK(t, sa, "a")})
		var ce *config.Error
		require.ErrorAs(t, err, &ce)
		assert.Equal(t, "psk_file", ce.Field)
	})
}

// hookLog is a Hooks test double that records the calls.
type hookLog struct {
	mu    sync.Mutex
	calls []string
	infos []ChildHookInfo
}

func (h *hookLog) ChildUp(c ChildHookInfo)   { h.add("up", c) }
func (h *hookLog) ChildDown(c ChildHookInfo) { h.add("down", c) }
func (h *hookLog) add(what string, c ChildHookInfo) {
	h.mu.Lock()
	defer h.mu.Unlock()
	h.calls = append(h.calls, what)
	h.infos = append(h.infos, c)
}

func (h *hookLog) get() ([]string, []ChildHookInfo) {
	h.mu.Lock()
	defer h.mu.Unlock()
	return append([]string(nil), h.calls...), append([]ChildHookInfo(nil), h.infos...)
}

// TestHooks: up when a CHILD SA is installed, with its IDs, SPIs and
// selectors; a rekey is up (new) then down (old, Rekeyed); a terminate
// is down with its reason; Close waits for the calls and ends the
// hooks' goroutine.
func TestHooks(t *testing.T) {
	noLeaks(t)
	sa, sb := pairSides(t)
	h := &hookLog{}
	a := newPeer(t, "a", sa.config(t, "a"), withEngineOptions(func(o *Options) { o.Hooks = h }))
	b := newPeer(t, "b", sb.config(t, "b"))
	establish(t, a, b, "a-net")
	first := a.sas(t)[0]
	waitFor(t, "up hook", 3*time.Second, func() bool { c, _ := h.get(); return len(c) == 1 })
	calls, infos := h.get()
	require.Equal(t, []string{"up"}, calls)
	up := infos[0]
	assert.Equal(t, "a", up.Connection)
	assert.Equal(t, "a-net", up.Child)
	assert.Equal(t, first.ID, up.IKEID)
	assert.Equal(t, first.Children[0].ID, up.ChildID)
	assert.Equal(t, first.Children[0].SPIIn, hexSPI(uint64(up.SPIs.In), 8))
	assert.Equal(t, first.Children[0].SPIOut, hexSPI(uint64(up.SPIs.Out), 8))
	assert.Equal(t, []netip.Prefix{netip.MustParsePrefix("10.1.0.0/16")}, up.LocalTS)
	assert.Equal(t, []netip.Prefix{netip.MustParsePrefix("10.2.0.0/16")}, up.RemoteTS)
	assert.Equal(t, kernelops.ModeTunnel, up.Mode)
	assert.Equal(t, []Selector{{Prefixes: up.LocalTS, ToPort: 65535}}, up.LocalSelectors)
	assert.Equal(t, []Selector{{Prefixes: up.RemoteTS, ToPort: 65535}}, up.RemoteSelectors)
	assert.Equal(t, "a.example.org", up.LocalID)
	assert.Equal(t, "b.example.org", up.RemoteID)
	assert.Zero(t, up.UDPEncapPort, "no NAT: ESP not encapsulated")

	require.NoError(t, a.e.RekeyChildSA(ctxT(t, 5*time.Second), up.ChildID))
	waitFor(t, "rekey hooks", 3*time.Second, func() bool { c, _ := h.get(); return len(c) == 3 })
	calls, infos = h.get()
	assert.Equal(t, []string{"up", "up", "down"}, calls)
	assert.Greater(t, infos[1].ChildID, up.ChildID)
	assert.Equal(t, up.ChildID, infos[2].ChildID)
	assert.True(t, infos[2].Rekeyed, "the old CHILD SA went down in a rekey")

	require.NoError(t, a.e.TerminateChildSA(ctxT(t, 5*time.Second), infos[1].ChildID))
	waitFor(t, "down hook", 3*time.Second, func() bool { c, _ := h.get(); return len(c) == 4 })
	_, infos = h.get()
	assert.Equal(t, infos[1].ChildID, infos[3].ChildID)
	assert.False(t, infos[3].Rekeyed)
	assert.Equal(t, "terminated by command", infos[3].Reason)

	require.NoError(t, a.e.Close())
	buf := make([]byte, 1<<20)
	assert.NotContains(t, string(buf[:runtime.Stack(buf, true)]), "newHookRunner", "the hooks' goroutine ended with Close")
}

// TestInitiateTo: a %any connection initiated to an address given at
// run time; a second call finds the child up; the refusals.
func TestInitiateTo(t *testing.T) {
	noLeaks(t)
	sa, sb := pairSides(t)
	sa.remoteAddr = "%any"
	a := newPeer(t, "a", sa.config(t, "a"))
	b := newPeer(t, "b", sb.config(t, "b"))
	peer := netip.AddrPortFrom(netip.MustParseAddr("127.0.0.1"), sb.port)
	require.NoError(t, a.e.InitiateTo(ctxT(t, 5*time.Second), "a-net", peer))
	waitFor(t, "b's child", 3*time.Second, func() bool { return installed(b.sas(t)) == 1 })
	require.NoError(t, a.e.InitiateTo(ctxT(t, 5*time.Second), "a", peer), "up already")
	sas := a.sas(t)
	require.Len(t, sas, 1, "no second IKE SA")
	// With MOBIKE (the default) IKE_AUTH moved to the peer's NAT-T port (RFC 4555 §3.2).
	assert.Equal(t, netip.AddrPortFrom(peer.Addr(), sb.natPort).String(), sas[0].Remote)
	assert.Equal(t, 1, installed(sas))

	for _, tc := range []struct {
		name, conn string
		to         netip.AddrPort
		want       string
	}{
		{"unknown", "nosuch", peer, "no such connection or child"},
		{"unspecified", "a-net", netip.MustParseAddrPort("0.0.0.0:500"), "is not a peer address"},
		{"other family", "a-net", netip.MustParseAddrPort("[::1]:500"), "different families"},
		{"fixed remote", "b-net", netip.MustParseAddrPort("127.0.0.1:500"), "remote_addrs = 127.0.0.1"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			e := a.e
			if tc.conn == "b-net" {
				e = b.e
			}
			err := e.InitiateTo(ctxT(t, 5*time.Second), tc.conn, tc.to)
			require.Error(t, err)
			assert.True(t, strings.Contains(err.Error(), tc.want), "%v", err)
		})
	}
	assert.Len(t, b.sas(t), 1)
}

// TestOnEvent: Options.OnEvent sees every event a subscriber gets, in the
// same order, on the loop (the engine's own calls see its state settled).
func TestOnEvent(t *testing.T) {
	noLeaks(t)
	sa, sb := pairSides(t)
	var mu sync.Mutex
	var seen []Event
	a := newPeer(t, "a", sa.config(t, "a"), withEngineOptions(func(o *Options) {
		o.OnEvent = func(ev Event) {
			mu.Lock()
			seen = append(seen, ev)
			mu.Unlock()
		}
	}))
	b := newPeer(t, "b", sb.config(t, "b"))
	establish(t, a, b, "a-net")
	child := a.sas(t)[0].Children[0].ID
	require.NoError(t, a.e.TerminateChildSA(ctxT(t, 5*time.Second), child))
	// The subscriber opened with the engine (newPeer) gets the same
	// events; read them up to the child's deletion.
	var got []Event
	a.waitEvent(t, 3*time.Second, func(ev Event) bool {
		got = append(got, ev)
		return ev.Kind == "child" && ev.ChildID == child && ev.State == "deleted"
	})
	mu.Lock()
	defer mu.Unlock()
	require.GreaterOrEqual(t, len(seen), len(got))
	assert.Equal(t, got, seen[:len(got)])
	var states []string
	for _, ev := range got {
		states = append(states, ev.Kind.String()+" "+ev.State)
	}
	assert.Contains(t, states, "ike established")
	assert.Contains(t, states, "child installed")
}
