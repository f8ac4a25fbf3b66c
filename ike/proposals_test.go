package ike

import (
	"testing"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"

	"github.com/keyplane/keyplane/ike/config"
	"github.com/keyplane/keyplane/ike/ikecrypto"
	"github.com/keyplane/keyplane/ike/message"
)

func props(t *testing.T, s string, ike bool) []config.Proposal {
	t.Helper()
	ps, err := config.ParseProposals(s, ike)
	require.NoError(t, err)
	return ps
}

// peerESP builds the peer's ESP proposals as it would send them in a
// CREATE_CHILD_SA (withKE) or IKE_AUTH.
func peerESP(t *testing.T, s string, withKE bool) []message.Proposal {
	return espProposals(props(t, s, false), 0x1234, withKE).Proposals
}

func TestChooseESP(t *testing.T) {
	for _, tc := range []struct {
		name, ours, theirs string
		withKE             bool
		want               string // the chosen proposal, "" none
		num                uint8
	}{
		{"aead", "aes128gcm16", "aes128gcm16", false, "ENCR_AES_GCM_16/128 NO_ESN", 1},
		{"our order wins", "aes256gcm16, aes128gcm16", "aes128gcm16, aes256gcm16", false, "ENCR_AES_GCM_16/256 NO_ESN", 2},
		{"non-aead", "aes256-sha256", "aes128-sha384, aes256-sha256", false, "ENCR_AES_CBC/256 AUTH_HMAC_SHA2_256_128 NO_ESN", 2},
		{"esn both", "aes128gcm16-esn-noesn", "aes128gcm16-esn", false, "ENCR_AES_GCM_16/128 ESN", 1},
		{"no common", "aes256-sha512", "aes128gcm16", false, "", 0},
		// IKE_AUTH: key exchanges are left out on both sides.
		{"auth ignores KE", "aes128gcm16-x25519", "aes128gcm16-ecp256", false, "ENCR_AES_GCM_16/128 NO_ESN", 1},
		// CREATE_CHILD_SA: PFS as configured.
		{"pfs common group", "aes128gcm16-x25519-ecp256", "aes128gcm16-ecp256", true, "ENCR_AES_GCM_16/128 ECP_256 NO_ESN", 1},
		{"pfs our group order", "aes128gcm16-x25519-ecp256", "aes128gcm16-ecp256-x25519", true, "ENCR_AES_GCM_16/128 CURVE_25519 NO_ESN", 1},
		{"pfs refused without KE", "aes128gcm16-x25519", "aes128gcm16", true, "", 0},
		{"pfs refused other group", "aes128gcm16-x25519", "aes128gcm16-modp2048", true, "", 0},
		{"no pfs refuses a KE", "aes128gcm16", "aes128gcm16-x25519", true, "", 0},
		{"no pfs both", "aes128gcm16", "aes128gcm16", true, "ENCR_AES_GCM_16/128 NO_ESN", 1},
		{"pfs optional: second proposal", "aes128gcm16-x25519, aes128gcm16", "aes128gcm16", true, "ENCR_AES_GCM_16/128 NO_ESN", 1},
	} {
		t.Run(tc.name, func(t *testing.T) {
			got, ok, why := chooseESP(props(t, tc.ours, false), peerESP(t, tc.theirs, tc.withKE), tc.withKE)
			if tc.want == "" {
				assert.False(t, ok, "chose %v", got)
				assert.Contains(t, why, "no common proposal")
				return
			}
			require.True(t, ok, why)
			assert.Equal(t, tc.want, transformsText(got))
			assert.Equal(t, tc.num, got.Num)
			assert.Equal(t, message.ProtocolESP, got.Protocol)
		})
	}
}

func transformsText(p message.Proposal) string {
	s := ""
	for i, t := range p.Transforms {
		if i > 0 {
			s += " "
		}
		s += t.String()
	}
	return s
}

