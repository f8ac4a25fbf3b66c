package ike

import (
	"context"
	"fmt"
	"iter"
	"net/netip"
	"slices"
	"time"

	"github.com/keyplane/keyplane/ike/ikecrypto"
	"github.com/keyplane/keyplane/kernelops"
)

// IKESAInfo is an IKE SA as `keyplane ike list` shows it.
type IKESAInfo struct {
	// ID is the IKE SA's unique ID (ids.go).
	ID          uint32      `json:"ike_id"`
	Name        string      `json:"name"`
	State       IKEState    `json:"state"`
	Role        string      `json:"role"`
	SPIi        string      `json:"spi_i"`
	SPIr        string      `json:"spi_r"`
	Local       string      `json:"local"`
	Remote      string      `json:"remote"`
	Suite       string      `json:"suite,omitempty"`
	NATLocal    bool        `json:"nat_local"`
	NATRemote   bool        `json:"nat_remote"`
	Established time.Time   `json:"established,omitzero"`
	Children    []ChildInfo `json:"children"`
}

// ChildInfo is a child SA with the dataplane's counters.
type ChildInfo struct {
	// ID is the CHILD SA's unique ID, IKEID its IKE SA's (ids.go).
	ID          uint32     `json:"child_id"`
	Name        string     `json:"name"`
	IKE         string     `json:"ike"`
	IKEID       uint32     `json:"ike_id"`
	State       ChildState `json:"state"`
	Mode        string     `json:"mode"`
	ReqID       uint32     `json:"reqid"`
	SPIIn       string     `json:"spi_in"`
	SPIOut      string     `json:"spi_out"`
	Suite       string     `json:"suite"`
	Encap       bool       `json:"encap"`
	Offload     string     `json:"offload"` // hardware offload installed: no, crypto, packet
	LocalTS     string     `json:"local_ts"`
	RemoteTS    string     `json:"remote_ts"`
	Local       string     `json:"local"`
	Remote      string     `json:"remote"`
	BytesIn     uint64     `json:"bytes_in"`
	PacketsIn   uint64     `json:"packets_in"`
	BytesOut    uint64     `json:"bytes_out"`
	PacketsOut  uint64     `json:"packets_out"`
	RekeyNeeded bool       `json:"rekey_needed"`
	Established time.Time  `json:"established,omitzero"`
	CounterErr  string     `json:"counter_error,omitempty"`
}

// IKESAs lists the IKE SAs with their children, oldest first. The loop
// only copies the SAs' fields (no formatting, no dataplane call); the
// children's counters come from one bulk usage read of the dataplane and
// the listing is built outside the loop, so a monitor polling it does
// not hold up handshakes.
func (e *Engine) IKESAs(ctx context.Context) ([]IKESAInfo, error) {
	var snap []saSnap
	if err := e.call(ctx, func() { snap = e.snapshot() }); err != nil {
		return nil, err
	}
	// Sort small keys, not the snapshots.
	order := make([]int, len(snap))
	for i := range order {
		order[i] = i
	}
	slices.SortStableFunc(order, func(a, b int) int { return snap[a].created.Compare(snap[b].created) })
	usage, uerr := e.childUsage(ctx, snap)
	tc := textCache{ike: map[ikecrypto.IKESuite]string{}, child: map[ikecrypto.ChildSuite]string{}}
	out := make([]IKESAInfo, 0, len(snap))
	for _, i := range order {
		out = append(out, snap[i].info(usage, uerr, &tc))
	}
	return out, nil
}

// textCache keeps the text of the suites a listing has printed: a few
// suites serve many thousands of SAs.
type textCache struct {
	ike   map[ikecrypto.IKESuite]string
	child map[ikecrypto.ChildSuite]string
}

func (tc *textCache) ikeSuite(s ikecrypto.IKESuite) string {
	t, ok := tc.ike[s]
	if !ok {
		t = s.String()
		tc.ike[s] = t
	}
	return t
}

func (tc *textCache) childSuite(s ikecrypto.ChildSuite) string {
	t, ok := tc.child[s]
	if !ok {
		t = childSuiteText(s)
		tc.child[s] = t
	}
	return t
}

