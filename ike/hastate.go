package ike

import (
	"context"
	"errors"
	"fmt"
	"net/netip"
	"time"

	"github.com/keyplane/keyplane/ike/ikecrypto"
	"github.com/keyplane/keyplane/ike/message"
	"github.com/keyplane/keyplane/kernelops"
)

// High availability: the engine's state export (StateSink, called as the
// state changes) and import (Restore, on the node that takes over). The
// states hold key material in clear: a sink seals them before they leave
// the process (package ha does).

// HAIKE is an established IKE SA as a standby needs it to answer the
// peer at the same SPIs and message IDs.
type HAIKE struct {
	Conn      string         `json:"conn"`
	Initiator bool           `json:"initiator"`
	SPIi      uint64         `json:"spi_i"`
	SPIr      uint64         `json:"spi_r"`
	Local     netip.AddrPort `json:"local"`
	Remote    netip.AddrPort `json:"remote"`
	NATLocal  bool           `json:"nat_local"`
	NATRemote bool           `json:"nat_remote"`
	// PeerIDType and PeerID are the identity the peer authenticated
	// with (the engine's index for unique and INITIAL_CONTACT).
	PeerIDType uint8              `json:"peer_id_type,omitempty"`
	PeerID     []byte             `json:"peer_id,omitempty"`
	Suite      ikecrypto.IKESuite `json:"suite"`
	Keys       HAIKEKeys          `json:"keys"`
	NextID     uint32             `json:"next_id"`   // our next request's message ID
	PeerNext   uint32             `json:"peer_next"` // the peer's next request's
	Children   []uint32           `json:"children"`  // inbound SPIs of its installed children
	Est        time.Time          `json:"established"`
}

// HAIKEKeys is an IKE SA's keys (RFC 7296 §2.14), in clear.
type HAIKEKeys struct {
	SKd, SKai, SKar, SKei, SKer, SKpi, SKpr []byte
}

// HAChild is an installed child SA.
type HAChild struct {
	Name      string         `json:"name"` // the child's configured name
	Initiator bool           `json:"initiator"`
	ReqID     uint32         `json:"reqid"`
	Mode      kernelops.Mode `json:"mode"`
	InSPI     uint32         `json:"spi_in"`
	OutSPI    uint32         `json:"spi_out"`
	Local     netip.Addr     `json:"local"`
	Remote    netip.Addr     `json:"remote"`
	// LocalTS and RemoteTS are the negotiated traffic selectors.
	LocalTS  []HATS               `json:"local_ts"`
	RemoteTS []HATS               `json:"remote_ts"`
	Encap    *kernelops.Encap     `json:"encap,omitempty"`
	Suite    ikecrypto.ChildSuite `json:"suite"`
	Keys     HAChildKeys          `json:"keys"`
	Lifetime kernelops.Lifetimes  `json:"lifetime"`
	Est      time.Time            `json:"established"`
}

// HAChildKeys is a child's KEYMAT split as RFC 7296 §2.17 lays it out.
type HAChildKeys struct {
	EncrI, IntegI, EncrR, IntegR []byte
}

// HATS is one traffic selector range.
type HATS struct {
	Proto uint8      `json:"proto"`
	SPort uint16     `json:"sport"`
	EPort uint16     `json:"eport"`
	Start netip.Addr `json:"start"`
	End   netip.Addr `json:"end"`
}

// StateSink receives the engine's HA state as it changes. It is called on
// the engine's loop and must not block (queue, coalesce, return).
type StateSink interface {
	// IKEChanged: an IKE SA was established, its message IDs moved or
	// its set of children changed.
	IKEChanged(st *HAIKE)
	// IKEGone: the IKE SA with our SPI spi is no longer established.
	IKEGone(spi uint64)
	// ChildChanged: a child was installed (the only moment the engine
	// holds its keys).
	ChildChanged(st *HAChild)
	// ChildGone: the child with inbound SPI spi was removed.
	ChildGone(spi uint32)
}

// RestoreSink is a StateSink that a takeover need not hand each child's
// record back to: ChildRestored says that the child with inbound SPI
// spi, whose SAs are in and out, was restored from its record as it
// stands (same reqid and first install), so there is nothing to write,
// only its counters to follow. A sink without it gets ChildChanged.
type RestoreSink interface {
	StateSink
	ChildRestored(spi uint32, in, out kernelops.SAID)
}

// reasonTakeover is the state-change reason of what a takeover resumes.
const reasonTakeover = "taken over (HA)"