func TestChooseIKE(t *testing.T) {
	ours := props(t, "aes128gcm16-prfsha256-x25519, aes256-sha256-ecp256", true)
	theirs := ikeProposals(props(t, "aes256-sha256-ecp256-modp2048", true)).Proposals
	got, ok, why := choose(ours, theirs)
	require.True(t, ok, why)
	assert.Equal(t, "ENCR_AES_CBC/256 PRF_HMAC_SHA2_256 AUTH_HMAC_SHA2_256_128 ECP_256", transformsText(got))
	_, ok, _ = choose(ours, ikeProposals(props(t, "aes128gcm16-prfsha384-x25519", true)).Proposals)
	assert.False(t, ok)
}

// TestAcceptable: the responder's choice against what we proposed — same
// number, one of ours per type, nothing dropped (PFS kept), nothing added.
func TestAcceptable(t *testing.T) {
	ours := props(t, "aes128gcm16-x25519-ecp256, aes256-sha256", false)
	mk := func(num uint8, ts ...message.Transform) *message.Proposal {
		return &message.Proposal{Num: num, Protocol: message.ProtocolESP, Transforms: ts}
	}
	gcm := message.EncrTransform(message.EncrAESGCM16, 128)
	cbc := message.EncrTransform(message.EncrAESCBC, 256)
	sha := message.IntegTransform(message.IntegHMACSHA2256128)
	noESN := message.ESNTransform(message.ESNNo)
	x25519 := message.KETransform(message.DHCurve25519)
	for _, tc := range []struct {
		name   string
		chosen *message.Proposal
		withKE bool
		err    string // "" accepted
	}{
		{"pfs kept", mk(1, gcm, x25519, noESN), true, ""},
		{"pfs dropped", mk(1, gcm, noESN), true, "drops the key exchange (PFS)"},
		{"pfs group not ours", mk(1, gcm, message.KETransform(message.DHModp2048), noESN), true, "not in our proposal 1"},
		{"two groups", mk(1, gcm, x25519, message.KETransform(message.DHECP256), noESN), true, "2 KE transforms"},
		{"ike_auth: no KE", mk(1, gcm, noESN), false, ""},
		{"ike_auth: KE added", mk(1, gcm, x25519, noESN), false, "has none"},
		{"second proposal without pfs", mk(2, cbc, sha, noESN), true, ""},
		{"KE added to a proposal without", mk(2, cbc, sha, x25519, noESN), true, "has none"},
		{"wrong number", mk(2, gcm, x25519, noESN), true, "not in our proposal 2"},
		{"number not sent", mk(3, gcm, noESN), true, "none we sent"},
		{"integ missing", mk(2, cbc, noESN), true, "0 INTEG transforms"},
		{"integ none with aead", mk(1, gcm, message.IntegTransform(message.IntegNone), x25519, noESN), true, ""},
		{"esn missing", mk(1, gcm, x25519), true, "0 ESN transforms"},
		{"wrong protocol", &message.Proposal{Num: 1, Protocol: message.ProtocolIKE}, true, "not ESP"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			err := acceptable(tc.chosen, ours, message.ProtocolESP, tc.withKE)
			if tc.err == "" {
				assert.NoError(t, err)
				return
			}
			require.Error(t, err)
			assert.Contains(t, err.Error(), tc.err)
		})
	}
}

func TestPFSGroup(t *testing.T) {
	for _, tc := range []struct {
		ps     string
		prefer message.DHGroup
		want   message.DHGroup
	}{
		{"aes128gcm16", 0, 0},
		{"aes128gcm16", message.DHCurve25519, 0},
		{"aes128gcm16-x25519-ecp256", 0, message.DHCurve25519},
		{"aes128gcm16-x25519-ecp256", message.DHECP256, message.DHECP256},
		{"aes128gcm16-x25519", message.DHModp2048, message.DHCurve25519},
		// Not always the first of the first proposal.
		{"aes128gcm16, aes256-sha256-modp2048", 0, message.DHModp2048},
		{"aes128gcm16-x25519, aes256-sha256-modp2048", message.DHModp2048, message.DHModp2048},
	} {
		assert.Equal(t, tc.want, pfsGroup(props(t, tc.ps, false), tc.prefer), "%s prefer %v", tc.ps, tc.prefer)
	}
}

