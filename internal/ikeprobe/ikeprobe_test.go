package ikeprobe

import (
	"net"
	"testing"
	"time"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"

	"github.com/keyplane/keyplane/ike/message"
)

func TestInitRequest(t *testing.T) {
	ni := RandNonce()
	m, err := message.Parse(InitRequest(7, ni, []byte{1, 2}, &message.VendorID{Data: []byte("x")}))
	require.NoError(t, err)
	assert.Equal(t, message.IKE_SA_INIT, m.Exchange)
	assert.True(t, m.Initiator)
	assert.Equal(t, uint64(7), m.SPIi)
	require.NotNil(t, m.Notify(message.COOKIE))
	assert.Equal(t, []byte{1, 2}, m.Notify(message.COOKIE).Data)
	assert.Equal(t, message.PayloadNotify, m.Payloads[0].Type(), "the COOKIE comes first (RFC 7296 §2.6)")
	assert.Equal(t, ni, m.Find(message.PayloadNonce).(*message.Nonce).Data)
	assert.NotNil(t, m.Find(message.PayloadVendorID))
}

// Flood against a responder double that demands a COOKIE of every
// request without one and answers the others with an SA payload.
func TestFloodEchoesCookies(t *testing.T) {
	srv, err := net.ListenUDP("udp4", &net.UDPAddr{IP: net.IPv4(127, 0, 0, 1)})
	require.NoError(t, err)
	defer srv.Close()
	go func() {
		buf := make([]byte, 65536)
		for {
			n, from, err := srv.ReadFromUDP(buf)
			if err != nil {
				return
			}
			req, err := message.Parse(buf[:n])
			if err != nil {
				continue
			}
			var p message.Payload = &message.Notify{NotifyType: message.COOKIE, Data: []byte("c")}
			if req.Notify(message.COOKIE) != nil {
				p = &message.SA{Proposals: []message.Proposal{{Num: 1, Protocol: message.ProtocolIKE, Transforms: []message.Transform{
					message.EncrTransform(message.EncrAESGCM16, 128), message.PRFTransform(message.PRFHMACSHA2256), message.KETransform(message.DHCurve25519)}}}}
			}
			a := &message.Message{Header: message.Header{SPIi: req.SPIi, Exchange: message.IKE_SA_INIT, Response: true}, Payloads: []message.Payload{p}}
			b, err := a.Encode()
			if err != nil {
				t.Error(err)
				return
			}
			srv.WriteToUDP(b, from)
		}
	}()
	c, err := net.ListenUDP("udp4", &net.UDPAddr{IP: net.IPv4(127, 0, 0, 1)})
	require.NoError(t, err)
	defer c.Close()
	res, err := Flood([]*net.UDPConn{c}, srv.LocalAddr().(*net.UDPAddr), 100, 300*time.Millisecond)
	require.NoError(t, err)
	assert.Equal(t, Result{Sent: 100, Full: 100, Cookies: 100}, res)
}