// SetStateSink makes the engine report its state to s (nil: to nobody).
// IKE SAs established before are reported at once; their children are
// not (their keys are gone), so set it before the first IKE SA.
func (e *Engine) SetStateSink(ctx context.Context, s StateSink) error {
	return e.call(ctx, func() {
		e.sink = s
		for _, sa := range e.sas {
			e.haIKE(sa)
		}
	})
}

// haIKE reports the IKE SA's state, or its end (hook: setState, the
// window's message IDs, children added or removed).
func (e *Engine) haIKE(sa *ikeSA) {
	if e.sink == nil || sa == nil {
		return
	}
	switch sa.state {
	case ikeEstablished:
	case ikeDead, ikeRekeyed, ikeDeleting:
		if sa.estAt == 0 {
			return // never reported
		}
		e.sink.IKEGone(sa.localSPI())
		return
	default:
		return
	}
	if sa.keys == nil || sa.conn == nil {
		return
	}
	k := sa.keys
	st := &HAIKE{Conn: sa.conn.Name, Initiator: sa.initiator, SPIi: sa.spii, SPIr: sa.spir,
		Local: sa.local, Remote: sa.remote, NATLocal: sa.natLocal, NATRemote: sa.natRemote,
		Suite: sa.suite, NextID: sa.w.nextID, PeerNext: sa.w.peerNext, Est: e.timeOf(sa.estAt),
		Keys: HAIKEKeys{SKd: clone(k.SKd()), SKai: clone(k.SKai()), SKar: clone(k.SKar()), SKei: clone(k.SKei()),
			SKer: clone(k.SKer()), SKpi: clone(k.SKpi()), SKpr: clone(k.SKpr())}}
	if id := sa.rec.peerID; id != nil {
		st.PeerIDType, st.PeerID = uint8(id.IDType), clone(id.Data)
	}
	for _, ch := range sa.children {
		if ch.state == childInstalled {
			st.Children = append(st.Children, ch.inSPI)
		}
	}
	e.sink.IKEChanged(st)
}

// haChild reports a child just installed on sa, while its keys are still
// there (hook: finishChild, before the keys are zeroed).
func (e *Engine) haChild(sa *ikeSA, ch *childSA) { e.haChildAt(ch, e.clk.Now()) }

// haChildAt reports child ch first installed at est (a restored child:
// its original install, so the next node dates its lifetimes the same).
func (e *Engine) haChildAt(ch *childSA, est time.Time) {
	if e.sink == nil || ch.keys == nil {
		return
	}
	k := ch.keys
	st := &HAChild{Name: ch.cfg.Name, Initiator: ch.initiator, ReqID: ch.reqid, Mode: ch.mode,
		InSPI: ch.inSPI, OutSPI: ch.outSPI, Local: ch.localAddr, Remote: ch.remoteAddr,
		LocalTS: haTS(ch.localTS), RemoteTS: haTS(ch.remoteTS), Suite: ch.suite,
		Keys:     HAChildKeys{EncrI: clone(k.EncrI), IntegI: clone(k.IntegI), EncrR: clone(k.EncrR), IntegR: clone(k.IntegR)},
		Lifetime: ch.lifetime, Est: est}
	if ch.encap != nil {
		enc := *ch.encap
		st.Encap = &enc
	}
	e.sink.ChildChanged(st)
}

// haChildGone reports a removed child (hook: childSA.remove).
func (e *Engine) haChildGone(ch *childSA) {
	if e.sink == nil || ch.inSPI == 0 {
		return
	}
	e.sink.ChildGone(ch.inSPI)
	if ch.ike != nil {
		e.haIKE(ch.ike)
	}
}

func clone(b []byte) []byte { return append([]byte(nil), b...) }

func haTS(rs []tsRange) []HATS {
	out := make([]HATS, len(rs))
	for i, r := range rs {
		out[i] = HATS{Proto: r.proto, SPort: r.sport, EPort: r.eport, Start: r.start, End: r.end}
	}
	return out
}

func tsRanges(ss []HATS) []tsRange {
	out := make([]tsRange, len(ss))
	for i, s := range ss {
		out[i] = tsRange{proto: s.Proto, sport: s.SPort, eport: s.EPort, start: s.Start, end: s.End}
	}
	return out
}

// ErrRestore is the sentinel of a *RestoreError.
var ErrRestore = errors.New("ike: cannot restore HA state")

// RestoreError names the IKE SA (and child) that could not be restored.
type RestoreError struct {
	SPIs  string
	Child string // empty: the IKE SA itself
	Err   error
}