// hexSPI prints an SPI as digits hex digits, zero-padded (%0*x without
// fmt's cost per call).
func hexSPI(v uint64, digits int) string {
	var b [16]byte
	for i := digits - 1; i >= 0; i-- {
		b[i] = "0123456789abcdef"[v&0xf]
		v >>= 4
	}
	return string(b[:digits])
}

// saSnap is what the loop copies of an IKE SA for a listing.
type saSnap struct {
	id                  uint32
	name                string
	state               IKEState
	initiator           bool
	spii, spir          uint64
	local, remote       netip.AddrPort
	natLocal, natRemote bool
	keyed               bool
	suite               ikecrypto.IKESuite
	estAt, created      time.Time
	children            []childSnap
}

// childSnap is what the loop copies of a child. The traffic selector
// slices are shared: the engine replaces them, never edits them.
type childSnap struct {
	id                    uint32
	name                  string
	state                 childState
	mode                  kernelops.Mode
	reqid, inSPI, outSPI  uint32
	suite                 ikecrypto.ChildSuite
	encap, rekey          bool
	localTS, remoteTS     []tsRange
	localAddr, remoteAddr netip.Addr
	estAt                 time.Time
	in, out               kernelops.SAID
	offIn, offOut         kernelops.OffloadMode
}

// snapshot copies the SAs for IKESAs. Runs on the loop.
func (e *Engine) snapshot() []saSnap {
	out := make([]saSnap, 0, len(e.sas))
	for _, sa := range e.sas {
		s := saSnap{id: sa.id, name: sa.name(), state: sa.state.public(), initiator: sa.initiator, spii: sa.spii, spir: sa.spir,
			local: sa.local, remote: sa.remote, natLocal: sa.natLocal, natRemote: sa.natRemote,
			keyed: sa.keys != nil, estAt: sa.estAt, created: sa.created}
		if s.keyed {
			s.suite = sa.suite
		}
		if len(sa.children) > 0 {
			s.children = make([]childSnap, 0, len(sa.children))
		}
		for _, ch := range sa.children {
			s.children = append(s.children, childSnap{id: ch.id, name: ch.cfg.Name, state: ch.state, mode: ch.mode, reqid: ch.reqid,
				inSPI: ch.inSPI, outSPI: ch.outSPI, suite: ch.suite, encap: ch.encap != nil, rekey: ch.rekey,
				localTS: ch.localTS, remoteTS: ch.remoteTS, localAddr: ch.localAddr, remoteAddr: ch.remoteAddr,
				estAt: ch.estAt, in: ch.inID(), out: ch.outID(), offIn: ch.offIn, offOut: ch.offOut})
		}
		out = append(out, s)
	}
	return out
}

// sortedSAs is the IKE SAs oldest first. Runs on the loop.
func (e *Engine) sortedSAs() []*ikeSA { return e.sortedSAsWhere(nil) }

// sortedSAsWhere is sortedSAs of the SAs keep says to keep (nil: all).
// Filtering first sorts only what is kept: the same SAs in the same
// order, without sorting all of them for a few (an IKE_AUTH's
// INITIAL_CONTACT sorted every SA: quadratic over a bring-up).
func (e *Engine) sortedSAsWhere(keep func(*ikeSA) bool) []*ikeSA {
	var out []*ikeSA
	if keep == nil {
		out = make([]*ikeSA, 0, len(e.sas))
	}
	for _, sa := range e.sas {
		if keep == nil || keep(sa) {
			out = append(out, sa)
		}
	}
	slices.SortStableFunc(out, func(a, b *ikeSA) int { return a.created.Compare(b.created) })
	return out
}

