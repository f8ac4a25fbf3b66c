package config

import (
	"slices"
	"strings"
	"testing"

	"github.com/keyplane/keyplane/ike/message"
)

// TestProposalKeywords: strongSwan's names for the groups, the SHA-1
// algorithms and AES-CCM, as ParseProposals (and so the configuration)
// takes them.
func TestProposalKeywords(t *testing.T) {
	for _, c := range []struct {
		text  string
		ike   bool
		encr  []Encr
		integ []message.IntegID
		prf   []message.PRFID
		dh    []message.DHGroup
	}{
		{"aes256gcm16-prfsha384-ecp384-ecp521", true, []Encr{{message.EncrAESGCM16, 256}}, nil,
			[]message.PRFID{message.PRFHMACSHA2384}, []message.DHGroup{message.DHECP384, message.DHECP521}},
		{"aes256-sha256-modp3072-modp4096", true, []Encr{{message.EncrAESCBC, 256}}, []message.IntegID{message.IntegHMACSHA2256128},
			[]message.PRFID{message.PRFHMACSHA2256}, []message.DHGroup{message.DHModp3072, message.DHModp4096}},
		// The PRF follows the integrity algorithm, as in strongSwan.
		{"aes128-sha1-modp2048", true, []Encr{{message.EncrAESCBC, 128}}, []message.IntegID{message.IntegHMACSHA196},
			[]message.PRFID{message.PRFHMACSHA1}, []message.DHGroup{message.DHModp2048}},
		{"aes128-sha-prfsha1-prfsha256-modp2048", true, []Encr{{message.EncrAESCBC, 128}}, []message.IntegID{message.IntegHMACSHA196},
			[]message.PRFID{message.PRFHMACSHA1, message.PRFHMACSHA2256}, []message.DHGroup{message.DHModp2048}},
		{"aes128ccm16-aes256ccm8-aes192ccm96-aes128ccm", false,
			[]Encr{{message.EncrAESCCM16, 128}, {message.EncrAESCCM8, 256}, {message.EncrAESCCM12, 192}}, nil, nil, nil},
		{"aes256ccm128-aes128ccm64-aes192ccm12-ecp384", false,
			[]Encr{{message.EncrAESCCM16, 256}, {message.EncrAESCCM8, 128}, {message.EncrAESCCM12, 192}}, nil, nil, []message.DHGroup{message.DHECP384}},
		{"aes128-sha1-esn", false, []Encr{{message.EncrAESCBC, 128}}, []message.IntegID{message.IntegHMACSHA196}, nil, nil},
	} {
		ps, err := ParseProposals(c.text, c.ike)
		if err != nil {
			t.Errorf("%q: %v", c.text, err)
			continue
		}
		p := ps[0]
		if !slices.Equal(p.Encr, c.encr) || !slices.Equal(p.Integ, c.integ) || !slices.Equal(p.PRF, c.prf) || !slices.Equal(p.DH, c.dh) {
			t.Errorf("%q: %+v", c.text, p)
		}
	}
	for _, bad := range []string{
		"aes128ccm16-prfsha256-x25519", // CCM is ESP only
		"aes128ccm16-sha256-prfsha256-x25519",
		"aes128ccm7-prfsha256-x25519",
	} {
		if _, err := ParseProposals(bad, true); err == nil {
			t.Errorf("IKE %q accepted", bad)
		}
	}
	if _, err := ParseProposals("aes128ccm16-sha256", false); err == nil {
		t.Error("CCM with an integrity algorithm accepted")
	}
}

