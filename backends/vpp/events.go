//go:build vpp

package vpp

import (
	"net/netip"

	"github.com/keyplane/keyplane/kernelops"
	"go.fd.io/govpp/binapi/interface"
)

// watchInterfaces registers for sw_interface_event on s and turns them
// into LinkEvents until the session ends.
func (b *driver) watchInterfaces(s *session) {
	w, err := s.conn.WatchEvent(s.evCtx, &interfaces.SwInterfaceEvent{})
	if err != nil {
		b.log.Warn("cannot watch VPP interface events", "err", err)
		return
	}
	s.wg.Add(1)
	go func() {
		defer s.wg.Done()
		for m := range w.Events() {
			ev, ok := m.(*interfaces.SwInterfaceEvent)
			if !ok {
				continue
			}
			idx := uint32(ev.SwIfIndex)
			b.mu.Lock()
			name, known := b.ifNames[idx]
			b.mu.Unlock()
			if !known && !ev.Deleted {
				if ifs, err := b.dumpInterfaces(s.evCtx, s); err == nil {
					b.mu.Lock()
					for _, i := range ifs {
						b.ifNames[i.index] = i.name
					}
					name = b.ifNames[idx]
					b.mu.Unlock()
				}
			}
			b.env.Publish(&kernelops.LinkEvent{IfIndex: int(idx), IfName: name, Up: ifUp(ev.Flags), Deleted: ev.Deleted})
		}
	}()
	reply := &interfaces.WantInterfaceEventsReply{}
	if err := s.invoke(s.evCtx, &interfaces.WantInterfaceEvents{EnableDisable: 1, PID: pid}, reply); err != nil {
		b.log.Warn("VPP refused interface events", "err", err)
	}
}

type addrKey struct {
	ifIndex uint32
	p       netip.Prefix
}

// pollAddresses reads every interface's addresses and publishes what
// changed since the previous poll (the first poll sets the baseline).
func (b *driver) pollAddresses() {
	b.mu.Lock()
	s := b.sess
	b.mu.Unlock()
	if s == nil {
		return
	}
	ctx := s.evCtx
	ifs, err := b.dumpInterfaces(ctx, s)
	if err != nil {
		return
	}
	now := map[addrKey]bool{}
	names := map[uint32]string{}
	for _, i := range ifs {
		names[i.index] = i.name
		addrs, err := b.dumpAddrs(ctx, s, i.index)
		if err != nil {
			return
		}
		for _, p := range addrs {
			now[addrKey{i.index, p}] = true
		}
	}
	b.mu.Lock()
	old := b.addrSeen
	b.addrSeen = now
	for i, n := range names {
		b.ifNames[i] = n
	}
	b.mu.Unlock()
	if old == nil {
		return
	}
	for k := range now {
		if !old[k] {
			b.env.Publish(&kernelops.AddrEvent{Added: true, IfIndex: int(k.ifIndex), IfName: names[k.ifIndex], Prefix: k.p})
		}
	}
	for k := range old {
		if !now[k] {
			b.env.Publish(&kernelops.AddrEvent{Added: false, IfIndex: int(k.ifIndex), IfName: names[k.ifIndex], Prefix: k.p})
		}
	}
}
