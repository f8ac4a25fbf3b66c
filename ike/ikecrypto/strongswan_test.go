package ikecrypto_test

import (
	"bufio"
	"bytes"
	"encoding/hex"
	"net/netip"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/keyplane/keyplane/ike/ikecrypto"
	"github.com/keyplane/keyplane/ike/message"
)

// The golden exchanges were captured between two strongSwan 5.9.8 charons
// (see ../message/testdata/strongswan/capture.sh); the key material is what
// the initiator's charon logged at "ike 4".

type goldenMsg struct {
	fromInitiator bool
	src, dst      netip.AddrPort
	raw           []byte
}

type golden struct {
	name string
	msgs []goldenMsg
	vals map[string][]byte
}

func loadGolden(t *testing.T) []golden {
	t.Helper()
	files, err := filepath.Glob("../message/testdata/strongswan/*.txt")
	if err != nil || len(files) == 0 {
		t.Fatalf("no golden exchanges found: %v", err)
	}
	var out []golden
	for _, f := range files {
		g := golden{name: filepath.Base(f), vals: map[string][]byte{}}
		fh, err := os.Open(f)
		if err != nil {
			t.Fatal(err)
		}
		sc := bufio.NewScanner(fh)
		sc.Buffer(nil, 1<<20)
		for sc.Scan() {
			fs := strings.Fields(sc.Text())
			if len(fs) == 0 || strings.HasPrefix(fs[0], "#") {
				continue
			}
			switch fs[0] {
			case "msg":
				b, err := hex.DecodeString(fs[4])
				if err != nil {
					t.Fatal(err)
				}
				g.msgs = append(g.msgs, goldenMsg{fs[1] == "i", netip.MustParseAddrPort(fs[2]), netip.MustParseAddrPort(fs[3]), b})
			case "proposal", "esp":
			default:
				b, err := hex.DecodeString(fs[1])
				if err != nil {
					t.Fatalf("%s: %s: %v", f, fs[0], err)
				}
				g.vals[fs[0]] = b
			}
		}
		fh.Close()
		out = append(out, g)
	}
	return out
}

func mustParse(t *testing.T, b []byte) *message.Message {
	t.Helper()
	m, err := message.Parse(b)
	if err != nil {
		t.Fatalf("parse: %v", err)
	}
	return m
}

// nullCipher exposes the plaintext layout: no IV, no ICV, block size 1.
type nullCipher struct{}

func (nullCipher) IVSize() int    { return 0 }
func (nullCipher) BlockSize() int { return 1 }
func (nullCipher) ICVSize() int   { return 0 }
func (nullCipher) Seal(dst, head, pt []byte) ([]byte, error) {
	return append(dst, pt...), nil
}
func (nullCipher) Open(dst, head, body []byte) ([]byte, error) { return append(dst, body...), nil }

func TestStrongSwanExchanges(t *testing.T) {
	for _, g := range loadGolden(t) {
		t.Run(g.name, func(t *testing.T) { checkExchange(t, g) })
	}
}

