//go:build vpp

package vpp

import (
	"context"
	"net/netip"

	"github.com/keyplane/keyplane/kernelops"
	"go.fd.io/govpp/binapi/interface_types"
	"go.fd.io/govpp/binapi/ipsec"
	"go.fd.io/govpp/binapi/tunnel_types"
)

// Migrate moves SAs to new outer addresses (MOBIKE) with
// ipsec_sad_entry_update: tunnel endpoints and UDP ports change in place,
// keys, counters and sequence numbers stay. VPP cannot switch UDP
// encapsulation on or off for an installed SA.
func (b *driver) Migrate(ctx context.Context, m kernelops.Migration) error {
	for _, ep := range []kernelops.Endpoints{m.Old, m.New} {
		if !ep.Local.IsValid() || !ep.Remote.IsValid() || ep.Local.Is4() != ep.Remote.Is4() {
			return kernelops.Invalid("", "", "", "New", "endpoints %s -> %s", ep.Local, ep.Remote)
		}
	}
	s, err := b.lockSession(ctx)
	if err != nil {
		return wrap("", err, nil)
	}
	defer b.mu.Unlock()
	recs := make([]*saRec, 0, len(m.SAs))
	for _, id := range m.SAs {
		r := b.sas[id]
		if r == nil {
			return &kernelops.Error{Object: id.String(), Err: kernelops.ErrNotFound}
		}
		if (r.sa.Encap == nil) != (m.Encap == nil) {
			return notSupported(id.String(), "Encap", "VPP cannot switch UDP encapsulation of an installed SA on or off")
		}
		newID := moved(r.sa.ID, m)
		if x := b.sas[newID]; x != nil && x != r {
			return &kernelops.Error{Object: newID.String(), Err: kernelops.ErrExists}
		}
		recs = append(recs, r)
	}
	for _, r := range recs {
		newID := moved(r.sa.ID, m)
		upd := &ipsec.IpsecSadEntryUpdate{SadID: r.sadID, UDPSrcPort: 0xffff, UDPDstPort: 0xffff}
		if r.sa.Mode == kernelops.ModeTunnel {
			upd.IsTun = true
			upd.Tunnel = tunnel_types.Tunnel{Instance: ^uint32(0), Src: toAddr(newID.Src), Dst: toAddr(newID.Dst),
				SwIfIndex: interface_types.InterfaceIndex(^uint32(0))}
		}
		if m.Encap != nil {
			upd.UDPSrcPort, upd.UDPDstPort = m.Encap.SrcPort, m.Encap.DstPort
			if newID.Src == m.New.Remote { // inbound: the peer's port is the source
				upd.UDPSrcPort, upd.UDPDstPort = m.Encap.DstPort, m.Encap.SrcPort
			}
		}
		if err := b.check(s, s.invoke(ctx, upd, &ipsec.IpsecSadEntryUpdateReply{})); err != nil {
			return wrap(r.sa.ID.String(), err, nil)
		}
		delete(b.sas, r.sa.ID)
		r.sa.ID = newID
		if m.Encap != nil {
			e := *m.Encap
			if newID.Src == m.New.Remote {
				e.SrcPort, e.DstPort = e.DstPort, e.SrcPort
			}
			r.sa.Encap = &e
		}
		b.sas[newID] = r
	}
	for _, pid := range m.Policies {
		pr := b.pols[pid]
		if pr == nil {
			return &kernelops.Error{Object: pid.String(), Err: kernelops.ErrNotFound}
		}
		n := pr.p.Clone()
		for i := range n.Templates {
			t := &n.Templates[i]
			t.Src, t.Dst = movedAddr(t.Src, m), movedAddr(t.Dst, m)
		}
		want := b.wantEntries(n)
		if err := b.applyEntries(ctx, s, pr.entries, want); err != nil {
			return wrap(pid.String(), err, spdOverride)
		}
		pr.p, pr.entries = n, want
	}
	return nil
}

func moved(id kernelops.SAID, m kernelops.Migration) kernelops.SAID {
	id.Src, id.Dst = movedAddr(id.Src, m), movedAddr(id.Dst, m)
	return id
}

func movedAddr(a netip.Addr, m kernelops.Migration) netip.Addr {
	switch {
	case !a.IsValid():
		return a
	case a == m.Old.Local:
		return m.New.Local
	case a == m.Old.Remote:
		return m.New.Remote
	}
	return a
}
