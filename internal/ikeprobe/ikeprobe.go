// Package ikeprobe is a test double of IKE initiators that never
// authenticate: it sends IKE_SA_INIT requests as a flooding host does and
// echoes the COOKIEs it is sent. Tests and measurements of a responder's
// half-open limits use it; it speaks to real sockets only.
package ikeprobe

import (
	"crypto/rand"
	"encoding/binary"
	"errors"
	"fmt"
	"net"
	"sync"
	"time"

	"github.com/keyplane/keyplane/ike/message"
)

// InitRequest is an IKE_SA_INIT request as keyplane's default initiator
// sends it (AES-GCM-16/128, PRF-HMAC-SHA2-256, X25519 with the base point
// as its public value), with a COOKIE first when cookie is not nil and
// extra payloads at the end.
func InitRequest(spii uint64, nonce, cookie []byte, extra ...message.Payload) []byte {
	ke := make([]byte, 32)
	ke[0] = 9
	var ps []message.Payload
	if cookie != nil {
		ps = append(ps, &message.Notify{NotifyType: message.COOKIE, Data: cookie})
	}
	ps = append(ps,
		&message.SA{Proposals: []message.Proposal{{Num: 1, Protocol: message.ProtocolIKE, Transforms: []message.Transform{
			message.EncrTransform(message.EncrAESGCM16, 128), message.PRFTransform(message.PRFHMACSHA2256), message.KETransform(message.DHCurve25519)}}}},
		&message.KE{Group: message.DHCurve25519, Data: ke},
		&message.Nonce{Data: nonce})
	ps = append(ps, extra...)
	m := &message.Message{Header: message.Header{SPIi: spii, Exchange: message.IKE_SA_INIT, Initiator: true}, Payloads: ps}
	b, err := m.Encode()
	if err != nil {
		panic(fmt.Sprintf("ikeprobe: encode IKE_SA_INIT: %v", err)) // only extra can make it fail
	}
	return b
}

// RandSPI is a random initiator SPI.
func RandSPI() uint64 {
	var b [8]byte
	rand.Read(b[:])
	return binary.BigEndian.Uint64(b[:]) | 1<<63
}

// RandNonce is a random 32-byte nonce.
func RandNonce() []byte {
	n := make([]byte, 32)
	rand.Read(n)
	return n
}

// Result counts the answers to a flood.
type Result struct {
	Sent    int // new requests sent (not counting those sent again with a COOKIE)
	Full    int // IKE_SA_INIT answered in full: a half-open SA each
	Cookies int // COOKIEs received, each echoed at once
	Other   int // other answers (error notifies)
}

// Flood sends n new IKE_SA_INIT requests from each of conns to to (each
// request its own SPIi and nonce), paced at about 25,000 a second so that
// loopback's socket buffers keep up, echoes every COOKIE it is sent, and
// returns once no answer came for quiet after the last request.
func Flood(conns []*net.UDPConn, to *net.UDPAddr, n int, quiet time.Duration, extra ...message.Payload) (Result, error) {
	var mu sync.Mutex
	var res Result
	var errs []error
	nonces := make([]map[uint64][]byte, len(conns))
	var wg sync.WaitGroup
	sending := make(chan struct{})
	for i, c := range conns {
		nonces[i] = map[uint64][]byte{}
		wg.Go(func() {
			buf := make([]byte, 65536)
			for {
				c.SetReadDeadline(time.Now().Add(quiet))
				k, _, err := c.ReadFromUDP(buf)
				if err != nil {
					select {
					case <-sending:
						return
					default:
						continue
					}
				}
				m, err := message.Parse(buf[:k])
				mu.Lock()
				switch {
				case err != nil:
					errs = append(errs, fmt.Errorf("answer: %w", err))
				case m.Find(message.PayloadSA) != nil:
					res.Full++
				case m.Notify(message.COOKIE) != nil:
					res.Cookies++
					ni := nonces[i][m.SPIi]
					mu.Unlock()
					c.WriteToUDP(InitRequest(m.SPIi, ni, m.Notify(message.COOKIE).Data, extra...), to)
					continue
				default:
					res.Other++
				}
				mu.Unlock()
			}
		})
	}
	for k := range n {
		for i, c := range conns {
			spii, ni := RandSPI(), RandNonce()
			mu.Lock()
			nonces[i][spii] = ni
			res.Sent++
			mu.Unlock()
			if _, err := c.WriteToUDP(InitRequest(spii, ni, nil, extra...), to); err != nil {
				mu.Lock()
				errs = append(errs, err)
				mu.Unlock()
			}
		}
		if k%50 == 49 {
			time.Sleep(2 * time.Millisecond)
		}
	}
	close(sending)
	wg.Wait()
	return res, errors.Join(errs...)
}
