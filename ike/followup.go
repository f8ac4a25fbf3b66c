package ike

import (
	"crypto/rand"
	"encoding/binary"
	"fmt"
	"net/netip"
	"time"

	"github.com/keyplane/keyplane/ike/ikecrypto"
	"github.com/keyplane/keyplane/ike/message"
)

// Additional key exchanges in CREATE_CHILD_SA (RFC 9370 §2.2.4): when
// the proposal chosen for a child (create or rekey, PFS) or an IKE SA
// rekey names ADDKE1..7, the CREATE_CHILD_SA answer carries an
// ADDITIONAL_KEY_EXCHANGE notification with a link, and each additional
// key exchange follows in an IKE_FOLLOWUP_KE exchange that quotes the
// link. The keys come from all the shared secrets once the last one is
// done: a child's KEYMAT, or the new IKE SA's SKEYSEED. The responder
// holds the exchange's state until then (followupTimeout at most).
//
// While such a sequence is in progress on an IKE SA, in either
// direction, a CREATE_CHILD_SA from the peer is answered
// TEMPORARY_FAILURE (it tries again later): simultaneous rekeys with
// additional key exchanges are thus settled by retries, not by the
// nonces of RFC 7296 §2.8.

// followupTimeout is how long a responder waits for the next
// IKE_FOLLOWUP_KE. (A variable for tests.)
var followupTimeout = 30 * time.Second

// followupIn is the peer's sequence of IKE_FOLLOWUP_KE exchanges that we
// answer.
type followupIn struct {
	link    []byte
	adds    []message.DHGroup
	secrets []ikecrypto.Key
	// finish derives and installs with every secret; it returns error
	// notifications to answer the last exchange with, or nil.
	finish func(secrets [][]byte) []message.Payload
	// abort gives up (timeout, a malformed exchange, the SA goes).
	abort func(why string)
	timer *timer
}

// followupBusy reports whether an IKE_FOLLOWUP_KE sequence is in
// progress on the SA.
func (sa *ikeSA) followupBusy() bool {
	return orZero(sa.mke).followIn != nil || orZero(sa.mke).followOut > 0
}

// addKEsOf returns the additional key exchanges of a chosen proposal.
func addKEsOf(p *message.Proposal) []message.DHGroup {
	var out []message.DHGroup
	for n := 1; n <= 7; n++ {
		for t := range p.Of(message.AddKE(n)) {
			if t.ID != 0 {
				out = append(out, message.DHGroup(t.ID))
			}
		}
	}
	return out
}

func newLink() []byte {
	b := make([]byte, 8)
	rand.Read(b)
	return b
}

// followups runs our IKE_FOLLOWUP_KE exchanges after a CREATE_CHILD_SA
// whose answer chose the additional key exchanges adds and quoted link.
// done gets their shared secrets in order, or why they failed (then the
// secrets are gone).
func (sa *ikeSA) followups(adds []message.DHGroup, link []byte, done func([][]byte, error)) {
	made(&sa.mke).followOut++
	var secrets [][]byte
	finish := func(err error) {
		made(&sa.mke).followOut--
		if err != nil {
			for _, s := range secrets {
				clear(s)
			}
			secrets = nil
		}
		done(secrets, err)
	}
	var step func(i int, link []byte)
	step = func(i int, link []byte) {
		method := adds[i]
		kex, err := ikecrypto.NewKeyExchange(method)
		if err != nil {
			finish(fmt.Errorf("additional key exchange %v: %w", method, err))
			return
		}
		sa.logger().Debug("additional key exchange in IKE_FOLLOWUP_KE", "n", i+1, "method", method.String())
		sa.send(&request{exch: message.IKE_FOLLOWUP_KE, kex: kex,
			payloads: []message.Payload{&message.KE{Group: method, Data: kex.PublicValue()},
				&message.Notify{NotifyType: message.ADDITIONAL_KEY_EXCHANGE, Data: link}},
			onResponse: func(m *message.Message) {
				for n := range m.Notifies() {
					if n.NotifyType.IsError() {
						finish(peerNotify(n.NotifyType, "IKE_FOLLOWUP_KE %d refused", i+1))
						return
					}
				}
				ke, _ := m.Find(message.PayloadKE).(*message.KE)
				if ke == nil || ke.Group != method {
					finish(ourNotify(message.INVALID_SYNTAX, "IKE_FOLLOWUP_KE %d answer without a KE payload of %v", i+1, method))
					return
				}
				sk, err := sa.sharedKE(kex, ke.Data)
				if err != nil {
					finish(ourNotify(message.INVALID_SYNTAX, "IKE_FOLLOWUP_KE %d: %v", i+1, err))
					return
				}
				secrets = append(secrets, sk)
				if i+1 == len(adds) {
					finish(nil)
					return
				}
				n := m.Notify(message.ADDITIONAL_KEY_EXCHANGE)
				if n == nil {
					finish(ourNotify(message.INVALID_SYNTAX, "IKE_FOLLOWUP_KE %d answer without ADDITIONAL_KEY_EXCHANGE for the next", i+1))
					return
				}
				step(i+1, n.Data)
			},
			onTimeout: func() {
				finish(errPeerGone("peer not responding to IKE_FOLLOWUP_KE"))
				sa.destroyErr(errPeerGone("peer not responding to IKE_FOLLOWUP_KE"))
			},
			onDrop: func(why string) { finish(fmt.Errorf("link down: %s", why)) }})
	}
	step(0, link)
}