func checkExchange(t *testing.T, g golden) {
	for _, k := range []string{"psk", "dh_secret", "skeyseed", "sk_d", "sk_ei", "sk_er", "sk_pi", "sk_pr", "auth_i", "auth_r", "child_encr_i", "child_encr_r"} {
		if len(g.vals[k]) == 0 {
			t.Fatalf("golden file lacks %s", k)
		}
	}
	// The last IKE_SA_INIT request and its response.
	var req, resp *message.Message
	var reqIdx int
	for i, m := range g.msgs {
		pm := mustParse(t, m.raw)
		if pm.Exchange == message.IKE_SA_INIT && !pm.Response {
			req, reqIdx = pm, i
		}
	}
	if req == nil || reqIdx+1 >= len(g.msgs) {
		t.Fatal("no IKE_SA_INIT exchange")
	}
	resp = mustParse(t, g.msgs[reqIdx+1].raw)
	if !resp.Response || resp.Find(message.PayloadSA) == nil {
		t.Fatalf("IKE_SA_INIT response without SA: %v", resp)
	}
	sa := resp.Find(message.PayloadSA).(*message.SA)
	if len(sa.Proposals) != 1 {
		t.Fatalf("response SA has %d proposals", len(sa.Proposals))
	}
	suite, err := ikecrypto.IKESuiteFromProposal(&sa.Proposals[0])
	if err != nil {
		t.Fatalf("suite: %v", err)
	}
	t.Logf("IKE suite %v", suite)
	keI := req.Find(message.PayloadKE).(*message.KE)
	keR := resp.Find(message.PayloadKE).(*message.KE)
	for _, ke := range []*message.KE{keI, keR} {
		if ke.Group != suite.DH {
			t.Errorf("KE group %v, suite %v", ke.Group, suite.DH)
		}
		if err := ikecrypto.CheckPublicValue(ke.Group, ke.Data); err != nil {
			t.Errorf("strongSwan's public value rejected: %v", err)
		}
	}
	ni := req.Find(message.PayloadNonce).(*message.Nonce).Data
	nr := resp.Find(message.PayloadNonce).(*message.Nonce).Data
	gir := g.vals["dh_secret"]
	if len(gir) != ikecrypto.PublicValueLen(suite.DH)/map[bool]int{true: 2, false: 1}[suite.DH == message.DHECP256] {
		t.Errorf("g^ir of %d octets for %v", len(gir), suite.DH)
	}

	// SKEYSEED and the SK_* keys.
	seed, err := ikecrypto.Skeyseed(suite.PRF, ni, nr, gir)
	if err != nil {
		t.Fatal(err)
	}
	if !bytes.Equal(seed, g.vals["skeyseed"]) {
		t.Errorf("SKEYSEED differs from strongSwan's")
	}
	keys, err := ikecrypto.DeriveIKEKeys(suite, gir, ni, nr, resp.SPIi, resp.SPIr)
	if err != nil {
		t.Fatal(err)
	}
	for name, k := range map[string]ikecrypto.Key{
		"sk_d": keys.SKd(), "sk_ai": keys.SKai(), "sk_ar": keys.SKar(), "sk_ei": keys.SKei(),
		"sk_er": keys.SKer(), "sk_pi": keys.SKpi(), "sk_pr": keys.SKpr(),
	} {
		want := g.vals[name]
		if !bytes.Equal(k, want) {
			t.Errorf("%s: got %d octets %x, strongSwan %x", name, len(k), []byte(k), want)
		}
	}

	// NAT detection: the destination hashes are genuine. Both charons fake
	// their source hash, because kernel-libipsec always encapsulates ESP in
	// UDP and so wants a NAT to be detected.
	natd := func(m *message.Message, t2 message.NotifyType) []byte {
		n := m.Notify(t2)
		if n == nil {
			t.Fatalf("no %v in %v", t2, m)
		}
		return n.Data
	}
	reqSrc, reqDst := g.msgs[reqIdx].src, g.msgs[reqIdx].dst
	if got := ikecrypto.NATDetectionHash(req.SPIi, 0, reqDst); !bytes.Equal(got, natd(req, message.NAT_DETECTION_DESTINATION_IP)) {
		t.Errorf("request NAT_DETECTION_DESTINATION_IP differs")
	}
	if got := ikecrypto.NATDetectionHash(resp.SPIi, resp.SPIr, reqSrc); !bytes.Equal(got, natd(resp, message.NAT_DETECTION_DESTINATION_IP)) {
		t.Errorf("response NAT_DETECTION_DESTINATION_IP differs")
	}

	// Decrypt everything after IKE_SA_INIT.
	ci, cr := mustCiphers(t, keys)
	var authReq, authResp *message.Message
	nEnc := 0
	for _, gm := range g.msgs[reqIdx+2:] {
		m := mustParse(t, gm.raw)
		// The original initiator sends with SK_ei/SK_ai, whatever the
		// exchange (the INFORMATIONAL delete included).
		c := cr
		if m.Initiator {
			c = ci
		}
		if m.Initiator != gm.fromInitiator {
			t.Errorf("%v: I flag disagrees with the capture's direction", m.Header)
		}
		if err := m.Decrypt(c); err != nil {
			t.Fatalf("decrypt %v: %v", m.Header, err)
		}
		nEnc++
		checkReencode(t, gm.raw, c)
		if m.Exchange == message.IKE_AUTH {
			if m.Response {
				authResp = m
			} else {
				authReq = m
			}
		}
		// A wrong key fails as ErrIntegrity.
		m2 := mustParse(t, gm.raw)
		wrong := ci
		if c == ci {
			wrong = cr
		}
		if err := m2.Decrypt(wrong); err == nil || !isIntegrity(err) {
			t.Errorf("decrypt with the other direction's key: %v", err)
		}
	}
	if authReq == nil || authResp == nil || nEnc < 4 {
		t.Fatalf("IKE_AUTH exchange incomplete (%d encrypted messages)", nEnc)
	}

	// AUTH (RFC 7296 §2.15) in both directions.
	psk := g.vals["psk"]
	idi := authReq.Find(message.PayloadIDi).(*message.ID)
	idr := authResp.Find(message.PayloadIDr).(*message.ID)
	t.Logf("IDi %v (%v), IDr %v (%v)", idi, idi.IDType, idr, idr.IDType)
	octI, err := ikecrypto.SignedOctets(suite.PRF, keys.SKpi(), req.Raw(), nr, idi.Body())
	if err != nil {
		t.Fatal(err)
	}
	octR, _ := ikecrypto.SignedOctets(suite.PRF, keys.SKpr(), resp.Raw(), ni, idr.Body())
	for _, c := range []struct {
		name string
		oct  []byte
		m    *message.Message
	}{{"auth_i", octI, authReq}, {"auth_r", octR, authResp}} {
		a := c.m.Find(message.PayloadAUTH).(*message.Auth)
		if a.Method != message.AuthSharedKeyMIC {
			t.Errorf("%s: method %v", c.name, a.Method)
		}
		want, _ := ikecrypto.PSKAuth(suite.PRF, psk, c.oct)
		if !bytes.Equal(want, a.Data) || !bytes.Equal(want, g.vals[c.name]) {
			t.Errorf("%s: computed %x, payload %x, strongSwan logged %x", c.name, want, a.Data, g.vals[c.name])
		}
		if ok, _ := ikecrypto.VerifyPSKAuth(suite.PRF, psk, c.oct, a.Data); !ok {
			t.Errorf("%s: VerifyPSKAuth false", c.name)
		}
		if ok, _ := ikecrypto.VerifyPSKAuth(suite.PRF, []byte("wrong"), c.oct, a.Data); ok {
			t.Errorf("%s: VerifyPSKAuth true with a wrong PSK", c.name)
		}
	}

	// Child SA keys from the IKE_AUTH response's ESP proposal.
	csa := authResp.Find(message.PayloadSA).(*message.SA)
	cs, err := ikecrypto.ChildSuiteFromProposal(&csa.Proposals[0])
	if err != nil {
		t.Fatal(err)
	}
	ck, err := ikecrypto.DeriveChildKeys(suite.PRF, keys.SKd(), cs, nil, ni, nr)
	if err != nil {
		t.Fatal(err)
	}
	for name, k := range map[string]ikecrypto.Key{
		"child_encr_i": ck.EncrI, "child_encr_r": ck.EncrR, "child_integ_i": ck.IntegI, "child_integ_r": ck.IntegR,
	} {
		if want := g.vals[name]; !bytes.Equal(k, want) {
			t.Errorf("%s: got %x, strongSwan %x", name, []byte(k), want)
		}
	}
}