func (e *RestoreError) Error() string {
	if e.Child != "" {
		return fmt.Sprintf("ike: restore %s child %s: %v", e.SPIs, e.Child, e.Err)
	}
	return fmt.Sprintf("ike: restore %s: %v", e.SPIs, e.Err)
}

func (e *RestoreError) Unwrap() []error { return []error{ErrRestore, e.Err} }

// RestoreOptions tune a takeover.
type RestoreOptions struct {
	// SeqMargin is added to each outbound SA's last synced sequence
	// number (OutSeq), so that the peer's replay window accepts what
	// this node sends: at least the sync threshold in packets.
	SeqMargin uint64
	// Replay gives an SA's last synced replay state (the dataplane's
	// sync events, as the active wrote them); nil or false: none synced,
	// the outbound SA starts at SeqMargin.
	Replay func(id kernelops.SAID) (kernelops.ReplayState, bool)
	// Stats, when set, gets this restore's figures added.
	Stats *RestoreStats
}

// Restore resumes an IKE SA taken over from another node, with its
// children: they are installed through the SAD and SPD (outbound
// sequence numbers advanced past the last synced value by SeqMargin,
// inbound replay state restored, through the Syncer facet), in batches
// (harestore.go), and the IKE SA answers the peer at the synced message
// IDs. When the IKE SA itself cannot be restored nothing of it stays
// installed and the error is a *RestoreError; when some children cannot,
// each is rolled back alone, the peer is sent a Delete for them, the IKE
// SA and the other children stay, and the error is a *ChildrenError.
func (e *Engine) Restore(ctx context.Context, st *HAIKE, children []*HAChild, o RestoreOptions) error {
	var err error
	var stats RestoreStats
	if cerr := e.call(ctx, func() {
		t := time.Now()
		err = e.restore(st, children, o, &stats)
		stats.Total = time.Since(t)
	}); cerr != nil {
		return cerr
	}
	if o.Stats != nil {
		o.Stats.Add(stats)
	}
	return err
}

