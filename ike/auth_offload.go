package ike

import (
	"crypto/sha1"
	"crypto/x509"
	"errors"
	"fmt"
	"net/netip"
	"time"

	"github.com/keyplane/keyplane/ike/config"
	"github.com/keyplane/keyplane/ike/ikecrypto"
	"github.com/keyplane/keyplane/ike/message"
	"github.com/keyplane/keyplane/ike/pki"
)

// IKE_AUTH on the crypto workers (workers.go). The responder's: a worker
// decrypts the request and checks its integrity, then computes what the
// loop would — the connection it picks, the verdict on the peer's AUTH
// (PSK MAC, or certificate chain and signature), our AUTH payloads, and
// the first child's keys for the ESP suite it would choose — from a
// snapshot of the IKE SA. The loop then runs handleAuthRequest as before
// (the same decisions, in the same order: identities, uniqueness,
// virtual IPs, child selection, install, answer) and takes a computed
// value wherever its own inputs are the ones the worker had; anything
// else (a secret only Credentials holds, a child suite other than the
// one guessed) it computes itself, as it did before. The initiator's
// end is the same with the response: decrypted, the responder's AUTH
// checked and the child's keys made for the suite the response chose,
// then handleAuthResponse on the loop.
//
// While a request is on a worker the IKE SA takes no other request:
// a copy of it (the peer retransmitted) or anything new is dropped and
// counted (authAgain); an answered request sent again is still answered.
// An initiator drops copies of the response the same way. The result is
// dropped when the SA ended or moved on meanwhile (terminated, the
// half-open timeout, the IKE_AUTH request given up, Close); after a
// reload the computed values are dropped and the loop checks the message
// itself (a reload before it came would have meant the same).
//
// A full queue computes on the loop instead of dropping the message:
// unlike a new IKE_SA_INIT, an IKE_AUTH request comes from a peer that
// already holds a half-open SA (bounded by the half-open limits) and
// will not get another chance for seconds (its retransmit timeout), and
// the work is bounded by one request per half-open SA; a response is
// taken from the window only once, as the initiator's keys are.

// authInline, when set (benchmarks), computes every IKE_AUTH job on the
// loop, as a full queue does: the same work without the hand-off, to
// measure what the workers bring.
var authInline bool

// errOnLoop: the snapshot a worker computes from lacks a secret that
// only the loop can get (Credentials); the loop computes it.
var errOnLoop = errors.New("computed on the loop")

// authWork is an IKE SA's IKE_AUTH request on its way through a worker;
// ikeSA.auth is set while the worker computes (computing) and while
// handleAuthRequest runs with the result (pre). Loop-owned.
type authWork struct {
	cfg       *config.Config // a reload meanwhile drops the result
	computing bool
	pre       *authPre
}

// authPre is what a worker computed for one IKE_AUTH request under conn.
type authPre struct {
	conn *config.Connection
	// peerDone: the peer's AUTH was checked; peerWhy is why it failed
	// ("" verified), peerNote what the check logs.
	peerDone bool
	peerWhy  string
	peerNote *authNote
	// mineDone: our AUTH payloads were computed (mine, or mineErr).
	mineDone bool
	mine     []message.Payload
	mineErr  error
	mineNote *authNote
	// childKeys are the first child's keys for childSuite (nil: not
	// computed); deriveChildKeys takes them when the suite matches.
	childSuite ikecrypto.ChildSuite
	childKeys  *ikecrypto.ChildKeys
}

// zero wipes keys nobody took.
func (p *authPre) zero() {
	if p != nil && p.childKeys != nil {
		p.childKeys.Zero()
		p.childKeys = nil
	}
}

// authJob is the snapshot a worker computes from: copies or values the
// loop does not change while the request is computed.
type authJob struct {
	initiator   bool // the response to our request, else the peer's request
	authMID     uint32
	m           *message.Message
	in          message.Cipher
	cands       []*config.Connection
	chosen      message.Proposal
	prf         message.PRFID
	skpi, skpr  []byte
	skd         []byte
	initReq     []byte
	initResp    []byte
	ni, nr      []byte
	intAuthI    []byte
	intAuthR    []byte
	authLater   bool // IKE_INTERMEDIATE exchanges are missing: the loop refuses
	peerHashes  []message.HashAlgorithm
	peerCertReq [][sha1.Size]byte
	credPSK     []byte
	credCert    *CertChain
	credTrust   *pki.Store
	localAddr   netip.Addr
	remoteAddr  netip.Addr
	remoteDyn   []netip.Addr
	now         time.Time
}

// authResult: decErr, the request failed to decrypt (dropped); else pre.
type authResult struct {
	decErr error
	pre    *authPre
}