func isIntegrity(err error) bool {
	pe, ok := err.(*message.ParseError)
	return ok && pe.Err == message.ErrIntegrity
}

func mustCiphers(t *testing.T, k *ikecrypto.IKEKeys) (ci, cr message.Cipher) {
	t.Helper()
	ci, cr, err := k.Ciphers(true)
	if err != nil {
		t.Fatal(err)
	}
	return ci, cr
}

// checkReencode checks that the decoded inner payloads re-encode to exactly
// strongSwan's plaintext, and that the message survives EncodeEncrypted /
// Decrypt with the real cipher.
func checkReencode(t *testing.T, raw []byte, c message.Cipher) {
	t.Helper()
	m := mustParse(t, raw)
	skHead := raw[:message.HeaderLen+4]
	pt, err := c.Open(nil, skHead, raw[message.HeaderLen+4:])
	if err != nil {
		t.Fatal(err)
	}
	pt = pt[:len(pt)-1-int(pt[len(pt)-1])]
	if err := m.Decrypt(c); err != nil {
		t.Fatal(err)
	}
	plain, err := m.EncodeEncrypted(nullCipher{})
	if err != nil {
		t.Fatal(err)
	}
	if got := plain[message.HeaderLen+4 : len(plain)-1]; !bytes.Equal(got, pt) {
		t.Errorf("%v: re-encoded inner payloads differ from strongSwan's\n got %x\nwant %x", m.Header, got, pt)
	}
	again, err := m.EncodeEncrypted(c)
	if err != nil {
		t.Fatal(err)
	}
	m2 := mustParse(t, again)
	if err := m2.Decrypt(c); err != nil {
		t.Fatalf("decrypt our own encryption: %v", err)
	}
	h1, h2 := m.Header, m2.Header
	h1.Length, h2.Length = 0, 0
	if h1 != h2 {
		t.Errorf("header changed: %v vs %v", h2, h1)
	}
	if len(m2.Payloads) != len(m.Payloads) {
		t.Errorf("%d payloads after re-encryption, had %d", len(m2.Payloads), len(m.Payloads))
	}
}
