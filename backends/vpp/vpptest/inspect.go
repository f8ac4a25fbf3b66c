//go:build vpp

package vpptest

import (
	"errors"
	"fmt"
	"net/netip"

	interfaces "go.fd.io/govpp/binapi/interface"
	"go.fd.io/govpp/binapi/interface_types"
	"go.fd.io/govpp/binapi/ipsec_types"
)

// ErrStopped is returned by the inspection calls while the server is down.
var ErrStopped = errors.New("vpptest: server stopped")

// SA is the fake VPP's view of one SA.
type SA struct {
	Entry     ipsec_types.IpsecSadEntryV4 // as added (window made effective)
	StatIndex uint32
	Locks     int
	Packets   uint64
	Bytes     uint64
}

// SAs lists the SAs VPP holds, by sad_id.
func (s *Server) SAs() (map[uint32]SA, error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.st == nil {
		return nil, ErrStopped
	}
	out := make(map[uint32]SA, len(s.st.sas))
	for id, x := range s.st.sas {
		v := SA{Entry: x.e, StatIndex: x.statIndex, Locks: x.locks}
		if s.st.seg != nil {
			v.Packets, v.Bytes = s.st.seg.read(x.statIndex)
		}
		out[id] = v
	}
	return out, nil
}

// SPDEntries lists an SPD's entries in VPP's (priority) order.
func (s *Server) SPDEntries(spdID uint32) ([]ipsec_types.IpsecSpdEntryV2, error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.st == nil {
		return nil, ErrStopped
	}
	p := s.st.spdByID(spdID)
	if p == nil {
		return nil, fmt.Errorf("vpptest: no SPD %d", spdID)
	}
	return append([]ipsec_types.IpsecSpdEntryV2(nil), p.entries...), nil
}

// BoundSPD reports the SPD bound to an interface.
func (s *Server) BoundSPD(ifname string) (uint32, bool) {
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.st == nil {
		return 0, false
	}
	i := s.st.ifByName(ifname)
	if i == nil {
		return 0, false
	}
	id, ok := s.st.ifSPD[i.index]
	return id, ok
}

// Addresses lists an interface's addresses.
func (s *Server) Addresses(ifname string) ([]netip.Prefix, error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.st == nil {
		return nil, ErrStopped
	}
	i := s.st.ifByName(ifname)
	if i == nil {
		return nil, fmt.Errorf("vpptest: no interface %q", ifname)
	}
	return append([]netip.Prefix(nil), i.addrs...), nil
}

// AddAddress puts an address on an interface behind the client's back,
// as an operator's vppctl would.
func (s *Server) AddAddress(ifname string, p netip.Prefix) error {
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.st == nil {
		return ErrStopped
	}
	i := s.st.ifByName(ifname)
	if i == nil {
		return fmt.Errorf("vpptest: no interface %q", ifname)
	}
	i.addrs = append(i.addrs, p)
	return nil
}

// SetLink changes an interface's state and sends sw_interface_event to
// every client that asked for interface events.
func (s *Server) SetLink(ifname string, up bool) error {
	s.mu.Lock()
	if s.st == nil {
		s.mu.Unlock()
		return ErrStopped
	}
	i := s.st.ifByName(ifname)
	if i == nil {
		s.mu.Unlock()
		return fmt.Errorf("vpptest: no interface %q", ifname)
	}
	i.up = up
	var to []*conn
	for c := range s.st.eventClients {
		to = append(to, c)
	}
	ev := &interfaces.SwInterfaceEvent{SwIfIndex: interface_types.InterfaceIndex(i.index), Flags: ifFlags(up)}
	s.mu.Unlock()
	for _, c := range to {
		e := *ev
		e.PID = 0
		c.send(c.index, &e)
	}
	return nil
}

// AdvanceSA moves an SA's counters, as traffic through VPP would.
func (s *Server) AdvanceSA(sadID uint32, packets, bytes uint64) error {
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.st == nil {
		return ErrStopped
	}
	x := s.st.sas[sadID]
	if x == nil {
		return fmt.Errorf("vpptest: no SA %d", sadID)
	}
	if s.st.seg == nil {
		return errors.New("vpptest: no stats segment")
	}
	s.st.seg.add(x.statIndex, packets, bytes)
	return nil
}

// Outcome is what VPP's outbound path did with a packet.
type Outcome int

const (
	NoSPD     Outcome = iota // the egress interface has no SPD (or no route)
	NoMatch                  // no entry matched: VPP drops
	Bypassed                 // a BYPASS entry matched
	Discarded                // a DISCARD entry matched
	Protected                // a PROTECT entry matched; its SA's counters moved
)

func (o Outcome) String() string {
	return [...]string{"no-spd", "no-match", "bypassed", "discarded", "protected"}[o]
}

// Send pushes packets of size bytes from src to dst through VPP's
// outbound IPsec path: the FIB picks the egress interface, the SPD bound
// to it is searched as ipsec_output_policy_match does, and a PROTECT
// match moves its SA's stats-segment counters (bytes are the inner
// packets' length, as esp_encrypt counts them). Nothing is encrypted.
func (s *Server) Send(src, dst netip.Addr, proto uint8, sport, dport uint16, packets, size int) (Outcome, error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.st == nil {
		return NoSPD, ErrStopped
	}
	r, ok := s.st.lookup(dst)
	if !ok {
		return NoSPD, nil
	}
	id, ok := s.st.ifSPD[r.ifIndex]
	if !ok {
		return NoSPD, nil
	}
	p := s.st.spdByID(id)
	e, ok := p.outboundMatch(src, dst, proto, sport, dport)
	if !ok {
		return NoMatch, nil
	}
	switch e.Policy {
	case ipsec_types.IPSEC_API_SPD_ACTION_BYPASS:
		return Bypassed, nil
	case ipsec_types.IPSEC_API_SPD_ACTION_PROTECT:
		x := s.st.sas[e.SaID]
		if x != nil && s.st.seg != nil {
			s.st.seg.add(x.statIndex, uint64(packets), uint64(packets)*uint64(size))
		}
		return Protected, nil
	}
	return Discarded, nil
}
