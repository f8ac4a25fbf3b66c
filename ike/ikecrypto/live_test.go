package ikecrypto_test

import (
	"bytes"
	"crypto/rand"
	"encoding/binary"
	"encoding/hex"
	"net"
	"net/netip"
	"os"
	"testing"
	"time"

	"github.com/keyplane/keyplane/ike/ikecrypto"
	"github.com/keyplane/keyplane/ike/message"
)

// TestStrongSwanLive runs a minimal IKEv2 initiator built from this package
// and ike/message against a real charon: IKE_SA_INIT (answering
// INVALID_KE_PAYLOAD and COOKIE), IKE_AUTH with a PSK and one Child SA, and
// an INFORMATIONAL delete. It is not the engine; it proves that strongSwan
// accepts what the codec and the crypto produce.
//
// It needs a responder set up by ../message/testdata/strongswan/live.sh,
// which runs this test inside a network namespace with
// KEYPLANE_STRONGSWAN_PEER=ip:port; without that variable the test skips.
func TestStrongSwanLive(t *testing.T) {
	peer := os.Getenv("KEYPLANE_STRONGSWAN_PEER")
	if peer == "" {
		t.Skip("no strongSwan responder: run ../message/testdata/strongswan/live.sh (needs root and strongswan-charon)")
	}
	raddr := net.UDPAddrFromAddrPort(netip.MustParseAddrPort(peer))
	conn, err := net.ListenUDP("udp", &net.UDPAddr{Port: 500})
	if err != nil {
		t.Fatal(err)
	}
	defer conn.Close()
	local := netip.MustParseAddrPort(os.Getenv("KEYPLANE_STRONGSWAN_LOCAL"))
	psk := []byte(os.Getenv("KEYPLANE_STRONGSWAN_PSK"))

	receive := func() *message.Message {
		t.Helper()
		buf := make([]byte, 65536)
		conn.SetReadDeadline(time.Now().Add(5 * time.Second))
		n, _, err := conn.ReadFromUDP(buf)
		if err != nil {
			t.Fatal(err)
		}
		m, err := message.Parse(buf[:n])
		if err != nil {
			t.Fatalf("parse strongSwan's answer: %v", err)
		}
		return m
	}
	exchange := func(b []byte) *message.Message {
		t.Helper()
		if _, err := conn.WriteToUDP(b, raddr); err != nil {
			t.Fatal(err)
		}
		return receive()
	}

	var spiBuf [8]byte
	rand.Read(spiBuf[:])
	spii := binary.BigEndian.Uint64(spiBuf[:])
	ni := make([]byte, 32)
	rand.Read(ni)
	ls, ok := liveSuites[os.Getenv("KEYPLANE_STRONGSWAN_SUITE")]
	if !ok {
		t.Fatalf("unknown KEYPLANE_STRONGSWAN_SUITE %q", os.Getenv("KEYPLANE_STRONGSWAN_SUITE"))
	}
	// Offer two groups but send a KE for the first: live.sh's responder
	// accepts only the second and must ask for it.
	group := ls.groups[0]
	var cookie []byte
	var dh *ikecrypto.DH
	var req, resp *message.Message
	var reqBytes []byte
	sawInvalidKE, sawCookie := false, false
	for try := 0; ; try++ {
		if try > 4 {
			t.Fatal("IKE_SA_INIT did not converge")
		}
		dh, err = ikecrypto.NewDH(group)
		if err != nil {
			t.Fatal(err)
		}
		req = &message.Message{Header: message.Header{SPIi: spii, Exchange: message.IKE_SA_INIT, Initiator: true}}
		if cookie != nil {
			req.Payloads = append(req.Payloads, &message.Notify{NotifyType: message.COOKIE, Data: cookie})
		}
		req.Payloads = append(req.Payloads,
			&message.SA{Proposals: []message.Proposal{{Num: 1, Protocol: message.ProtocolIKE, Transforms: ls.ike}}},
			&message.KE{Group: group, Data: dh.PublicValue()},
			&message.Nonce{Data: ni},
			&message.Notify{NotifyType: message.NAT_DETECTION_SOURCE_IP, Data: ikecrypto.NATDetectionHash(spii, 0, local)},
			&message.Notify{NotifyType: message.NAT_DETECTION_DESTINATION_IP, Data: ikecrypto.NATDetectionHash(spii, 0, raddr.AddrPort())},
			&message.Notify{NotifyType: message.IKEV2_FRAGMENTATION_SUPPORTED},
		)
		reqBytes, err = req.Encode()
		if err != nil {
			t.Fatal(err)
		}
		resp = exchange(reqBytes)
		if n := resp.Notify(message.INVALID_KE_PAYLOAD); n != nil {
			sawInvalidKE = true
			group = message.DHGroup(binary.BigEndian.Uint16(n.Data))
			continue
		}
		if n := resp.Notify(message.COOKIE); n != nil && resp.Find(message.PayloadSA) == nil {
			sawCookie = true
			cookie = n.Data
			continue
		}
		break
	}
	t.Logf("IKE_SA_INIT done: INVALID_KE_PAYLOAD seen %v, COOKIE seen %v", sawInvalidKE, sawCookie)
	if !sawInvalidKE {
		t.Error("the responder did not ask for another group")
	}
	if os.Getenv("KEYPLANE_STRONGSWAN_COOKIE") != "" && !sawCookie {
		t.Error("the responder did not demand a cookie")
	}
	sa, _ := resp.Find(message.PayloadSA).(*message.SA)
	if sa == nil {
		t.Fatalf("no SA in %v", resp)
	}
	suite, err := ikecrypto.IKESuiteFromProposal(&sa.Proposals[0])
	if err != nil {
		t.Fatal(err)
	}
	// The NAT detection hashes strongSwan sent must match our addresses.
	if n := resp.Notify(message.NAT_DETECTION_DESTINATION_IP); n == nil || !bytes.Equal(n.Data, ikecrypto.NATDetectionHash(spii, resp.SPIr, local)) {
		t.Error("NAT_DETECTION_DESTINATION_IP does not match our address")
	}
	gir, err := dh.SharedSecret(resp.Find(message.PayloadKE).(*message.KE).Data)
	if err != nil {
		t.Fatal(err)
	}
	nr := resp.Find(message.PayloadNonce).(*message.Nonce).Data
	keys, err := ikecrypto.DeriveIKEKeys(suite, gir, ni, nr, spii, resp.SPIr)
	if err != nil {
		t.Fatal(err)
	}
	out, in, err := keys.Ciphers(true)
	if err != nil {
		t.Fatal(err)
	}

	// IKE_AUTH.
	idi := &message.ID{IDType: message.IDFQDN, Data: []byte("keyplane.example.org")}
	octets, _ := ikecrypto.SignedOctets(suite.PRF, keys.SKpi(), reqBytes, nr, idi.Body())
	auth, _ := ikecrypto.PSKAuth(suite.PRF, psk, octets)
	espSPI := []byte{0xc0, 0xff, 0xee, 0x01}
	authReq := &message.Message{
		Header: message.Header{SPIi: spii, SPIr: resp.SPIr, Exchange: message.IKE_AUTH, Initiator: true, MessageID: 1},
		Payloads: []message.Payload{
			idi,
			&message.Notify{NotifyType: message.INITIAL_CONTACT},
			&message.ID{Responder: true, IDType: message.IDFQDN, Data: []byte("strongswan.example.org")},
			&message.Auth{Method: message.AuthSharedKeyMIC, Data: auth},
			&message.SA{Proposals: []message.Proposal{{Num: 1, Protocol: message.ProtocolESP, SPI: espSPI, Transforms: ls.esp}}},
			&message.TS{Selectors: []message.TrafficSelector{message.SelectorFromPrefix(netip.MustParsePrefix("10.10.1.1/32"), 0)}},
			&message.TS{Responder: true, Selectors: []message.TrafficSelector{message.SelectorFromPrefix(netip.MustParsePrefix("10.10.2.1/32"), 0)}},
		},
	}
	var authResp *message.Message
	if ls.fragment {
		// RFC 7383: send IKE_AUTH in fragments of at most 200 octets.
		if resp.Notify(message.IKEV2_FRAGMENTATION_SUPPORTED) == nil {
			t.Fatal("strongSwan did not agree to fragmentation")
		}
		frags, err := authReq.EncodeFragments(out, 200)
		if err != nil {
			t.Fatal(err)
		}
		if len(frags) < 2 {
			t.Fatalf("%d fragments", len(frags))
		}
		for _, f := range frags[:len(frags)-1] {
			if _, err := conn.WriteToUDP(f, raddr); err != nil {
				t.Fatal(err)
			}
		}
		authResp = exchange(frags[len(frags)-1])
		t.Logf("IKE_AUTH request sent in %d fragments", len(frags))
	} else {
		b, err := authReq.EncodeEncrypted(out)
		if err != nil {
			t.Fatal(err)
		}
		authResp = exchange(b)
	}
	_, fragmented := authResp.Payloads[len(authResp.Payloads)-1].(*message.EncryptedFragment)
	if want := os.Getenv("KEYPLANE_STRONGSWAN_EXPECT_FRAGMENTS") != ""; want != fragmented {
		t.Errorf("IKE_AUTH answer fragmented: %v, expected %v", fragmented, want)
	}
	if fragmented {
		// live.sh makes charon fragment its answer for the chacha suite.
		parts := map[uint16][]byte{}
		var first message.PayloadType
		m := authResp
		for {
			f, pt, err := m.OpenFragment(in)
			if err != nil {
				t.Fatalf("open fragment: %v", err)
			}
			parts[f.Number] = pt
			if f.Number == 1 {
				first = f.NextPayload
			}
			if len(parts) == int(f.Total) {
				var joined []byte
				for i := 1; i <= int(f.Total); i++ {
					joined = append(joined, parts[uint16(i)]...)
				}
				ps, err := message.ParsePayloads(first, joined)
				if err != nil {
					t.Fatalf("reassembled IKE_AUTH response: %v", err)
				}
				t.Logf("IKE_AUTH response received in %d fragments", f.Total)
				authResp = &message.Message{Header: m.Header, Payloads: ps, Protected: true}
				break
			}
			m = receive()
		}
	} else if err := authResp.Decrypt(in); err != nil {
		t.Fatalf("decrypt IKE_AUTH response: %v", err)
	}
	t.Logf("IKE_AUTH response: %v", authResp)
	for n := range authResp.Notifies() {
		if n.NotifyType.IsError() {
			t.Fatalf("strongSwan answered %v", n.NotifyType)
		}
	}
	idr, _ := authResp.Find(message.PayloadIDr).(*message.ID)
	ra, _ := authResp.Find(message.PayloadAUTH).(*message.Auth)
	if idr == nil || ra == nil {
		t.Fatalf("no IDr/AUTH in %v", authResp)
	}
	octR, _ := ikecrypto.SignedOctets(suite.PRF, keys.SKpr(), resp.Raw(), ni, idr.Body())
	if ok, _ := ikecrypto.VerifyPSKAuth(suite.PRF, psk, octR, ra.Data); !ok {
		t.Fatal("strongSwan's AUTH does not verify")
	}
	csa := authResp.Find(message.PayloadSA).(*message.SA)
	cs, err := ikecrypto.ChildSuiteFromProposal(&csa.Proposals[0])
	if err != nil {
		t.Fatal(err)
	}
	ck, err := ikecrypto.DeriveChildKeys(suite.PRF, keys.SKd(), cs, nil, ni, nr)
	if err != nil {
		t.Fatal(err)
	}
	// live.sh compares these with what charon logged.
	if f := os.Getenv("KEYPLANE_STRONGSWAN_KEYS_OUT"); f != "" {
		out := "child_encr_i " + hexs(ck.EncrI) + "\nchild_encr_r " + hexs(ck.EncrR) + "\n"
		if len(ck.IntegI) > 0 {
			out += "child_integ_i " + hexs(ck.IntegI) + "\nchild_integ_r " + hexs(ck.IntegR) + "\n"
		}
		if err := os.WriteFile(f, []byte(out), 0o600); err != nil {
			t.Fatal(err)
		}
	}

	// INFORMATIONAL: delete the IKE SA.
	del := &message.Message{
		Header:   message.Header{SPIi: spii, SPIr: resp.SPIr, Exchange: message.INFORMATIONAL, Initiator: true, MessageID: 2},
		Payloads: []message.Payload{&message.Delete{Protocol: message.ProtocolIKE}},
	}
	b, err := del.EncodeEncrypted(out)
	if err != nil {
		t.Fatal(err)
	}
	delResp := exchange(b)
	if err := delResp.Decrypt(in); err != nil {
		t.Fatalf("decrypt INFORMATIONAL response: %v", err)
	}
	if !delResp.Response || delResp.MessageID != 2 || len(delResp.Payloads) != 0 {
		t.Errorf("delete answer: %v", delResp)
	}
}

