package ike

import (
	"errors"
	"fmt"
	"net/netip"

	"github.com/keyplane/keyplane/ike/config"
	"github.com/keyplane/keyplane/ike/message"
	"github.com/keyplane/keyplane/kernelops"
)

// Virtual IPs, the initiator's side (RFC 7296 §3.15): a connection with
// vips asks for an address per family in IKE_AUTH (CFG_REQUEST), adds
// what the peer assigns to the interface that carries the route to the
// peer (AddrManager, reference-counted by the dataplane handle) and uses
// it for the children's dynamic local selectors. The address moves with
// an IKE rekey and goes with the last IKE SA holding it.

// ErrNoVirtualIP: the peer answered a request for virtual IPs without
// any address.
var ErrNoVirtualIP = errors.New("the peer assigned no virtual IP")

// vipState is an IKE SA's virtual IPs: as initiator the addresses asked
// and those assigned and installed; as responder the pool leases given.
// An IKE SA has one (ikeSA.vips) only with virtual IPs or pool leases.
type vipState struct {
	asked  []netip.Addr
	addrs  []netip.Addr
	ifname string
	dns    []netip.Addr
	leases []*lease
}

// vipRequest is the CP payload of our IKE_AUTH request (none without
// vips): an address of each family asked for (a concrete one as a hint)
// and the DNS servers of that family.
func (sa *ikeSA) vipRequest() []message.Payload {
	if sa.conn == nil || len(sa.conn.VIPs) == 0 {
		return nil
	}
	made(&sa.vips).asked = sa.conn.VIPs
	cp := &message.CP{CFGType: message.CFGRequest}
	for _, v := range sa.conn.VIPs {
		if v.Is4() {
			cp.Attrs = append(cp.Attrs, message.CFGAddr(message.InternalIP4Address, v), message.CFGAttr{Type: message.InternalIP4DNS})
		} else {
			cp.Attrs = append(cp.Attrs, message.CFGAddr(message.InternalIP6Address, v), message.CFGAttr{Type: message.InternalIP6DNS})
		}
	}
	return []message.Payload{cp}
}

// localRanges are a child's local selectors: the configured ones, with
// dynamic standing for the virtual IPs when the connection asks for
// them — the whole family while the request is out (the responder
// narrows it to the address it assigns), the assigned addresses after.
func (sa *ikeSA) localRanges(cfg *config.Child, addr netip.Addr) []tsRange {
	if len(orZero(sa.vips).asked) == 0 {
		return configRanges(cfg.LocalTS, addr)
	}
	dyn := orZero(sa.vips).addrs
	if len(dyn) == 0 {
		for _, v := range orZero(sa.vips).asked {
			if v.Is4() {
				dyn = append(dyn, netip.IPv4Unspecified())
			} else {
				dyn = append(dyn, netip.IPv6Unspecified())
			}
		}
	}
	return dynRanges(cfg.LocalTS, dyn)
}

// dynRanges resolves configured selectors with dynamic standing for each
// of addrs; an unspecified address stands for its whole family.
func dynRanges(ts []config.TS, addrs []netip.Addr) []tsRange {
	var out []tsRange
	for _, t := range ts {
		if !t.Dynamic {
			out = append(out, fromConfigTS(t, netip.Addr{}))
			continue
		}
		for _, a := range addrs {
			if a.IsUnspecified() {
				out = append(out, fromConfigTS(config.TS{Prefix: netip.PrefixFrom(a, 0), Proto: t.Proto, Port: t.Port}, a))
				continue
			}
			out = append(out, fromConfigTS(t, a))
		}
	}
	return out
}

// cpAnswer reads the addresses and DNS servers of a CFG_REPLY.
func cpAnswer(cp *message.CP) (addrs, dns []netip.Addr) {
	fams := map[bool]bool{}
	for _, a := range cp.Attrs {
		v, err := a.Addr()
		if err != nil || len(a.Value) == 0 || v.IsUnspecified() {
			continue
		}
		switch a.Type {
		case message.InternalIP4Address, message.InternalIP6Address:
			if !fams[v.Is4()] { // one per family: the first
				fams[v.Is4()] = true
				addrs = append(addrs, v)
			}
		case message.InternalIP4DNS, message.InternalIP6DNS:
			dns = append(dns, v)
		}
	}
	return addrs, dns
}

