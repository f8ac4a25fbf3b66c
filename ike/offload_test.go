package ike

import (
	"strings"
	"testing"
	"time"

	"github.com/keyplane/keyplane/backends/nokernel"
	"github.com/keyplane/keyplane/ike/config"
	"github.com/keyplane/keyplane/ike/message"
	"github.com/keyplane/keyplane/kernelops"
	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"
)

// offloadOf returns the offload the model installed each of the peer's
// SAs with.
func (p *peer) offloads(t *testing.T) []kernelops.Offload {
	t.Helper()
	var out []kernelops.Offload
	for sa, err := range p.b.SAs(t.Context()) {
		require.NoError(t, err)
		out = append(out, sa.Offload)
	}
	return out
}

// hw_offload on the nokernel model, whose loopback device (the route to
// the peer at 127.0.0.1) is told what it can offload: an accepted mode is
// installed on both SAs and shown in the child listing; an explicit mode
// the device refuses fails the child with the device's reason, rolled
// back on both ends; auto installs the best the device takes and says so
// in one line when that is not packet offload.
func TestOffloadPerChild(t *testing.T) {
	noLeaks(t)
	for _, c := range []struct {
		name     string
		device   string // what lo can offload
		mode     string
		want     kernelops.OffloadMode
		refused  string // the reason in the error and the log
		fellBack bool
	}{
		{"no", "crypto+packet", "no", kernelops.OffloadNone, "", false},
		{"crypto", "crypto", "crypto", kernelops.OffloadCrypto, "", false},
		{"packet", "crypto+packet", "packet", kernelops.OffloadPacket, "", false},
		{"packet refused", "crypto", "packet", 0, `device "lo" refused packet offload: device does not support packet offload`, false},
		{"crypto refused", "packet", "yes", 0, `device "lo" refused crypto offload: device does not support crypto offload`, false},
		{"auto packet", "crypto+packet", "auto", kernelops.OffloadPacket, "", false},
		{"auto to crypto", "crypto", "auto", kernelops.OffloadCrypto, "", true},
		{"auto to none", "", "auto", kernelops.OffloadNone, "", true},
	} {
		t.Run(c.name, func(t *testing.T) {
			sa, sb := pairSides(t)
			sa.extraChild = "hw_offload = " + c.mode
			opts := kernelops.Options{}
			if c.device != "" {
				opts.Params = map[string]string{"offload": "lo=" + c.device}
			}
			a := newPeer(t, "a", sa.config(t, "a"), withOptions(opts))
			b := newPeer(t, "b", sb.config(t, "b"))
			err := a.e.Initiate(ctxT(t, 5*time.Second), "a-net")
			if c.refused != "" {
				require.Error(t, err)
				assert.ErrorIs(t, err, kernelops.ErrOffload)
				var oe *kernelops.OffloadError
				require.ErrorAs(t, err, &oe)
				assert.Equal(t, "lo", oe.Device)
				assert.Contains(t, err.Error(), c.refused, "the initiate reply")
				assert.Contains(t, a.logText(), strings.ReplaceAll(c.refused, `"`, `\"`), "a's log (quoted)")
				// Rolled back here, and the peer removed its half.
				a.expectEmpty(t)
				b.expectEmpty(t)
				kids, err := a.e.Children(t.Context())
				require.NoError(t, err)
				assert.Empty(t, kids)
				return
			}
			require.NoError(t, err)
			kids, err := a.e.Children(t.Context())
			require.NoError(t, err)
			require.Len(t, kids, 1)
			assert.Equal(t, c.want.String(), kids[0].Offload)
			offs := a.offloads(t)
			require.Len(t, offs, 2)
			for _, o := range offs {
				assert.Equal(t, c.want, o.Active)
				if c.mode != "no" {
					assert.Equal(t, "lo", o.Device)
				}
			}
			fell := strings.Contains(a.logText(), "hw_offload auto fell back")
			assert.Equal(t, c.fellBack, fell, a.logText())
			if c.fellBack {
				assert.Contains(t, a.logText(), "device=lo mode="+c.want.String())
				assert.Contains(t, a.logText(), "simulated device: crypto=")
			}
			// b asked nothing: software.
			bk, err := b.e.Children(t.Context())
			require.NoError(t, err)
			require.Len(t, bk, 1)
			assert.Equal(t, "no", bk[0].Offload)
		})
	}
}

// A responder whose device refuses the child's offload answers the
// initiator with the failure instead of installing in software.
func TestOffloadRefusedAsResponder(t *testing.T) {
	noLeaks(t)
	sa, sb := pairSides(t)
	sb.extraChild = "hw_offload = packet"
	a := newPeer(t, "a", sa.config(t, "a"))
	b := newPeer(t, "b", sb.config(t, "b"), withOptions(kernelops.Options{Params: map[string]string{"offload": "lo=crypto"}}))
	err := a.e.Initiate(ctxT(t, 5*time.Second), "a-net")
	wantNotify(t, err, message.TEMPORARY_FAILURE, true)
	waitFor(t, "b's log to say why", 2*time.Second, func() bool {
		return strings.Contains(b.logText(), `device \"lo\" refused packet offload`)
	})
	a.expectEmpty(t)
	b.expectEmpty(t)
}

const noOffloadNote = "this test's dataplane has no offload hardware"

// A configuration asking for offload of a dataplane that cannot is
// refused when loaded and when reloaded, quoting the backend's note.
func TestOffloadNeedsTheCapability(t *testing.T) {
	noLeaks(t)
	sa, _ := pairSides(t)
	sa.extraChild = "hw_offload = auto"
	b, err := nokernel.Open(t.Context(), kernelops.Options{})
	require.NoError(t, err)
	defer b.Close()
	_, err = New(t.Context(), Options{Backend: lacking{b, kernelops.CapOffload, noOffloadNote}, Config: sa.config(t, "a")})
	require.Error(t, err)
	assert.ErrorIs(t, err, ErrFacetMissing)
	assert.ErrorIs(t, err, kernelops.ErrNotSupported)
	assert.Contains(t, err.Error(), noOffloadNote)
	assert.Contains(t, err.Error(), "child a-net: hw_offload = auto")

	sa.extraChild = ""
	p := newPeer(t, "a", sa.config(t, "a"), withBackend(func(b *nokernel.Backend) kernelops.Backend { return lacking{b, kernelops.CapOffload, noOffloadNote} }))
	sa.extraChild = "hw_offload = crypto"
	err = p.e.Reload(t.Context(), sa.config(t, "a"))
	assert.ErrorIs(t, err, ErrFacetMissing)
	assert.Contains(t, err.Error(), noOffloadNote)
	var want *config.Child
	_, want = p.e.cfg.Child("a-net")
	assert.Equal(t, kernelops.OffloadNone, want.HWOffload, "the old configuration stays")
}
