package ike

import (
	"bytes"
	"net/netip"

	"github.com/keyplane/keyplane/ike/ikecrypto"
	"github.com/keyplane/keyplane/ike/message"
)

// The key exchanges of CREATE_CHILD_SA (a child with PFS, an IKE SA
// rekey), IKE_INTERMEDIATE and IKE_FOLLOWUP_KE on a worker, as
// IKE_SA_INIT's and IKE_AUTH's are. A request of these carries the peer's
// KE payload, and answering it (ikecrypto.Respond: our public value and
// the shared secret, or a KEM's encapsulation) is the costly part of the
// exchange; so is, for the answer to our own such request, the shared
// secret of its KE (offloadResponseKE, sharedKE). A new request of these exchanges is decrypted and its KE
// answered on a worker; back on the loop it is handled as before, and the
// handler takes that answer (respondKE) when it settles on the same method
// for the same data, or computes its own. What comes for the SA while the
// request is on the worker (a copy of it, the answer to our own request
// that crossed it — a rekey collision is settled by that order) waits and
// is then handled in the order it came: up to maxHeldWhileComputing
// messages, more are dropped and counted (keAgain).

// kePre is a KE payload answered on a worker: by Respond for the peer's
// request (kex nil), or by our key exchange kex for its answer.
type kePre struct {
	kex    ikecrypto.KeyExchange
	group  message.DHGroup
	peer   []byte // the KE data answered
	pub    []byte
	secret ikecrypto.Key
	err    error
	taken  bool // handed to the handler, which owns the secret then
}

type keResult struct {
	decErr error
	pre    *kePre // nil: no KE payload
}

// keOffloaded reports whether m is a request whose decryption and key
// exchange go to a worker (offloadRequestKE).
func keOffloaded(h message.Header) bool {
	switch h.Exchange {
	case message.CREATE_CHILD_SA, message.IKE_INTERMEDIATE, message.IKE_FOLLOWUP_KE:
		return !h.Response
	}
	return false
}

// offloadRequestKE decrypts the new request m and answers its KE payload
// on a worker, then handles it on the loop (handleRequest) if it is still
// the request the SA expects. Without a free worker it does it all now.
func (sa *ikeSA) offloadRequestKE(m *message.Message, s *sock, local, remote netip.AddrPort) {
	in := sa.in
	sa.runKE(func() keResult {
		ke, err := decryptedKE(m, in)
		if err != nil || ke == nil {
			return keResult{decErr: err}
		}
		pub, secret, err := ikecrypto.Respond(ke.Group, ke.Data)
		return keResult{pre: &kePre{group: ke.Group, peer: ke.Data, pub: pub, secret: secret, err: err}}
	}, func(r keResult) {
		if r.decErr == nil && sa.w.classify(m.MessageID) != reqNew {
			r.pre.zero()
			sa.logger().Debug("request computed for an IKE SA that has moved on; dropped", "msgid", m.MessageID, "state", sa.state)
			return
		}
		if r.decErr != nil {
			sa.requestUndecryptable(m, r.decErr, s, local, remote)
			return
		}
		sa.e.withKEPre(r.pre, func() { sa.handleRequest(m, s, local, remote) })
	})
}

// runKE runs work on a worker and done on the loop, or both now without
// a free worker. Meanwhile the SA's messages wait (keComputing); after
// done they are handled.
func (sa *ikeSA) runKE(work func() keResult, done func(keResult)) {
	e := sa.e
	finish := func(r keResult) {
		sa.keComputing = false
		defer sa.releaseHeld()
		done(r)
	}
	sa.keComputing = true
	if !offload(e, work, finish) {
		e.crypto.keOnLoop++
		finish(work())
	}
}

// decryptedKE decrypts m with in and returns its KE payload (nil: none).
// It runs on a worker.
func decryptedKE(m *message.Message, in message.Cipher) (*message.KE, error) {
	if err := m.Decrypt(in); err != nil {
		return nil, err
	}
	ke, _ := m.Find(message.PayloadKE).(*message.KE)
	return ke, nil
}

// withKEPre runs handle with the worker's answer p where respondKE and
// sharedKE find it: the loop handles one message at a time, so it waits
// in the engine, not in every IKE SA. What handle did not take is wiped.
func (e *Engine) withKEPre(p *kePre, handle func()) {
	e.kePre = p
	defer func() {
		e.kePre.zero()
		e.kePre = nil
	}()
	handle()
}