// offloadAuth hands the IKE_AUTH request m, not yet decrypted, to a
// worker. Runs on the loop.
func (sa *ikeSA) offloadAuth(m *message.Message, s *sock, local, remote netip.AddrPort) {
	still := func() bool { return sa.state == ikeHalfOpen && sa.w.classify(m.MessageID) == reqNew }
	sa.offloadAuthMessage(m, still, func() {
		sa.logger().Debug("received request", "message", logText{m}, "from", remote)
		sa.lastHeard = sa.e.nowStamp()
		if !sa.mobikeRequest(m) {
			sa.peerSeenAt(s, local, remote)
		}
		sa.handleAuthRequest(m, s, local, remote)
	})
}

// offloadAuthResponse hands the IKE_AUTH response m, not yet decrypted,
// to a worker. Runs on the loop.
func (sa *ikeSA) offloadAuthResponse(m *message.Message, remote netip.AddrPort) {
	still := func() bool { return sa.state == ikeAuthSent && sa.w.expects(m.MessageID, message.IKE_AUTH) }
	sa.offloadAuthMessage(m, still, func() {
		sa.logger().Debug("received response", "message", logText{m}, "from", remote)
		sa.lastHeard = sa.e.nowStamp()
		sa.answered(m) // handleAuthResponse
	})
}

// offloadAuthMessage runs the job of m on a worker, then, back on the
// loop, then — if still holds and the message decrypted — with what the
// worker computed at hand (sa.auth.pre).
func (sa *ikeSA) offloadAuthMessage(m *message.Message, still func() bool, then func()) {
	e := sa.e
	w := &authWork{cfg: e.cfg, computing: true}
	hs := made(&sa.hs)
	hs.auth = w
	authMID := m.MessageID
	if sa.initiator {
		authMID = hs.authMID
	}
	j := &authJob{initiator: sa.initiator, authMID: authMID, m: m, in: sa.in, cands: hs.cands, chosen: hs.ikeChosen, prf: sa.suite.PRF,
		skpi: sa.keys.SKpi(), skpr: sa.keys.SKpr(), skd: sa.keys.SKd(), initReq: hs.initReq, initResp: hs.initResp,
		ni: hs.ni, nr: hs.nr, intAuthI: orZero(sa.mke).intAuthI, intAuthR: orZero(sa.mke).intAuthR,
		authLater:  orZero(sa.mke).interDone < len(sa.suite.AdditionalKEs()),
		peerHashes: hs.peerHashes, peerCertReq: hs.peerCertReq,
		credPSK: hs.credPSK, credCert: hs.credCert, credTrust: hs.credTrust,
		localAddr: sa.local.Addr(), remoteAddr: sa.remote.Addr(), remoteDyn: sa.leasedAddrs(), now: e.clk.Now()}
	if sa.initiator {
		j.cands = []*config.Connection{sa.conn}
	}
	done := func(r authResult) { sa.authComputed(w, m, r, still, then) }
	if authInline || !offload(e, j.run, done) {
		e.crypto.authOnLoop++
		done(j.run())
	}
}

// authComputed is the rest of the message's handling, on the loop.
func (sa *ikeSA) authComputed(w *authWork, m *message.Message, r authResult, still func() bool, then func()) {
	if sa.authRun() != w {
		r.pre.zero()
		return // cannot happen: nothing else replaces it
	}
	sa.hs.auth = nil
	if r.decErr != nil {
		sa.logger().Debug("dropping IKE_AUTH message that fails to decrypt", "err", r.decErr)
		return
	}
	if !still() {
		r.pre.zero()
		sa.logger().Debug("IKE_AUTH message computed for an IKE SA that has moved on; dropped", "state", sa.state)
		return
	}
	if sa.e.cfg != w.cfg {
		r.pre.zero()
		r.pre = nil
		sa.logger().Debug("IKE_AUTH computed under a configuration since replaced; checking it again")
	}
	w.computing, w.pre = false, r.pre
	made(&sa.hs).auth = w
	defer func() {
		w.pre.zero()
		if sa.authRun() == w {
			sa.hs.auth = nil
		}
	}()
	then()
}

// run computes on a worker. Pure but for m, which it alone uses.
func (j *authJob) run() (r authResult) {
	if err := j.m.Decrypt(j.in); err != nil {
		r.decErr = err
		return r
	}
	r.pre = j.precompute()
	return r
}