// expectFollowups holds the state of the peer's coming IKE_FOLLOWUP_KE
// exchanges and returns the link for our CREATE_CHILD_SA answer.
func (sa *ikeSA) expectFollowups(adds []message.DHGroup, finish func([][]byte) []message.Payload, abort func(string)) []byte {
	f := &followupIn{link: newLink(), adds: adds, finish: finish, abort: abort}
	made(&sa.mke).followIn = f
	sa.armFollowup(f)
	return f.link
}

func (sa *ikeSA) armFollowup(f *followupIn) {
	f.timer.Stop()
	f.timer = sa.e.after(followupTimeout, func() {
		if orZero(sa.mke).followIn == f {
			sa.dropFollowupIn("the peer did not complete its IKE_FOLLOWUP_KE exchanges in time")
		}
	})
}

// dropFollowupIn abandons the peer's sequence.
func (sa *ikeSA) dropFollowupIn(why string) {
	f := orZero(sa.mke).followIn
	if f == nil {
		return
	}
	made(&sa.mke).followIn = nil
	f.timer.Stop()
	for _, s := range f.secrets {
		s.Zero()
	}
	sa.logger().Warn("additional key exchanges abandoned", "reason", why)
	f.abort(why)
}

// handleFollowupKE answers the peer's IKE_FOLLOWUP_KE.
func (sa *ikeSA) handleFollowupKE(m *message.Message, s *sock, local, remote netip.AddrPort) {
	answer := func(ps ...message.Payload) { sa.respond(m, ps, s, local, remote) }
	n := m.Notify(message.ADDITIONAL_KEY_EXCHANGE)
	ke, _ := m.Find(message.PayloadKE).(*message.KE)
	if n == nil || ke == nil {
		answer(&message.Notify{NotifyType: message.INVALID_SYNTAX})
		return
	}
	f := orZero(sa.mke).followIn
	if f == nil || string(f.link) != string(n.Data) {
		sa.logger().Info("IKE_FOLLOWUP_KE for no exchange we know: answering STATE_NOT_FOUND")
		answer(&message.Notify{NotifyType: message.STATE_NOT_FOUND})
		return
	}
	i := len(f.secrets)
	method := f.adds[i]
	if ke.Group != method {
		answer(&message.Notify{NotifyType: message.INVALID_SYNTAX})
		sa.dropFollowupIn(fmt.Sprintf("IKE_FOLLOWUP_KE %d with a KE payload of %v, want %v", i+1, ke.Group, method))
		return
	}
	pub, sk, err := sa.respondKE(method, ke.Data)
	if err != nil {
		answer(&message.Notify{NotifyType: message.INVALID_SYNTAX})
		sa.dropFollowupIn(fmt.Sprintf("IKE_FOLLOWUP_KE %d: %v", i+1, err))
		return
	}
	f.secrets = append(f.secrets, sk)
	if len(f.secrets) < len(f.adds) {
		f.link = newLink()
		sa.armFollowup(f)
		answer(&message.KE{Group: method, Data: pub}, &message.Notify{NotifyType: message.ADDITIONAL_KEY_EXCHANGE, Data: f.link})
		return
	}
	made(&sa.mke).followIn = nil
	f.timer.Stop()
	secrets := make([][]byte, len(f.secrets))
	for i, s := range f.secrets {
		secrets[i] = s
	}
	ps := f.finish(secrets)
	for _, s := range f.secrets {
		s.Zero()
	}
	if ps == nil {
		ps = []message.Payload{&message.KE{Group: method, Data: pub}}
	}
	answer(ps...)
}