// TestAdditionalKEs: strongSwan 6's ke1_..ke7_ syntax. The configuration
// refuses it until the engine negotiates IKE_INTERMEDIATE; the parser
// under it already reads it.
func TestAdditionalKEs(t *testing.T) {
	ps, err := parseProposals("aes256gcm16-prfsha384-x25519-ke1_mlkem768, aes256-sha256-ecp384-ke1_mlkem768-ke1_none-ke2_mlkem1024-ke2_mlkem1024", true)
	if err != nil {
		t.Fatal(err)
	}
	if !slices.Equal(ps[0].AddKE[0], []message.DHGroup{message.DHMLKEM768}) || !ps[0].HasAddKE() {
		t.Errorf("proposal 1 %+v", ps[0].AddKE)
	}
	if !slices.Equal(ps[1].AddKE[0], []message.DHGroup{message.DHMLKEM768, message.DHNone}) ||
		!slices.Equal(ps[1].AddKE[1], []message.DHGroup{message.DHMLKEM1024}) {
		t.Errorf("proposal 2 %+v", ps[1].AddKE)
	}
	tr := ps[1].Transforms(true)
	var addke []string
	for _, x := range tr {
		if x.Type.AddKEIndex() > 0 {
			addke = append(addke, x.String())
		}
	}
	if strings.Join(addke, " ") != "ADDKE1:ML_KEM_768 ADDKE1:NONE ADDKE2:ML_KEM_1024" {
		t.Errorf("ADDKE transforms %v", addke)
	}
	for _, x := range ps[1].Transforms(false) {
		if x.Type.AddKEIndex() > 0 || x.Type == message.TransformKE {
			t.Errorf("key exchange %v without withKE", x)
		}
	}
	esp, err := parseProposals("aes128gcm16-x25519-ke1_mlkem768", false)
	if err != nil || !esp[0].HasAddKE() {
		t.Errorf("ESP with an additional KE: %v", err)
	}
	if ps, err := parseProposals("aes256gcm16-prfsha384-mlkem768", true); err != nil || ps[0].DH[0] != message.DHMLKEM768 {
		t.Errorf("ML-KEM as the key exchange: %v", err)
	}
	for _, bad := range []string{
		"aes256gcm16-prfsha384-x25519-ke8_mlkem768",
		"aes256gcm16-prfsha384-x25519-ke0_mlkem768",
		"aes256gcm16-prfsha384-x25519-ke1_aes128",
		"aes256gcm16-prfsha384-x25519-ke1_foo",
		"aes256gcm16-prfsha384-x25519-ke1_none",
		"aes256gcm16-prfsha384-x25519-none",
	} {
		if _, err := parseProposals(bad, true); err == nil {
			t.Errorf("%q accepted", bad)
		}
	}
	// The engine negotiates them: IKE_INTERMEDIATE, IKE_FOLLOWUP_KE, and
	// ML-KEM as any key exchange (PFS included).
	for _, c := range []struct {
		s   string
		ike bool
	}{{"aes256gcm16-prfsha384-x25519-ke1_mlkem768", true}, {"aes256gcm16-prfsha384-mlkem1024", true},
		{"aes128gcm16-mlkem768", false}, {"aes128gcm16-x25519-ke1_mlkem768-ke2_none", false}} {
		if _, err := ParseProposals(c.s, c.ike); err != nil {
			t.Errorf("%q: %v", c.s, err)
		}
	}
}

// TestDefaultProposalsNoLegacy: the default proposals name no SHA-1 (as
// strongSwan's defaults do not).
func TestDefaultProposalsNoLegacy(t *testing.T) {
	cfg, err := Parse("kp.conf", []byte("connections {\n c {\n  local_addrs = 127.0.0.1\n  remote_addrs = 127.0.0.2\n  psk_file = site.psk\n  children {\n   c {\n   }\n  }\n }\n}\n"), testOpts())
	if err != nil {
		t.Fatal(err)
	}
	c := cfg.Connections[0]
	all := append(append([]Proposal(nil), c.Proposals...), c.Children[0].ESPProposals...)
	for _, p := range all {
		if slices.Contains(p.Integ, message.IntegHMACSHA196) || slices.Contains(p.PRF, message.PRFHMACSHA1) {
			t.Errorf("default proposal %q has SHA-1", p.Text)
		}
	}
	if len(c.Proposals) == 0 || len(c.Children[0].ESPProposals) == 0 {
		t.Fatal("no default proposals")
	}
}