// takeVIPs is the initiator's end of the configuration exchange: the
// reply's addresses installed, or why not (the IKE SA cannot carry its
// children without them).
func (sa *ikeSA) takeVIPs(m *message.Message) error {
	if len(orZero(sa.vips).asked) == 0 {
		return nil
	}
	cp, _ := m.Find(message.PayloadCP).(*message.CP)
	if cp == nil || cp.CFGType != message.CFGReply {
		return fmt.Errorf("asked for virtual IPs %v, the IKE_AUTH response has no CFG_REPLY: %w", orZero(sa.vips).asked, ErrNoVirtualIP)
	}
	addrs, dns := cpAnswer(cp)
	if len(addrs) == 0 {
		return fmt.Errorf("asked for virtual IPs %v, the CFG_REPLY (%v) holds no address: %w", orZero(sa.vips).asked, cp, ErrNoVirtualIP)
	}
	for _, v := range orZero(sa.vips).asked {
		got := false
		for _, a := range addrs {
			got = got || a.Is4() == v.Is4()
		}
		if !got {
			sa.logger().Warn("the peer assigned no virtual IP of a family asked for", "asked", v.String(), "assigned", fmt.Sprint(addrs))
		}
	}
	ifname, err := sa.e.addVIPs(sa.remote.Addr(), addrs)
	if err != nil {
		return err
	}
	v := made(&sa.vips)
	v.addrs, v.ifname, v.dns = addrs, ifname, dns
	sa.logger().Info("virtual IP installed", "vips", fmt.Sprint(addrs), "interface", ifname, "dns", fmt.Sprint(dns))
	return nil
}

// addVIPs adds addrs (host prefixes) to the interface of the route to
// remote, all or none; it returns the interface.
func (e *Engine) addVIPs(remote netip.Addr, addrs []netip.Addr) (string, error) {
	am, err := kernelops.As[kernelops.AddrManager](e.b)
	if err != nil {
		return "", fmt.Errorf("virtual IP: %w: %w", ErrFacetMissing, err)
	}
	as, err := kernelops.As[kernelops.AddrSelector](e.b)
	if err != nil {
		return "", fmt.Errorf("virtual IP needs the route to the peer: %w: %w", ErrFacetMissing, err)
	}
	r, err := as.RouteTo(e.ctx, remote)
	if err != nil {
		return "", fmt.Errorf("virtual IP: no route to the peer %s: %w", remote, err)
	}
	for i, a := range addrs {
		if err := am.AddAddress(e.ctx, r.IfName, netip.PrefixFrom(a, a.BitLen())); err != nil {
			e.removeVIPs(r.IfName, addrs[:i])
			return "", fmt.Errorf("add virtual IP %s to %s: %w", a, r.IfName, err)
		}
	}
	return r.IfName, nil
}

// removeVIPs drops our references on addrs (the dataplane handle removes
// an address with the last).
func (e *Engine) removeVIPs(ifname string, addrs []netip.Addr) {
	am, err := kernelops.As[kernelops.AddrManager](e.b)
	if err != nil {
		return
	}
	for _, a := range addrs {
		if err := am.RemoveAddress(e.ctx, ifname, netip.PrefixFrom(a, a.BitLen())); err != nil {
			e.log.Warn("remove virtual IP failed", "vip", a.String(), "interface", ifname, "err", err)
		}
	}
}

// releaseVIPs gives back what the IKE SA holds: its installed virtual
// IPs, its pool leases. An IKE rekey moved them to the successor first.
func (sa *ikeSA) releaseVIPs() {
	v := sa.vips
	sa.vips = nil
	if v == nil {
		return
	}
	if len(v.addrs) > 0 {
		sa.e.removeVIPs(v.ifname, v.addrs)
		sa.logger().Info("virtual IP released", "vips", fmt.Sprint(v.addrs), "interface", v.ifname)
	}
	for _, l := range v.leases {
		l.pool.release(l, sa.e.clk.Now())
		sa.logger().Info("pool lease offline", "pool", l.pool.cfg.Name, "vip", l.addr.String(), "identity", l.id)
	}
}

// checkVIPFacets: vips need the dataplane to add addresses and find the
// route to the peer.
func (e *Engine) checkVIPFacets(cfg *config.Config) []error {
	var errs []error
	for _, c := range cfg.Connections {
		if len(c.VIPs) == 0 {
			continue
		}
		if _, err := kernelops.As[kernelops.AddrManager](e.b); err != nil {
			errs = append(errs, fmt.Errorf("connection %s: vips = %v: %w: %w", c.Name, c.VIPs, ErrFacetMissing, err))
		}
		if _, err := kernelops.As[kernelops.AddrSelector](e.b); err != nil {
			errs = append(errs, fmt.Errorf("connection %s: vips = %v needs the route to the peer to find the interface: %w: %w", c.Name, c.VIPs, ErrFacetMissing, err))
		}
	}
	return errs
}