func (e *Engine) restore(st *HAIKE, children []*HAChild, o RestoreOptions, stats *RestoreStats) error {
	spis := fmt.Sprintf("%016x_i %016x_r", st.SPIi, st.SPIr)
	fail := func(child string, format string, args ...any) error {
		return &RestoreError{SPIs: spis, Child: child, Err: fmt.Errorf(format, args...)}
	}
	c := e.cfg.Connection(st.Conn)
	if c == nil {
		return fail("", "no connection %q in this configuration", st.Conn)
	}
	local := st.SPIr
	if st.Initiator {
		local = st.SPIi
	}
	if _, ok := e.sas[local]; ok || e.reserved[local] {
		return fail("", "SPI %016x is taken here", local)
	}
	var s *sock
	for _, x := range e.sockets {
		if x.bound.Port() == st.Local.Port() && (x.bound.Addr() == st.Local.Addr() || x.bound.Addr().IsUnspecified()) {
			s = x
			break
		}
	}
	if s == nil {
		return fail("", "no IKE socket here for %s", st.Local)
	}
	// Copies: the caller wipes st after the restore (ha.Restore does),
	// and SK_d must live on for the children's rekeys.
	k := &st.Keys
	keys, err := ikecrypto.NewIKEKeys(st.Suite, k.SKd, k.SKai, k.SKar, k.SKei, k.SKer, k.SKpi, k.SKpr)
	if err != nil {
		return fail("", "%v", err)
	}
	out, in, err := keys.Ciphers(st.Initiator)
	if err != nil {
		return fail("", "IKE ciphers: %v", err)
	}
	now := e.clk.Now()
	sa := &ikeSA{e: e, id: e.newIKEID(), conn: c, initiator: st.Initiator, spii: st.SPIi, spir: st.SPIr, created: e.stampOf(now),
		sock: s, local: st.Local, remote: st.Remote, natLocal: st.NATLocal, natRemote: st.NATRemote,
		suite: st.Suite, keys: keys, out: out, in: in, lastHeard: e.stampOf(now), timeHandshake: true}
	sa.setupWindow()
	sa.w.nextID, sa.w.peerNext = st.NextID, st.PeerNext
	sa.w.resync = true

	rs := make([]*restoring, 0, len(children))
	var errs []*RestoreError
	var gone []uint32 // inbound SPIs of the children not restored
	for _, cs := range children {
		_, cc := e.cfg.Child(cs.Name)
		if cc == nil {
			errs = append(errs, &RestoreError{SPIs: spis, Child: cs.Name, Err: errors.New("no such child in this configuration")})
			gone = append(gone, cs.InSPI)
			continue
		}
		ch := &childSA{e: e, id: e.newChildID(), cfg: cc, state: childNegotiating, reqid: cs.ReqID, mode: cs.Mode,
			initiator: cs.Initiator, inSPI: cs.InSPI, outSPI: cs.OutSPI, suite: cs.Suite,
			keys:      &ikecrypto.ChildKeys{Suite: cs.Suite, EncrI: cs.Keys.EncrI, IntegI: cs.Keys.IntegI, EncrR: cs.Keys.EncrR, IntegR: cs.Keys.IntegR},
			localAddr: cs.Local, remoteAddr: cs.Remote, localTS: tsRanges(cs.LocalTS), remoteTS: tsRanges(cs.RemoteTS),
			lifetime: cs.Lifetime}
		if cs.Encap != nil {
			enc := *cs.Encap
			ch.encap = &enc
		}
		rs = append(rs, &restoring{ch: ch, est: cs.Est, reqid: cs.ReqID})
	}
	// The IKE SA goes in first, its children batch by batch after it:
	// the loop is held throughout, so no request sees it half restored.
	if st.PeerID != nil {
		sa.rec.peerID = &message.ID{IDType: message.IDType(st.PeerIDType), Data: clone(st.PeerID)}
	}
	e.addSA(local, sa)
	sa.estAt = e.stampOf(now)
	sa.setState(ikeEstablished, reasonTakeover)
	e.placeSA(sa)
	restored := 0
	var last time.Time
	e.restoreChildren(rs, o, stats, func(b []*restoring) {
		last = time.Now()
		for _, r := range b {
			if r.err != nil {
				r.ch.keys.Zero()
				continue
			}
			e.restored(sa, r, now, stats)
			restored++
		}
	})
	if last.IsZero() {
		last = time.Now()
	}
	for _, r := range rs {
		if r.err != nil {
			errs = append(errs, &RestoreError{SPIs: spis, Child: r.ch.cfg.Name, Err: r.err})
			gone = append(gone, r.ch.inSPI)
		}
	}
	stats.IKESAs++
	stats.Children += restored
	stats.Failed += len(errs)
	// One line per IKE SA: each child's state change is at debug, a
	// takeover of thousands would otherwise log thousands of lines
	// while the engine answers no IKE.
	sa.logger().Info("CHILD SAs taken over (HA)", "children", restored, "failed", len(errs))
	sa.armLiveness()
	sa.armIKERekey()
	e.haIKE(sa)
	if len(gone) > 0 {
		// The peer still has them: tell it they are gone (it may make
		// them again), rather than let it send into nothing.
		sa.send(&request{exch: message.INFORMATIONAL,
			payloads: []message.Payload{&message.Delete{Protocol: message.ProtocolESP, SPIs: gone}}})
	}
	stats.Last += time.Since(last)
	if len(errs) > 0 {
		return &ChildrenError{Errs: errs}
	}
	return nil
}

// restored is the engine's bookkeeping for a child a takeover installed:
// the state sink follows it (its record as it was, unless it changed
// here), it joins its IKE SA and the indexes, its state changes (an
// event, hooks; the log line is its IKE SA's) and its idle watch starts.
func (e *Engine) restored(sa *ikeSA, r *restoring, now time.Time, stats *RestoreStats) {
	ch := r.ch
	est := r.est
	if est.IsZero() {
		est = now
	}
	t0 := time.Now()
	// Reported while its keys are still there: the sink's counter sync
	// (and a next takeover) needs this node to follow the child as if
	// it had made it. A record this restore came from, unchanged, need
	// not be written again (RestoreSink).
	if rs, ok := e.sink.(RestoreSink); ok && ch.reqid == r.reqid && !r.est.IsZero() {
		rs.ChildRestored(ch.inSPI, ch.inID(), ch.outID())
	} else {
		e.haChildAt(ch, est)
	}
	t1 := time.Now()
	ch.keys.Zero()
	ch.estAt = e.stampOf(now)
	e.bySA.add(ch)
	sa.addChild(ch)
	ch.setState(childInstalled, reasonTakeover)
	t2 := time.Now()
	e.watchIdle(ch)
	stats.Sink += t1.Sub(t0)
	stats.State += t2.Sub(t1)
	stats.Idle += time.Since(t2)
}