func TestAdoptKEGroup(t *testing.T) {
	ours := props(t, "aes128gcm16-x25519-ecp256", false)
	sap := espProposals(props(t, "aes128gcm16-ecp256-x25519", false), 1, true)
	chosen, ok, _ := chooseESP(ours, sap.Proposals, true)
	require.True(t, ok)
	assert.Equal(t, message.DHCurve25519, keGroup(&chosen))
	// The initiator sent ecp256, which both allow: adopted, no extra round.
	assert.Equal(t, message.DHECP256, adoptKEGroup(&chosen, sap, ours, message.DHECP256))
	assert.Equal(t, message.DHECP256, keGroup(&chosen))
	// A group the peer's proposal does not name is not adopted.
	chosen, _, _ = chooseESP(ours, sap.Proposals, true)
	assert.Equal(t, message.DHCurve25519, adoptKEGroup(&chosen, sap, ours, message.DHModp2048))
	// No KE sent: the chosen group stays (the caller asks for it).
	assert.Equal(t, message.DHCurve25519, adoptKEGroup(&chosen, sap, ours, 0))
	// A proposal without key exchange: none.
	plain := message.Proposal{Num: 1, Protocol: message.ProtocolESP, Transforms: []message.Transform{message.EncrTransform(message.EncrAESGCM16, 128)}}
	assert.Equal(t, message.DHGroup(0), adoptKEGroup(&plain, sap, ours, message.DHECP256))
}

// TestChooseAddKE: additional key exchanges (RFC 9370) in proposal
// selection, both directions: a proposal of ours with ADDKE1 matches only
// a peer proposal with it (or one without, when we offer ke1_none); a
// peer that insists on one we lack does not match unless it offers NONE;
// the initiator accepts an answer without ADDKE1 only when it offered
// NONE.
func TestChooseAddKE(t *testing.T) {
	const hyb = "aes256gcm16-prfsha384-x25519-ke1_mlkem768"
	for _, tc := range []struct {
		name, ours, theirs string
		want               string // "" none
	}{
		{"both hybrid", hyb, hyb, "ENCR_AES_GCM_16/256 PRF_HMAC_SHA2_384 CURVE_25519 ADDKE1:ML_KEM_768"},
		{"our order of methods", hyb + "-ke1_mlkem1024", "aes256gcm16-prfsha384-x25519-ke1_mlkem1024-ke1_mlkem768",
			"ENCR_AES_GCM_16/256 PRF_HMAC_SHA2_384 CURVE_25519 ADDKE1:ML_KEM_768"},
		{"we insist, peer classic", hyb, "aes256gcm16-prfsha384-x25519", ""},
		{"peer insists, we classic", "aes256gcm16-prfsha384-x25519", hyb, ""},
		{"peer optional, we classic", "aes256gcm16-prfsha384-x25519", hyb + "-ke1_none", "ENCR_AES_GCM_16/256 PRF_HMAC_SHA2_384 CURVE_25519"},
		{"we optional, peer classic", hyb + "-ke1_none", "aes256gcm16-prfsha384-x25519", "ENCR_AES_GCM_16/256 PRF_HMAC_SHA2_384 CURVE_25519"},
		{"other method", hyb, "aes256gcm16-prfsha384-x25519-ke1_mlkem1024", ""},
		{"fallback proposal", hyb + ", aes256gcm16-prfsha384-x25519", "aes256gcm16-prfsha384-x25519", "ENCR_AES_GCM_16/256 PRF_HMAC_SHA2_384 CURVE_25519"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			got, ok, why := choose(props(t, tc.ours, true), ikeProposals(props(t, tc.theirs, true)).Proposals)
			if tc.want == "" {
				assert.False(t, ok, "chose %v", got)
				return
			}
			require.True(t, ok, why)
			assert.Equal(t, tc.want, transformsText(got))
			// The initiator (theirs) accepts what was chosen.
			assert.NoError(t, acceptable(&got, props(t, tc.theirs, true), message.ProtocolIKE, true))
		})
	}
	// An answer that drops a mandatory ADDKE1 is refused.
	chosen, ok, _ := choose(props(t, "aes256gcm16-prfsha384-x25519", true), ikeProposals(props(t, hyb+"-ke1_none", true)).Proposals)
	require.True(t, ok)
	assert.ErrorContains(t, acceptable(&chosen, props(t, hyb, true), message.ProtocolIKE, true), "ADDKE1")
	// fitsOurs ignores the peer's numbering: proposal 2 of the peer is our 1.
	c2 := chosen
	c2.Num = 2
	assert.NoError(t, fitsOurs(&c2, props(t, "aes256gcm16-prfsha384-x25519", true), message.ProtocolIKE))
	assert.Error(t, fitsOurs(&c2, props(t, "aes128gcm16-prfsha256-x25519", true), message.ProtocolIKE))
}