// deriveChildKeys derives a child's keys from SK_d: with the additional
// key exchanges' secrets when it had some (RFC 9370 §2.2.4).
func (sa *ikeSA) deriveChildKeys(ch *childSA, ni, nr []byte, gir ikecrypto.Key) (*ikecrypto.ChildKeys, error) {
	if k := sa.precomputedChildKeys(ch, ni, nr, gir); k != nil { // auth_offload.go
		return k, nil
	}
	if s := ch.secrets(); len(s) > 0 {
		return ikecrypto.DeriveChildKeysMulti(sa.suite.PRF, sa.keys.SKd(), ch.suite, gir, ni, nr, s)
	}
	return ikecrypto.DeriveChildKeys(sa.suite.PRF, sa.keys.SKd(), ch.suite, gir, ni, nr)
}

// childFollowups runs the IKE_FOLLOWUP_KE exchanges our CREATE_CHILD_SA's
// answer m asks for, then completes the exchange (childAnswered again).
// It reports whether it took over.
func (sa *ikeSA) childFollowups(x *childExchange, m *message.Message, ni []byte, dh ikecrypto.KeyExchange) bool {
	if x.nc.addSecrets != nil {
		return false
	}
	sap, _ := m.Find(message.PayloadSA).(*message.SA)
	n := m.Notify(message.ADDITIONAL_KEY_EXCHANGE)
	if sap == nil || n == nil || len(sap.Proposals) != 1 {
		return false
	}
	adds := addKEsOf(&sap.Proposals[0])
	if len(adds) == 0 {
		return false
	}
	sa.addChild(x.nc) // listed while negotiating
	sa.followups(adds, n.Data, func(secrets [][]byte, err error) {
		if err != nil {
			sa.childExchangeFailed(x, err)
			return
		}
		x.nc.setSecrets(secrets)
		sa.childAnswered(x, m, ni, dh)
	})
	return true
}

// zeroSecrets wipes the additional key exchanges' secrets of a child.
func (ch *childSA) zeroSecrets() {
	for _, s := range ch.secrets() {
		clear(s)
	}
	ch.addSecrets = nil
}

// secrets are the child's additional key exchanges' secrets (nil: none).
func (ch *childSA) secrets() [][]byte {
	if ch.addSecrets == nil {
		return nil
	}
	return *ch.addSecrets
}

func (ch *childSA) setSecrets(s [][]byte) {
	ch.addSecrets = nil
	if s != nil {
		ch.addSecrets = &s
	}
}

// deferChild holds a child the peer creates or rekeys with additional key
// exchanges until its IKE_FOLLOWUP_KE exchanges are done, then derives its
// keys and installs it (a rekey then replaces old as usual). It returns
// the link for the CREATE_CHILD_SA answer.
func (sa *ikeSA) deferChild(ch *childSA, old *childSA, adds []message.DHGroup, ni, nr []byte, gir ikecrypto.Key) []byte {
	ni, nr = append([]byte(nil), ni...), append([]byte(nil), nr...)
	g := append(ikecrypto.Key(nil), gir...)
	return sa.expectFollowups(adds, func(secrets [][]byte) []message.Payload {
		defer g.Zero()
		ch.setSecrets(secrets)
		if err := sa.finishChild(ch, ni, nr, g); err != nil {
			ch.fail(err)
			sa.logger().Warn("refusing the peer's child", "notify", message.TEMPORARY_FAILURE.String(), "reason", err.Error())
			return []message.Payload{&message.Notify{NotifyType: message.TEMPORARY_FAILURE}}
		}
		if old != nil && old.state == childInstalled && old.theirs == nil {
			old.theirs = &childRekey{nc: ch, ni: ni, nr: nr, done: true}
			old.logger().Info("the peer's rekey (with additional key exchanges) is complete")
		}
		return nil
	}, func(why string) {
		g.Zero()
		ch.fail(fmt.Errorf("additional key exchanges: %s", why))
	})
}

