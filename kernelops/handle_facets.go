package kernelops

import (
	"context"
	"net/netip"
	"time"
)

// The other facets through the front end.

// Subscribe implements EventSource from the Handle's bus; the driver's
// event sources start with the first subscriber (EventStarter).
func (h *Handle) Subscribe(ctx context.Context, opts SubscribeOptions) (Subscription, error) {
	const op = "subscribe"
	if err := h.enter(ctx, op, CapEvents, h.d != nil); err != nil {
		return nil, err
	}
	if err := h.startEvents(ctx); err != nil {
		return nil, h.wrap(op, "", err)
	}
	sub, err := h.bus.Subscribe(ctx, opts)
	return sub, h.wrap(op, "", err)
}

func (h *Handle) startEvents(ctx context.Context) error {
	st, ok := h.d.(EventStarter)
	if !ok {
		return nil
	}
	h.evMu.Lock()
	defer h.evMu.Unlock()
	if h.evStarted {
		return nil
	}
	if err := st.StartEvents(ctx); err != nil {
		return err
	}
	h.evStarted = true
	return nil
}

// ListenIKE implements Sockets.
func (h *Handle) ListenIKE(ctx context.Context, l IKEListen) (IKEConn, error) {
	const op = "listen IKE"
	if err := h.enter(ctx, op, CapSockets, h.socks != nil); err != nil {
		return nil, err
	}
	if !l.Addr.Addr().IsValid() {
		return nil, Invalid(h.name, op, l.Addr.String(), "Addr", "missing address (use 0.0.0.0 or :: for all)")
	}
	c, err := h.socks.ListenIKE(ctx, l)
	if err != nil {
		return nil, h.wrap(op, l.Addr.String(), err)
	}
	return c, nil
}

// RouteTo implements AddrSelector.
func (h *Handle) RouteTo(ctx context.Context, dst netip.Addr) (Route, error) {
	const op = "route to"
	if err := h.enter(ctx, op, CapAddrSelect, h.sel != nil); err != nil {
		return Route{}, err
	}
	if !dst.IsValid() {
		return Route{}, Invalid(h.name, op, "", "dst", "missing destination address")
	}
	r, err := h.sel.RouteTo(ctx, dst)
	return r, h.wrap(op, dst.String(), err)
}

// Interfaces implements AddrSelector.
func (h *Handle) Interfaces(ctx context.Context) ([]Interface, error) {
	const op = "list interfaces"
	if err := h.enter(ctx, op, CapAddrSelect, h.sel != nil); err != nil {
		return nil, err
	}
	ifs, err := h.sel.Interfaces(ctx)
	return ifs, h.wrap(op, "", err)
}

func (h *Handle) checkAddr(ctx context.Context, op, ifname string, p netip.Prefix) error {
	if err := h.enter(ctx, op, CapAddrManage, h.ifaddrs != nil); err != nil {
		return err
	}
	switch {
	case ifname == "":
		return Invalid(h.name, op, p.String(), "ifname", "missing interface name")
	case !p.IsValid():
		return Invalid(h.name, op, ifname, "prefix", "invalid address %s", p)
	}
	return nil
}

// AddAddress implements AddrManager: a reference on the address, added
// to the interface at the first.
func (h *Handle) AddAddress(ctx context.Context, ifname string, p netip.Prefix) error {
	const op = "add address"
	if err := h.checkAddr(ctx, op, ifname, p); err != nil {
		return err
	}
	return h.wrap(op, p.String()+" on "+ifname, h.addrs.Add(ctx, ifname, p))
}

// RemoveAddress implements AddrManager: it drops a reference, removing
// the address at the last unless it was there before keyplane.
func (h *Handle) RemoveAddress(ctx context.Context, ifname string, p netip.Prefix) error {
	const op = "remove address"
	if err := h.checkAddr(ctx, op, ifname, p); err != nil {
		return err
	}
	return h.wrap(op, p.String()+" on "+ifname, h.addrs.Remove(ctx, ifname, p))
}

// AddXfrmInterface implements XfrmInterfaces.
func (h *Handle) AddXfrmInterface(ctx context.Context, x XfrmInterface) error {
	const op = "add xfrm interface"
	if err := h.enter(ctx, op, CapXfrmInterfaces, h.xfrmi != nil); err != nil {
		return err
	}
	switch {
	case x.Name == "":
		return Invalid(h.name, op, "", "Name", "missing interface name")
	case x.IfID == 0:
		return Invalid(h.name, op, x.Name, "IfID", "if_id 0 is reserved")
	}
	return h.wrap(op, x.Name, h.xfrmi.AddXfrmInterface(ctx, x))
}

// DeleteXfrmInterface implements XfrmInterfaces.
func (h *Handle) DeleteXfrmInterface(ctx context.Context, name string) error {
	const op = "delete xfrm interface"
	if err := h.enter(ctx, op, CapXfrmInterfaces, h.xfrmi != nil); err != nil {
		return err
	}
	if name == "" {
		return Invalid(h.name, op, "", "name", "missing interface name")
	}
	return h.wrap(op, name, h.xfrmi.DeleteXfrmInterface(ctx, name))
}

