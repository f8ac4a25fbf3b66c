package ike

import (
	"bytes"
	"fmt"
	"net/netip"

	"github.com/keyplane/keyplane/ike/ikecrypto"
	"github.com/keyplane/keyplane/ike/message"
)

// IKE_INTERMEDIATE (RFC 9242) with additional key exchanges (RFC 9370):
// when the IKE proposal chosen in IKE_SA_INIT names ADDKE1..7, each one
// runs in an IKE_INTERMEDIATE exchange before IKE_AUTH (a KE payload each
// way), and after each the IKE SA's keys are derived anew from SK_d and
// the new shared secret. Every IKE_INTERMEDIATE message is authenticated
// in IKE_AUTH by its IntAuth, chained per direction and computed with
// the keys that protected it.

// multiKE is an IKE SA's state of RFC 9242 and RFC 9370.
// An IKE SA has one (ikeSA.mke) only once it runs IKE_INTERMEDIATE or
// IKE_FOLLOWUP_KE: most never do, and the struct is 96 octets.
type multiKE struct {
	// intAuthI and intAuthR are the IntAuth chains of the initiator's and
	// the responder's IKE_INTERMEDIATE messages (nil: none).
	intAuthI, intAuthR []byte
	// interDone counts the additional key exchanges done in
	// IKE_INTERMEDIATE.
	interDone int
	// lastInterReq is the peer's last IKE_INTERMEDIATE request as
	// received (whole, or its first fragment): its retransmission comes
	// under keys we no longer hold.
	lastInterReq []byte
	// followIn is the peer's IKE_FOLLOWUP_KE sequence we answer, and
	// followOut counts ours in progress (followup.go).
	followIn  *followupIn
	followOut int
}

// afterInit goes on after IKE_SA_INIT: IKE_INTERMEDIATE for each
// additional key exchange of the suite, then IKE_AUTH.
func (sa *ikeSA) afterInit() {
	if adds := sa.suite.AdditionalKEs(); len(adds) > 0 {
		if !sa.interPeer {
			sa.destroyErr(ourNotify(message.NO_PROPOSAL_CHOSEN, "responder chose additional key exchanges %v without INTERMEDIATE_EXCHANGE_SUPPORTED", adds))
			return
		}
		sa.sendIntermediate(0)
		return
	}
	sa.sendAuth()
}

// sendIntermediate sends the IKE_INTERMEDIATE request of additional key
// exchange i.
func (sa *ikeSA) sendIntermediate(i int) {
	method := sa.suite.AdditionalKEs()[i]
	kex, err := ikecrypto.NewKeyExchange(method)
	if err != nil {
		sa.destroyErr(fmt.Errorf("additional key exchange %v: %w", method, err))
		return
	}
	sa.logger().Debug("additional key exchange in IKE_INTERMEDIATE", "n", i+1, "method", method.String())
	sa.send(&request{exch: message.IKE_INTERMEDIATE, kex: kex,
		payloads:   []message.Payload{&message.KE{Group: method, Data: kex.PublicValue()}},
		built:      func(m *message.Message) { sa.chainIntAuth(m) },
		onResponse: func(m *message.Message) { sa.intermediateAnswered(i, kex, m) },
		onTimeout:  func() { sa.destroyErr(errPeerGone("peer not responding to IKE_INTERMEDIATE")) }})
}

// intermediateAnswered completes additional key exchange i with the
// responder's answer.
func (sa *ikeSA) intermediateAnswered(i int, kex ikecrypto.KeyExchange, m *message.Message) {
	for n := range m.Notifies() {
		if n.NotifyType.IsError() {
			sa.destroyErr(peerNotify(n.NotifyType, "IKE_INTERMEDIATE %d refused", i+1))
			return
		}
	}
	method := kex.Method()
	ke, _ := m.Find(message.PayloadKE).(*message.KE)
	if ke == nil || ke.Group != method {
		sa.destroyErr(ourNotify(message.INVALID_SYNTAX, "IKE_INTERMEDIATE %d answer without a KE payload of %v", i+1, method))
		return
	}
	if err := sa.chainIntAuth(m); err != nil {
		sa.destroyErr(err)
		return
	}
	sk, err := sa.sharedKE(kex, ke.Data)
	if err != nil {
		sa.destroyErr(ourNotify(message.INVALID_SYNTAX, "IKE_INTERMEDIATE %d: %v", i+1, err))
		return
	}
	err = sa.intermediateKeys(sk)
	sk.Zero()
	if err != nil {
		sa.destroyErr(err)
		return
	}
	made(&sa.mke).interDone++
	sa.logger().Info("additional key exchange done", "n", i+1, "method", method.String())
	if i+1 < len(sa.suite.AdditionalKEs()) {
		sa.sendIntermediate(i + 1)
		return
	}
	sa.sendAuth()
}

