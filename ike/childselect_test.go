package ike

import (
	"net/netip"
	"testing"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"

	"github.com/keyplane/keyplane/ike/config"
	"github.com/keyplane/keyplane/ike/message"
	"github.com/keyplane/keyplane/kernelops"
)

func child(t *testing.T, name, local, remote, esp string, mode kernelops.Mode) *config.Child {
	t.Helper()
	l, err := config.ParseTSList(local)
	require.NoError(t, err)
	r, err := config.ParseTSList(remote)
	require.NoError(t, err)
	return &config.Child{Name: name, LocalTS: l, RemoteTS: r, ESPProposals: props(t, esp, false), Mode: mode}
}

func ranges(t *testing.T, s string) []tsRange {
	t.Helper()
	ts, err := config.ParseTSList(s)
	require.NoError(t, err)
	return configRanges(ts, netip.Addr{})
}

func TestSelectChild(t *testing.T) {
	local, remote := netip.MustParseAddr("192.0.2.1"), netip.MustParseAddr("198.51.100.7")
	tunnel, transport := kernelops.ModeTunnel, kernelops.ModeTransport
	web := child(t, "web", "10.1.0.0/16", "10.2.0.0/16", "aes128gcm16", tunnel)
	db := child(t, "db", "10.1.9.0/24", "10.3.0.0/16", "aes256gcm16", tunnel)
	pfs := child(t, "pfs", "10.1.0.0/16", "10.4.0.0/16", "aes128gcm16-x25519-ecp256", tunnel)
	host := child(t, "host", "dynamic", "dynamic", "aes128gcm16", transport)
	all := []*config.Child{web, db, pfs, host}
	for _, tc := range []struct {
		name      string
		offer     childOffer
		keep      *[2][]tsRange
		want      string // chosen child, "" refused
		local     string
		remote    string
		group     message.DHGroup
		notify    message.NotifyType
		why       string
		keGroupIn message.DHGroup // INVALID_KE_PAYLOAD data
	}{
		{name: "first that fits", offer: childOffer{proposals: peerESP(t, "aes128gcm16", false),
			tsi: ranges(t, "10.2.0.0/16"), tsr: ranges(t, "10.1.0.0/16")},
			want: "web", local: "10.1.0.0/16", remote: "10.2.0.0/16"},
		{name: "narrowed", offer: childOffer{proposals: peerESP(t, "aes128gcm16", false),
			tsi: ranges(t, "10.0.0.0/8"), tsr: ranges(t, "10.1.5.0/24")},
			want: "web", local: "10.1.5.0/24", remote: "10.2.0.0/16"},
		{name: "selectors pick the second", offer: childOffer{proposals: peerESP(t, "aes256gcm16", false),
			tsi: ranges(t, "10.3.1.0/24"), tsr: ranges(t, "10.1.9.0/24")},
			want: "db", local: "10.1.9.0/24", remote: "10.3.1.0/24"},
		{name: "selectors fit, proposals do not", offer: childOffer{proposals: peerESP(t, "aes256-sha512", false),
			tsi: ranges(t, "10.2.0.0/16"), tsr: ranges(t, "10.1.0.0/16")},
			notify: message.NO_PROPOSAL_CHOSEN, why: "child web"},
		{name: "no selectors fit", offer: childOffer{proposals: peerESP(t, "aes128gcm16", false),
			tsi: ranges(t, "10.9.0.0/16"), tsr: ranges(t, "10.1.0.0/16")},
			notify: message.TS_UNACCEPTABLE, why: "10.9.0.0/16"},
		{name: "transport child needs transport", offer: childOffer{proposals: peerESP(t, "aes128gcm16", false),
			tsi: ranges(t, "198.51.100.7/32"), tsr: ranges(t, "192.0.2.1/32")},
			notify: message.TS_UNACCEPTABLE, why: "transport mode"},
		{name: "transport", offer: childOffer{proposals: peerESP(t, "aes128gcm16", false), transport: true,
			tsi: ranges(t, "198.51.100.7/32"), tsr: ranges(t, "192.0.2.1/32")},
			want: "host", local: "192.0.2.1/32", remote: "198.51.100.7/32"},
		{name: "rekey keeps the old selectors", offer: childOffer{proposals: peerESP(t, "aes128gcm16", true), create: true,
			tsi: ranges(t, "10.0.0.0/8"), tsr: ranges(t, "10.0.0.0/8")},
			keep: &[2][]tsRange{ranges(t, "10.1.2.0/24"), ranges(t, "10.2.3.0/24")},
			want: "web", local: "10.1.2.0/24", remote: "10.2.3.0/24"},
		// CREATE_CHILD_SA and PFS.
		{name: "pfs with the KE sent", offer: childOffer{proposals: peerESP(t, "aes128gcm16-x25519", true), create: true,
			ke: message.DHCurve25519, tsi: ranges(t, "10.4.0.0/16"), tsr: ranges(t, "10.1.0.0/16")},
			want: "pfs", local: "10.1.0.0/16", remote: "10.4.0.0/16", group: message.DHCurve25519},
		{name: "pfs adopts the initiator's group", offer: childOffer{proposals: peerESP(t, "aes128gcm16-ecp256-x25519", true), create: true,
			ke: message.DHECP256, tsi: ranges(t, "10.4.0.0/16"), tsr: ranges(t, "10.1.0.0/16")},
			want: "pfs", local: "10.1.0.0/16", remote: "10.4.0.0/16", group: message.DHECP256},
		{name: "pfs refused: no KE transforms offered", offer: childOffer{proposals: peerESP(t, "aes128gcm16", true), create: true,
			tsi: ranges(t, "10.4.0.0/16"), tsr: ranges(t, "10.1.0.0/16")},
			notify: message.NO_PROPOSAL_CHOSEN, why: "child pfs"},
		{name: "pfs: proposal names the group, KE payload missing", offer: childOffer{proposals: peerESP(t, "aes128gcm16-x25519", true), create: true,
			tsi: ranges(t, "10.4.0.0/16"), tsr: ranges(t, "10.1.0.0/16")},
			notify: message.INVALID_KE_PAYLOAD, why: "the KE payload has none", keGroupIn: message.DHCurve25519},
		{name: "pfs: KE of another group", offer: childOffer{proposals: peerESP(t, "aes128gcm16-modp2048-ecp256", true), create: true,
			ke: message.DHModp2048, tsi: ranges(t, "10.4.0.0/16"), tsr: ranges(t, "10.1.0.0/16")},
			notify: message.INVALID_KE_PAYLOAD, why: "needs key exchange ECP_256", keGroupIn: message.DHECP256},
		{name: "no pfs configured refuses a KE offer", offer: childOffer{proposals: peerESP(t, "aes128gcm16-x25519", true), create: true,
			ke: message.DHCurve25519, tsi: ranges(t, "10.2.0.0/16"), tsr: ranges(t, "10.1.0.0/16")},
			notify: message.NO_PROPOSAL_CHOSEN, why: "child web"},
		{name: "no pfs either side", offer: childOffer{proposals: peerESP(t, "aes128gcm16", true), create: true,
			tsi: ranges(t, "10.2.0.0/16"), tsr: ranges(t, "10.1.0.0/16")},
			want: "web", local: "10.1.0.0/16", remote: "10.2.0.0/16"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			got, no := selectChild(all, tc.offer, local, remote, tc.keep)
			if tc.want == "" {
				require.NotNil(t, no, "chose %s", got.cfg)
				assert.Equal(t, tc.notify, no.notify)
				assert.Contains(t, no.why, tc.why)
				if tc.keGroupIn != 0 {
					assert.Equal(t, []byte{byte(tc.keGroupIn >> 8), byte(tc.keGroupIn)}, no.data)
				}
				return
			}
			require.Nil(t, no, "%+v", no)
			assert.Equal(t, tc.want, got.cfg.Name)
			assert.Equal(t, tc.local, rangesString(got.local))
			assert.Equal(t, tc.remote, rangesString(got.remote))
			assert.Equal(t, tc.group, got.group)
			assert.Equal(t, tc.group, keGroup(&got.proposal))
		})
	}
}