// TestPeerIKEProposals: without INTERMEDIATE_EXCHANGE_SUPPORTED, a
// responder does not consider proposals that need IKE_INTERMEDIATE.
func TestPeerIKEProposals(t *testing.T) {
	sap := ikeProposals(props(t, "aes256gcm16-prfsha384-x25519-ke1_mlkem768, aes256gcm16-prfsha384-x25519-ke1_mlkem768-ke1_none, aes128gcm16-prfsha256-x25519", true))
	req := &message.Message{}
	got := peerIKEProposals(req, sap)
	require.Len(t, got, 1)
	assert.Equal(t, uint8(3), got[0].Num)
	req.Payloads = []message.Payload{message.NewIntermediateSupported()}
	assert.Len(t, peerIKEProposals(req, sap), 3)
}

// acceptable allocates nothing beyond our proposal's transform list.
func TestAcceptableAllocations(t *testing.T) {
	ours := props(t, "aes256gcm16-prfsha256-x25519", true)
	chosen := message.Proposal{Num: 1, Protocol: message.ProtocolIKE, Transforms: ours[0].Transforms(true)}
	require.NoError(t, acceptable(&chosen, ours, message.ProtocolIKE, true))
	base := testing.AllocsPerRun(100, func() { _ = ours[0].Transforms(true) })
	if n := testing.AllocsPerRun(100, func() { _ = acceptable(&chosen, ours, message.ProtocolIKE, true) }); n > base {
		t.Errorf("acceptable: %v allocations, want %v (its Transforms call)", n, base)
	}
}

// choose allocates our proposal's transform list and the chosen one's,
// nothing per transform type; and the IKE suite read from the choice
// allocates nothing.
func TestChooseAllocations(t *testing.T) {
	ours := props(t, "aes256gcm16-prfsha256-x25519, aes128-sha256-ecp256", true)
	theirs := props(t, "aes128-sha256-ecp256", true)
	peer := []message.Proposal{{Num: 1, Protocol: message.ProtocolIKE, Transforms: theirs[0].Transforms(true)}}
	chosen, ok, why := choose(ours, peer)
	require.True(t, ok, why)
	assert.Equal(t, "ENCR_AES_CBC/128 PRF_HMAC_SHA2_256 AUTH_HMAC_SHA2_256_128 ECP_256", transformsText(chosen))
	// Both of our proposals' lists are built (the first has nothing in
	// common), then the chosen one.
	if n := testing.AllocsPerRun(100, func() { _, _, _ = choose(ours, peer) }); n > 3 {
		t.Errorf("choose: %v allocations, want 3", n)
	}
	// An ESP offer that names its ESN: our list and the chosen one only
	// (no copy of theirs to add NO_ESN, no slice to look for it).
	esp, espPeer := props(t, "aes128gcm16", false), peerESP(t, "aes128gcm16", false)
	_, ok, why = chooseESP(esp, espPeer, false)
	require.True(t, ok, why)
	if n := testing.AllocsPerRun(100, func() { _, _, _ = chooseESP(esp, espPeer, false) }); n > 2 {
		t.Errorf("chooseESP: %v allocations, want 2", n)
	}
	if n := testing.AllocsPerRun(100, func() { _, _ = ikecrypto.IKESuiteFromProposal(&chosen) }); n > 0 {
		t.Errorf("IKESuiteFromProposal: %v allocations, want 0", n)
	}
}