// handleIntermediate is the responder's side of IKE_INTERMEDIATE.
func (sa *ikeSA) handleIntermediate(m *message.Message, s *sock, local, remote netip.AddrPort) {
	fail := func(why string) {
		sa.respond(m, []message.Payload{&message.Notify{NotifyType: message.INVALID_SYNTAX}}, s, local, remote)
		sa.destroyErr(ourNotify(message.INVALID_SYNTAX, "%s", why))
	}
	adds := sa.suite.AdditionalKEs()
	if orZero(sa.mke).interDone >= len(adds) {
		fail(fmt.Sprintf("IKE_INTERMEDIATE beyond the %d additional key exchanges negotiated", len(adds)))
		return
	}
	method := adds[orZero(sa.mke).interDone]
	ke, _ := m.Find(message.PayloadKE).(*message.KE)
	if ke == nil || ke.Group != method {
		fail(fmt.Sprintf("IKE_INTERMEDIATE %d without a KE payload of %v", orZero(sa.mke).interDone+1, method))
		return
	}
	if err := sa.chainIntAuth(m); err != nil {
		fail(err.Error())
		return
	}
	pub, sk, err := sa.respondKE(method, ke.Data)
	if err != nil {
		fail(fmt.Sprintf("IKE_INTERMEDIATE %d: %v", orZero(sa.mke).interDone+1, err))
		return
	}
	defer sk.Zero()
	ps := []message.Payload{&message.KE{Group: method, Data: pub}}
	if err := sa.chainIntAuth(sa.responseMessage(m, ps)); err != nil {
		fail(err.Error())
		return
	}
	if raw := m.Raw(); raw != nil {
		made(&sa.mke).lastInterReq = raw
	}
	sa.respond(m, ps, s, local, remote) // under the keys in force so far
	if err := sa.intermediateKeys(sk); err != nil {
		sa.destroyErr(err)
		return
	}
	made(&sa.mke).interDone++
	sa.logger().Info("additional key exchange done", "n", orZero(sa.mke).interDone, "method", method.String())
}

// chainIntAuth adds an IKE_INTERMEDIATE message, sent or received, to
// its direction's IntAuth chain (RFC 9242 §3.3.2), with the keys in
// force (those that protect it).
func (sa *ikeSA) chainIntAuth(m *message.Message) error {
	oct, err := m.IntAuthOctets()
	if err != nil {
		return fmt.Errorf("IntAuth of IKE_INTERMEDIATE: %w", err)
	}
	prev, skp := &made(&sa.mke).intAuthI, sa.keys.SKpi()
	if !m.Initiator {
		prev, skp = &made(&sa.mke).intAuthR, sa.keys.SKpr()
	}
	v, err := ikecrypto.IntAuth(sa.suite.PRF, skp, *prev, oct)
	if err != nil {
		return fmt.Errorf("IntAuth of IKE_INTERMEDIATE: %w", err)
	}
	*prev = v
	return nil
}

// intermediateKeys replaces the IKE SA's keys by those derived with the
// shared secret of an additional key exchange (RFC 9370 §2.2.2).
func (sa *ikeSA) intermediateKeys(sk ikecrypto.Key) error {
	keys, err := ikecrypto.DeriveIntermediateIKEKeys(sa.keys, sk, orZero(sa.hs).ni, orZero(sa.hs).nr, sa.spii, sa.spir)
	if err != nil {
		return fmt.Errorf("derive IKE keys after IKE_INTERMEDIATE: %w", err)
	}
	out, in, err := keys.HandshakeCiphers(sa.initiator)
	if err != nil {
		keys.Zero()
		return fmt.Errorf("IKE ciphers: %w", err)
	}
	sa.keys.Zero()
	sa.keys, sa.out, sa.in = keys, out, in
	return nil
}

// intermediateDone says why IKE_AUTH cannot come yet ("" if it can):
// every additional key exchange must be done first.
func (sa *ikeSA) intermediateDone() string {
	if n := len(sa.suite.AdditionalKEs()); orZero(sa.mke).interDone < n {
		return fmt.Sprintf("IKE_AUTH after %d of the %d additional key exchanges (IKE_INTERMEDIATE)", orZero(sa.mke).interDone, n)
	}
	if sa.mke != nil {
		sa.mke.lastInterReq = nil
	}
	return ""
}

// isRetransmit reports whether a request with the message ID of the last
// one answered is that request again: it decrypts, or (an
// IKE_INTERMEDIATE request, answered under the keys that it replaced) it
// is the same octets.
func (sa *ikeSA) isRetransmit(m *message.Message) bool {
	if orZero(sa.mke).lastInterReq != nil && bytes.Equal(m.Raw(), orZero(sa.mke).lastInterReq) {
		return true
	}
	return m.Decrypt(sa.in) == nil
}