type liveSuite struct {
	ike, esp []message.Transform
	groups   [2]message.DHGroup
	fragment bool // send IKE_AUTH as RFC 7383 fragments
}

// liveSuites match the proposals live.sh gives charon for each suite name.
var liveSuites = map[string]liveSuite{
	"gcm": {
		ike: []message.Transform{message.EncrTransform(message.EncrAESGCM16, 128), message.PRFTransform(message.PRFHMACSHA2256),
			message.KETransform(message.DHECP256), message.KETransform(message.DHCurve25519)},
		esp:    []message.Transform{message.EncrTransform(message.EncrAESGCM16, 128), message.ESNTransform(message.ESNNo)},
		groups: [2]message.DHGroup{message.DHECP256, message.DHCurve25519},
	},
	"cbc": {
		ike: []message.Transform{message.EncrTransform(message.EncrAESCBC, 256), message.IntegTransform(message.IntegHMACSHA2256128),
			message.PRFTransform(message.PRFHMACSHA2256), message.KETransform(message.DHCurve25519), message.KETransform(message.DHModp2048)},
		esp: []message.Transform{message.EncrTransform(message.EncrAESCBC, 128), message.IntegTransform(message.IntegHMACSHA2256128),
			message.ESNTransform(message.ESNNo)},
		groups:   [2]message.DHGroup{message.DHCurve25519, message.DHModp2048},
		fragment: true,
	},
	"chacha": {
		ike: []message.Transform{message.EncrTransform(message.EncrChaCha20Poly1305, 0), message.PRFTransform(message.PRFHMACSHA2512),
			message.KETransform(message.DHModp2048), message.KETransform(message.DHECP256)},
		esp:      []message.Transform{message.EncrTransform(message.EncrChaCha20Poly1305, 0), message.ESNTransform(message.ESNNo)},
		groups:   [2]message.DHGroup{message.DHModp2048, message.DHECP256},
		fragment: true,
	},
}

func hexs(k ikecrypto.Key) string { return hex.EncodeToString([]byte(k)) }