// deriveRekeyedIKEKeys derives a rekeyed IKE SA's keys, with the
// secrets of its IKE_FOLLOWUP_KE exchanges when it had some.
func deriveRekeyedIKEKeys(s ikecrypto.IKESuite, oldPRF message.PRFID, oldSKd, gir, ni, nr []byte, add [][]byte, spii, spir uint64) (*ikecrypto.IKEKeys, error) {
	if len(add) > 0 {
		return ikecrypto.DeriveRekeyedIKEKeysMulti(s, oldPRF, oldSKd, gir, ni, nr, add, spii, spir)
	}
	return ikecrypto.DeriveRekeyedIKEKeys(s, oldPRF, oldSKd, gir, ni, nr, spii, spir)
}

// rekeyFollowups runs the IKE_FOLLOWUP_KE exchanges our IKE rekey's
// answer m asks for, then completes the rekey (rekeyIKEAnswered again,
// with their secrets). It reports whether it took over.
func (sa *ikeSA) rekeyFollowups(rk *ikeRekey, suite ikecrypto.IKESuite, m *message.Message) bool {
	adds := suite.AdditionalKEs()
	if len(adds) == 0 || rk.add != nil {
		return false
	}
	n := m.Notify(message.ADDITIONAL_KEY_EXCHANGE)
	if n == nil {
		sa.ikeRekeyDeclined(rk, "answer chose additional key exchanges without ADDITIONAL_KEY_EXCHANGE")
		return true
	}
	sa.followups(adds, n.Data, func(secrets [][]byte, err error) {
		if err != nil {
			if sa.rekeyIKEOut == rk {
				sa.ikeRekeyDeclined(rk, err.Error())
			}
			return
		}
		rk.add = secrets
		sa.rekeyIKEAnswered(rk, m)
	})
	return true
}

// deferIKERekey answers the peer's IKE SA rekey that chose additional key
// exchanges (the answer is sent through answer): the new SA is made once
// its IKE_FOLLOWUP_KE exchanges are done, with our SPI reserved meanwhile.
func (sa *ikeSA) deferIKERekey(chosen message.Proposal, suite ikecrypto.IKESuite, adds []message.DHGroup, spii uint64,
	gir ikecrypto.Key, ni, nr, pub []byte, answer func(...message.Payload)) {
	spir := sa.e.reserveSPI()
	g := append(ikecrypto.Key(nil), gir...)
	ni = append([]byte(nil), ni...)
	picked := chosen
	picked.Transforms = append([]message.Transform(nil), chosen.Transforms...)
	link := sa.expectFollowups(adds, func(secrets [][]byte) []message.Payload {
		defer g.Zero()
		delete(sa.e.reserved, spir)
		keys, err := ikecrypto.DeriveRekeyedIKEKeysMulti(suite, sa.suite.PRF, sa.keys.SKd(), g, ni, nr, secrets, spii, spir)
		if err != nil {
			sa.logger().Error("peer's IKE SA rekey", "err", err)
			return []message.Payload{&message.Notify{NotifyType: message.NO_PROPOSAL_CHOSEN}}
		}
		nsa, err := sa.successor(false, spii, spir, suite, keys)
		if err != nil {
			sa.logger().Error("peer's IKE SA rekey", "err", err)
			return []message.Payload{&message.Notify{NotifyType: message.NO_PROPOSAL_CHOSEN}}
		}
		sa.handOver(nsa, "rekeyed by peer (with additional key exchanges)")
		sa.awaitPeerDelete()
		return nil
	}, func(string) {
		g.Zero()
		delete(sa.e.reserved, spir)
	})
	chosen.SPI = binary.BigEndian.AppendUint64(nil, spir)
	answer(&message.SA{Proposals: []message.Proposal{chosen}}, &message.Nonce{Data: nr},
		&message.KE{Group: suite.DH, Data: pub}, &message.Notify{NotifyType: message.ADDITIONAL_KEY_EXCHANGE, Data: link})
}