// precompute is the crypto of handleAuthRequest, from the snapshot; nil
// where the loop will refuse the request before any of it.
func (j *authJob) precompute() *authPre {
	if j.initiator {
		return j.precomputeResponse()
	}
	m := j.m
	idi, _ := m.Find(message.PayloadIDi).(*message.ID)
	idr, _ := m.Find(message.PayloadIDr).(*message.ID)
	auth, _ := m.Find(message.PayloadAUTH).(*message.Auth)
	if idi == nil || auth == nil || j.authLater {
		return nil
	}
	hashes, certReq := authHints(m, j.peerHashes, j.peerCertReq)
	conn, misfit := pickConn(j.cands, idi, idr, func(c *config.Connection) error {
		return fitsOurs(&j.chosen, c.Proposals, message.ProtocolIKE)
	})
	if conn == nil || misfit != nil {
		return nil
	}
	p := &authPre{conn: conn}
	cr := j.creds(certReq)
	oct, err := authOctets(j.prf, j.skpi, j.initReq, j.nr, idi.Body(), j.intAuthI, j.intAuthR, j.authMID)
	if err != nil {
		return nil // the loop says why
	}
	// errOnLoop: a secret only the loop gets, it checks; the rest is
	// computed in case the peer verifies.
	if why, note, err := verifyPeerAuth(conn, m, idi, auth, oct, j.prf, cr, j.now); err == nil {
		p.peerDone, p.peerWhy, p.peerNote = true, why, note
		if why != "" {
			return p
		}
	}
	peer := config.Identity{Type: idi.IDType, Data: idi.Data}
	if oct, err := authOctets(j.prf, j.skpr, j.initResp, j.ni, idPayload(conn.LocalID, true).Body(), j.intAuthI, j.intAuthR, j.authMID); err == nil {
		mine, note, err := makeOurAuth(conn, idPayload(conn.LocalID, true), nil, oct, j.prf, false, hashes, peer, cr)
		if !errors.Is(err, errOnLoop) {
			p.mineDone, p.mine, p.mineErr, p.mineNote = true, mine, err, note
		}
	}
	p.childSuite, p.childKeys = j.childKeys(conn)
	return p
}

// precomputeResponse is the crypto of handleAuthResponse: the
// responder's AUTH under our connection, and the keys of the child the
// response chose.
func (j *authJob) precomputeResponse() *authPre {
	m := j.m
	idr, _ := m.Find(message.PayloadIDr).(*message.ID)
	auth, _ := m.Find(message.PayloadAUTH).(*message.Auth)
	conn := j.cands[0]
	if idr == nil || auth == nil || !conn.RemoteID.Matches(idr.IDType, idr.Data) {
		return nil
	}
	p := &authPre{conn: conn}
	oct, err := authOctets(j.prf, j.skpr, j.initResp, j.ni, idr.Body(), j.intAuthI, j.intAuthR, j.authMID)
	if err != nil {
		return nil
	}
	if why, note, err := verifyPeerAuth(conn, m, idr, auth, oct, j.prf, j.creds(nil), j.now); err == nil {
		p.peerDone, p.peerWhy, p.peerNote = true, why, note
		if why != "" {
			return p
		}
	}
	sap, _ := m.Find(message.PayloadSA).(*message.SA)
	if sap == nil || len(sap.Proposals) != 1 {
		return p
	}
	suite, err := ikecrypto.ChildSuiteFromProposal(&sap.Proposals[0])
	if err != nil || suite.DH != 0 || len(suite.AdditionalKEs()) > 0 {
		return p
	}
	if keys, err := ikecrypto.DeriveChildKeys(j.prf, j.skd, suite, nil, j.ni, j.nr); err == nil {
		p.childSuite, p.childKeys = suite, keys
	}
	return p
}

// childKeys are the keys of the child acceptChild would most likely
// make: the ESP suite selectChild picks from the offer now (the loop
// picks again, with the virtual IPs it may lease first; it takes these
// keys only for the same suite).
func (j *authJob) childKeys(conn *config.Connection) (ikecrypto.ChildSuite, *ikecrypto.ChildKeys) {
	m := j.m
	sap, _ := m.Find(message.PayloadSA).(*message.SA)
	tsi, _ := m.Find(message.PayloadTSi).(*message.TS)
	tsr, _ := m.Find(message.PayloadTSr).(*message.TS)
	if sap == nil || tsi == nil || tsr == nil {
		return ikecrypto.ChildSuite{}, nil
	}
	o := childOffer{proposals: sap.Proposals, sap: sap, tsi: rangesOf(tsi), tsr: rangesOf(tsr),
		transport: m.Notify(message.USE_TRANSPORT_MODE) != nil, remoteDyn: j.remoteDyn}
	choice, no := selectChild(conn.Children, o, j.localAddr, j.remoteAddr, nil)
	if no != nil {
		return ikecrypto.ChildSuite{}, nil
	}
	suite, err := ikecrypto.ChildSuiteFromProposal(&choice.proposal)
	if err != nil || suite.DH != 0 || len(suite.AdditionalKEs()) > 0 {
		return ikecrypto.ChildSuite{}, nil
	}
	keys, err := ikecrypto.DeriveChildKeys(j.prf, j.skd, suite, nil, j.ni, j.nr)
	if err != nil {
		return ikecrypto.ChildSuite{}, nil
	}
	return suite, keys
}