// OpenHoles implements Holes.
func (h *Handle) OpenHoles(ctx context.Context, set HoleSet) error {
	const op = "open holes"
	if err := h.enter(ctx, op, CapHoles, h.holes != nil); err != nil {
		return err
	}
	for _, p := range set.IKEPorts {
		if p == 0 {
			return Invalid(h.name, op, "", "IKEPorts", "port 0")
		}
	}
	return h.wrap(op, "", h.holes.OpenHoles(ctx, set))
}

// CloseHoles implements Holes.
func (h *Handle) CloseHoles(ctx context.Context) error {
	const op = "close holes"
	if err := h.enter(ctx, op, CapHoles, h.holes != nil); err != nil {
		return err
	}
	return h.wrap(op, "", h.holes.CloseHoles(ctx))
}

// OffloadSupport implements Offloader.
func (h *Handle) OffloadSupport(ctx context.Context, ifname string) (OffloadSupport, error) {
	const op = "offload support"
	if err := h.enter(ctx, op, CapOffload, h.off != nil); err != nil {
		return OffloadSupport{}, err
	}
	if ifname == "" {
		return OffloadSupport{}, Invalid(h.name, op, "", "ifname", "missing interface name")
	}
	s, err := h.off.OffloadSupport(ctx, ifname)
	return s, h.wrap(op, ifname, err)
}

func (h *Handle) checkSync(ctx context.Context, op string, id SAID) error {
	if err := h.enter(ctx, op, CapSync, h.sync != nil); err != nil {
		return err
	}
	return h.caps.CheckSAID(h.name, op, id)
}

// SetSyncThresholds implements Syncer.
func (h *Handle) SetSyncThresholds(ctx context.Context, id SAID, th SyncThresholds) error {
	const op = "set sync thresholds"
	if err := h.checkSync(ctx, op, id); err != nil {
		return err
	}
	if th.Timer < 0 {
		return Invalid(h.name, op, id.String(), "Timer", "negative timer %v", th.Timer)
	}
	return h.wrapSAID(op, id, h.sync.SetSyncThresholds(ctx, id, th))
}

// GetSyncState implements Syncer.
func (h *Handle) GetSyncState(ctx context.Context, id SAID) (SyncState, error) {
	const op = "get sync state"
	if err := h.checkSync(ctx, op, id); err != nil {
		return SyncState{}, err
	}
	st, err := h.sync.GetSyncState(ctx, id)
	return st, h.wrapSAID(op, id, err)
}

// SetSyncState implements Syncer.
func (h *Handle) SetSyncState(ctx context.Context, id SAID, st SyncState) error {
	const op = "set sync state"
	if err := h.checkSync(ctx, op, id); err != nil {
		return err
	}
	return h.wrapSAID(op, id, h.sync.SetSyncState(ctx, id, st))
}

// WatchIdle implements IdleWatcher with the Handle's detector: one bulk
// usage read per Options.IdleScanInterval while anything is watched. A
// threshold of 0 stops watching the SA.
func (h *Handle) WatchIdle(ctx context.Context, id SAID, threshold time.Duration) error {
	const op = "watch idle"
	if err := h.enter(ctx, op, CapIdle, h.idle != nil); err != nil {
		return err
	}
	if err := h.caps.CheckSAID(h.name, op, id); err != nil {
		return err
	}
	if threshold < 0 {
		return Invalid(h.name, op, id.String(), "threshold", "negative threshold %v", threshold)
	}
	if threshold > 0 {
		e, err := h.sad.GetSA(ctx, id)
		if err != nil {
			return h.wrap(op, id.String(), err)
		}
		if e == nil || e.State == SALarval {
			return &Error{Backend: h.name, Op: op, Object: id.String(), Err: ErrNotFound,
				Detail: "the SA is only reserved (AllocSPI)"}
		}
	}
	h.idle.Watch(id, threshold)
	return nil
}

// Migrate implements Migrator; idle detection follows the moved SAs.
func (h *Handle) Migrate(ctx context.Context, m Migration) error {
	const op = "migrate"
	if err := h.enter(ctx, op, CapMigrate, h.mig != nil); err != nil {
		return err
	}
	if err := ValidateMigration(h.name, op, m); err != nil {
		return err
	}
	h.lockLife()
	defer h.unlockLife()
	err := h.mig.Migrate(ctx, m)
	if err == nil {
		for _, id := range m.SAs {
			nid := MovedID(m, id)
			if h.idle != nil {
				h.idle.Move(id, nid)
			}
			if h.swLife {
				h.life.Move(id, nid)
			}
			if h.spis != nil {
				h.spis.moved(id, nid)
			}
		}
	}
	return h.wrap(op, MigrationObject(m), err)
}

var (
	_ Backend        = (*Handle)(nil)
	_ SAD            = (*Handle)(nil)
	_ SPD            = (*Handle)(nil)
	_ UsageReader    = (*Handle)(nil)
	_ Batcher        = (*Handle)(nil)
	_ EventSource    = (*Handle)(nil)
	_ Sockets        = (*Handle)(nil)
	_ AddrSelector   = (*Handle)(nil)
	_ AddrManager    = (*Handle)(nil)
	_ XfrmInterfaces = (*Handle)(nil)
	_ Holes          = (*Handle)(nil)
	_ Offloader      = (*Handle)(nil)
	_ Syncer         = (*Handle)(nil)
	_ IdleWatcher    = (*Handle)(nil)
	_ Migrator       = (*Handle)(nil)
)