// respondKE answers the peer's KE data of method g: the worker's answer
// if it answered this very data with g, else computed now. The secret is
// the caller's to zero.
func (sa *ikeSA) respondKE(g message.DHGroup, data []byte) ([]byte, ikecrypto.Key, error) {
	if p := sa.e.kePre; p != nil && !p.taken && p.kex == nil && p.group == g && bytes.Equal(p.peer, data) {
		p.taken = true
		sa.e.crypto.keUsed++
		return p.pub, p.secret, p.err
	}
	sa.e.crypto.keRedone++
	return ikecrypto.Respond(g, data)
}

// sharedKE is kex's shared secret with the peer's KE data: the worker's
// if it took this very data with kex, else computed now. The secret is the
// caller's.
func (sa *ikeSA) sharedKE(kex ikecrypto.KeyExchange, data []byte) (ikecrypto.Key, error) {
	if p := sa.e.kePre; p != nil && !p.taken && p.kex != nil && p.kex == kex && bytes.Equal(p.peer, data) {
		p.taken = true
		sa.e.crypto.keUsed++
		return p.secret, p.err
	}
	sa.e.crypto.keRedone++
	return kex.SharedSecret(data)
}

// offloadResponseKE decrypts m, the answer to our request in flight that
// carried kex's public value, and takes the shared secret of its KE on a
// worker, then hands m to the request's handler on the loop if the answer
// is still awaited. Without a free worker it does it all now.
func (sa *ikeSA) offloadResponseKE(m *message.Message, kex ikecrypto.KeyExchange, remote netip.AddrPort) {
	in := sa.in
	sa.runKE(func() keResult {
		ke, err := decryptedKE(m, in)
		if err != nil || ke == nil || ke.Group != kex.Method() {
			return keResult{decErr: err} // no KE, or another: the handler says what is wrong
		}
		secret, err := kex.SharedSecret(ke.Data)
		return keResult{pre: &kePre{kex: kex, group: ke.Group, peer: ke.Data, secret: secret, err: err}}
	}, func(r keResult) {
		if !sa.w.expects(m.MessageID, m.Exchange) {
			r.pre.zero()
			sa.logger().Debug("response computed for a request no longer awaited; dropped", "msgid", m.MessageID)
			return
		}
		if r.decErr != nil {
			sa.logger().Debug("dropping response that fails to decrypt", "err", r.decErr)
			return
		}
		sa.e.withKEPre(r.pre, func() { sa.takeResponse(m, remote) })
	})
}

// zero wipes a secret the handler did not take.
func (p *kePre) zero() {
	if p != nil && !p.taken && p.secret != nil {
		p.secret.Zero()
	}
}

// maxHeldWhileComputing bounds what waits for a request on a worker, per
// IKE SA: its copies and a crossing answer are a few.
const maxHeldWhileComputing = 8

type heldMsg struct {
	s             *sock
	m             *message.Message
	local, remote netip.AddrPort
}

// holdWhileComputing keeps m until sa's request on a worker is handled.
func (sa *ikeSA) holdWhileComputing(s *sock, m *message.Message, local, remote netip.AddrPort) {
	e := sa.e
	if len(e.keHeld[sa]) >= maxHeldWhileComputing {
		e.crypto.keAgain++
		sa.logger().Debug("message while a request is computed, too many waiting; dropped", "message", logText{m})
		return
	}
	if e.keHeld == nil {
		e.keHeld = map[*ikeSA][]heldMsg{}
	}
	e.keHeld[sa] = append(e.keHeld[sa], heldMsg{s, m, local, remote})
}

// releaseHeld handles what waited for sa's request, in order, until one
// of them goes to a worker in turn (the rest wait again).
func (sa *ikeSA) releaseHeld() {
	e := sa.e
	for !sa.keComputing {
		q := e.keHeld[sa]
		if len(q) == 0 {
			delete(e.keHeld, sa)
			return
		}
		h := q[0]
		if len(q) == 1 {
			delete(e.keHeld, sa)
		} else {
			e.keHeld[sa] = q[1:]
		}
		if sa.state == ikeDead || e.sas[sa.localSPI()] != sa {
			continue // gone meanwhile: as for a message to an unknown SPI, dropped
		}
		sa.receive(h.s, h.m, h.local, h.remote)
	}
}