// childUsage reads the counters of the installed children's SAs in one
// bulk pass (the dataplane's UsageReader, else its SA dump), keeping
// only theirs. Runs outside the loop.
func (e *Engine) childUsage(ctx context.Context, snap []saSnap) (map[kernelops.SAID]kernelops.Usage, error) {
	want := map[kernelops.SAID]kernelops.Usage{}
	for i := range snap {
		for _, ch := range snap[i].children {
			if ch.state == childInstalled {
				want[ch.in], want[ch.out] = kernelops.Usage{}, kernelops.Usage{}
			}
		}
	}
	if len(want) == 0 {
		return want, nil
	}
	found := make(map[kernelops.SAID]kernelops.Usage, len(want))
	var read iter.Seq2[kernelops.Usage, error]
	if e.usage != nil {
		read = e.usage.Usage(ctx)
	} else {
		read = kernelops.ReadUsage(ctx, e.b)
	}
	for u, err := range read {
		if err != nil {
			return nil, err
		}
		if _, ok := want[u.ID]; ok {
			found[u.ID] = u
		}
	}
	return found, nil
}

func (s *saSnap) info(usage map[kernelops.SAID]kernelops.Usage, uerr error, tc *textCache) IKESAInfo {
	role := "responder"
	if s.initiator {
		role = "initiator"
	}
	info := IKESAInfo{ID: s.id, Name: s.name, State: s.state, Role: role,
		SPIi: hexSPI(s.spii, 16), SPIr: hexSPI(s.spir, 16),
		Local: s.local.String(), Remote: s.remote.String(), NATLocal: s.natLocal, NATRemote: s.natRemote,
		Established: s.estAt, Children: make([]ChildInfo, 0, len(s.children))}
	if s.keyed {
		info.Suite = tc.ikeSuite(s.suite)
	}
	for i := range s.children {
		info.Children = append(info.Children, s.children[i].info(s.name, s.id, usage, uerr, tc))
	}
	return info
}

func (ch *childSnap) info(ike string, ikeID uint32, usage map[kernelops.SAID]kernelops.Usage, uerr error, tc *textCache) ChildInfo {
	ci := ChildInfo{ID: ch.id, Name: ch.name, IKE: ike, IKEID: ikeID, State: ch.state.public(), Mode: ch.mode.String(), ReqID: ch.reqid,
		SPIIn: hexSPI(uint64(ch.inSPI), 8), SPIOut: hexSPI(uint64(ch.outSPI), 8), Suite: tc.childSuite(ch.suite),
		Encap: ch.encap, Offload: offloadText(ch.offIn, ch.offOut), LocalTS: rangesString(ch.localTS), RemoteTS: rangesString(ch.remoteTS),
		Local: ch.localAddr.String(), Remote: ch.remoteAddr.String(), RekeyNeeded: ch.rekey, Established: ch.estAt}
	if ch.state != childInstalled {
		return ci
	}
	if uerr != nil {
		ci.CounterErr = uerr.Error()
		return ci
	}
	for _, x := range []struct {
		id             kernelops.SAID
		bytes, packets *uint64
	}{{ch.in, &ci.BytesIn, &ci.PacketsIn}, {ch.out, &ci.BytesOut, &ci.PacketsOut}} {
		if u, ok := usage[x.id]; ok {
			*x.bytes, *x.packets = u.Bytes, u.Packets
		} else {
			ci.CounterErr = fmt.Sprintf("SA %s: %v", x.id, kernelops.ErrNotFound)
		}
	}
	return ci
}

// Children lists the installed children of every IKE SA.
func (e *Engine) Children(ctx context.Context) ([]ChildInfo, error) {
	sas, err := e.IKESAs(ctx)
	if err != nil {
		return nil, err
	}
	n := 0
	for _, sa := range sas {
		n += len(sa.Children)
	}
	out := make([]ChildInfo, 0, n)
	for _, sa := range sas {
		out = append(out, sa.Children...)
	}
	return out, nil
}

// Handshakes returns the measured handshake times (IKE_SA_INIT sent to
// first child installed) of the IKE SAs this engine initiated.
func (e *Engine) Handshakes(ctx context.Context) ([]time.Duration, error) {
	var out []time.Duration
	err := e.call(ctx, func() { out = append(out, e.handshakes...) })
	return out, err
}

// Backend returns the dataplane the engine drives.
func (e *Engine) Backend() kernelops.Backend { return e.b }