// creds are the snapshot's secrets: the configuration's, or what
// Credentials gave this SA before; errOnLoop for the rest.
func (j *authJob) creds(certReq [][sha1.Size]byte) authCreds {
	return authCreds{
		psk: func(c *config.Connection, _ config.Identity) ([]byte, error) {
			switch {
			case len(c.PSK) > 0:
				return c.PSK, nil
			case j.credPSK != nil:
				return j.credPSK, nil
			}
			return nil, errOnLoop
		},
		trust: func(c *config.Connection, _ config.Identity) (*pki.Store, error) {
			switch {
			case c.Trust != nil:
				return c.Trust, nil
			case j.credTrust != nil:
				return j.credTrust, nil
			}
			return nil, errOnLoop
		},
		local: func(c *config.Connection, _ config.Identity) (config.LocalCert, []*x509.Certificate, error) {
			if len(c.LocalCerts) == 0 && j.credCert == nil {
				return config.LocalCert{}, nil, errOnLoop
			}
			lc, chain := localCertFrom(c, certReq, j.credCert)
			return lc, chain, nil
		},
	}
}

// authHints is readAuthHints' computation: hashes and certReq with what
// m adds (new slices; the arguments are not changed).
func authHints(m *message.Message, hashes []message.HashAlgorithm, certReq [][sha1.Size]byte) ([]message.HashAlgorithm, [][sha1.Size]byte) {
	if n := m.Notify(message.SIGNATURE_HASH_ALGORITHMS); n != nil {
		if hs, err := message.ParseSignatureHashAlgorithms(n.Data); err == nil {
			hashes = append([]message.HashAlgorithm{}, hs...)
		}
	}
	certReq = certReq[:len(certReq):len(certReq)]
	for _, p := range m.FindAll(message.PayloadCERTREQ) {
		cr := p.(*message.CertReq)
		if cr.Encoding == message.CertX509 {
			certReq = append(certReq, cr.Hashes()...)
		}
	}
	return hashes, certReq
}

// precomputedPeer is the worker's verdict on the peer's AUTH under conn
// (ok false: none, the loop checks).
func (sa *ikeSA) precomputedPeer(conn *config.Connection) (why string, ok bool) {
	w := sa.authRun()
	if w == nil {
		return "", false
	}
	if w.pre == nil || w.pre.conn != conn || !w.pre.peerDone {
		sa.e.crypto.authRedone++
		return "", false
	}
	sa.e.crypto.authUsed++
	w.pre.peerNote.log(sa)
	return w.pre.peerWhy, true
}

// precomputedMine is the worker's AUTH payloads of ours under conn (ok
// false: none, the loop computes them).
func (sa *ikeSA) precomputedMine(conn *config.Connection) (ps []message.Payload, err error, ok bool) {
	w := sa.authRun()
	if w == nil {
		return nil, nil, false
	}
	if w.pre == nil || w.pre.conn != conn || !w.pre.mineDone {
		sa.e.crypto.authRedone++
		return nil, nil, false
	}
	sa.e.crypto.authUsed++
	w.pre.mineNote.log(sa)
	return w.pre.mine, w.pre.mineErr, true
}

// precomputedChildKeys hands over the worker's child keys when they are
// the ones deriveChildKeys is asked for: the IKE_AUTH child (no key
// exchange, the IKE SA's nonces) with the suite the worker chose.
func (sa *ikeSA) precomputedChildKeys(ch *childSA, ni, nr []byte, gir ikecrypto.Key) *ikecrypto.ChildKeys {
	w := sa.authRun()
	if w == nil {
		return nil
	}
	if w.pre == nil || w.pre.childKeys == nil || gir != nil || len(ch.secrets()) > 0 ||
		w.pre.childSuite != ch.suite || !sameBytes(ni, sa.hs.ni) || !sameBytes(nr, sa.hs.nr) {
		sa.e.crypto.authRedone++
		return nil
	}
	sa.e.crypto.authUsed++
	k := w.pre.childKeys
	w.pre.childKeys = nil
	return k
}

// sameBytes: the same slice (not merely equal contents).
func sameBytes(a, b []byte) bool {
	return len(a) == len(b) && (len(a) == 0 || &a[0] == &b[0])
}

// authIndexErr reports an IKE SA whose IKE_AUTH is marked as computed
// while no crypto job is under way ("" if none), for tests (indexErr).
func (e *Engine) authIndexErr() string {
	if e.crypto.inflight.Load() != 0 {
		return ""
	}
	for _, sa := range e.sas {
		if sa.authRun() != nil {
			return fmt.Sprintf("IKE SA %d has an IKE_AUTH request marked as computed with no crypto job under way", sa.id)
		}
	}
	return ""
}
