package nokernel

import (
	"cmp"
	"context"
	"errors"
	"fmt"
	"net/netip"
	"slices"
	"strings"
	"sync"
	"syscall"

	"github.com/keyplane/keyplane/kernelops"
)

// Net is the model's simulated network: interfaces with addresses and
// link state, routes, and what each device can offload. Its methods are
// what the world outside keyplane does (an administrator's `ip addr add`,
// a cable pulled); each raises the AddrEvent, LinkEvent or RouteEvent a
// kernel would. A fresh model has "lo" (index 1, up) with 127.0.0.1/8 and
// ::1/128.
type Net struct {
	b       *model
	mu      sync.Mutex
	ifs     map[string]*iface
	nextIdx int
	routes  []Route
}

type iface struct {
	index   int
	name    string
	up      bool
	addrs   []netip.Prefix
	offload kernelops.OffloadSupport
	xfrm    *kernelops.XfrmInterface // set for xfrm interfaces
}

// Route is a simulated route. Src, when set, is the preferred source
// address; Gateway, when set, the next hop.
type Route struct {
	Dst     netip.Prefix
	Gateway netip.Addr
	Src     netip.Addr
	IfName  string
}

// mainTable is the routing table number routes are reported in.
const mainTable = 254

func newNet(b *model) *Net {
	n := &Net{b: b, ifs: map[string]*iface{}, nextIdx: 1}
	n.ifs["lo"] = &iface{index: 1, name: "lo", up: true,
		addrs: []netip.Prefix{netip.MustParsePrefix("127.0.0.1/8"), netip.MustParsePrefix("::1/128")}}
	n.nextIdx = 2
	return n
}

// Net returns the model's simulated network.
func (b *model) Net() *Net { return b.net }

func netErr(op, obj string, sentinel error, errno syscall.Errno, format string, args ...any) error {
	return &kernelops.Error{Backend: Name, Op: op, Object: obj, Err: sentinel, Errno: errno, Detail: fmt.Sprintf(format, args...)}
}

func (n *Net) publish(ev kernelops.Event) { n.b.env.Publish(ev) }

// AddInterface adds an interface, up, with addrs, and returns its index.
func (n *Net) AddInterface(name string, addrs ...netip.Prefix) (int, error) {
	return n.addInterface(name, nil, addrs...)
}

func (n *Net) addInterface(name string, x *kernelops.XfrmInterface, addrs ...netip.Prefix) (int, error) {
	const op = "add interface"
	if name == "" || len(name) > 15 || strings.ContainsAny(name, "/ \t") {
		return 0, kernelops.Invalid(Name, op, name, "name", "interface names are 1-15 characters without '/' or spaces")
	}
	for _, p := range addrs {
		if !p.IsValid() {
			return 0, kernelops.Invalid(Name, op, name, "addrs", "invalid address %s", p)
		}
	}
	n.mu.Lock()
	defer n.mu.Unlock()
	if _, ok := n.ifs[name]; ok {
		return 0, netErr(op, name, kernelops.ErrExists, syscall.EEXIST, "interface exists")
	}
	if x != nil {
		for _, i := range n.ifs {
			if i.xfrm != nil && i.xfrm.IfID == x.IfID {
				return 0, netErr(op, name, kernelops.ErrExists, syscall.EEXIST, "xfrm interface %s has if_id %#x", i.name, x.IfID)
			}
		}
	}
	i := &iface{index: n.nextIdx, name: name, up: true, xfrm: x}
	n.nextIdx++
	n.ifs[name] = i
	n.publish(&kernelops.LinkEvent{IfIndex: i.index, IfName: name, Up: true})
	for _, p := range addrs {
		if !slices.Contains(i.addrs, p) {
			n.addAddrLocked(i, p)
		}
	}
	return i.index, nil
}

// DeleteInterface removes an interface with its addresses and routes.
func (n *Net) DeleteInterface(name string) error {
	n.mu.Lock()
	defer n.mu.Unlock()
	i, err := n.get("delete interface", name)
	if err != nil {
		return err
	}
	if name == "lo" {
		return kernelops.Invalid(Name, "delete interface", name, "name", "lo cannot be deleted")
	}
	n.deleteLocked(i)
	return nil
}

func (n *Net) deleteLocked(i *iface) {
	for len(i.addrs) > 0 {
		n.removeAddrLocked(i, i.addrs[len(i.addrs)-1])
	}
	n.routes = slices.DeleteFunc(n.routes, func(r Route) bool {
		if r.IfName != i.name {
			return false
		}
		n.publish(&kernelops.RouteEvent{Dst: r.Dst, Gateway: r.Gateway, Src: r.Src, IfIndex: i.index, Table: mainTable})
		return true
	})
	delete(n.ifs, i.name)
	n.publish(&kernelops.LinkEvent{IfIndex: i.index, IfName: i.name, Deleted: true})
}

// SetLinkUp raises or drops a link. Routes through a down link are not
// used; addresses stay.
func (n *Net) SetLinkUp(name string, up bool) error {
	n.mu.Lock()
	defer n.mu.Unlock()
	i, err := n.get("set link", name)
	if err != nil {
		return err
	}
	if i.up == up {
		return nil
	}
	i.up = up
	n.publish(&kernelops.LinkEvent{IfIndex: i.index, IfName: name, Up: up})
	return nil
}

// AddAddress puts an address on an interface, as an administrator would:
// no reference counting (that is the AddrManager facet's job).
func (n *Net) AddAddress(name string, p netip.Prefix) error {
	const op = "add address"
	if !p.IsValid() {
		return kernelops.Invalid(Name, op, name, "prefix", "invalid address %s", p)
	}
	n.mu.Lock()
	defer n.mu.Unlock()
	i, err := n.get(op, name)
	if err != nil {
		return err
	}
	if slices.ContainsFunc(i.addrs, func(q netip.Prefix) bool { return q.Addr() == p.Addr() }) {
		return netErr(op, p.String()+" on "+name, kernelops.ErrExists, syscall.EEXIST, "address exists")
	}
	n.addAddrLocked(i, p)
	return nil
}

// RemoveAddress takes an address off an interface.
func (n *Net) RemoveAddress(name string, p netip.Prefix) error {
	const op = "remove address"
	n.mu.Lock()
	defer n.mu.Unlock()
	i, err := n.get(op, name)
	if err != nil {
		return err
	}
	if !slices.Contains(i.addrs, p) {
		return netErr(op, p.String()+" on "+name, kernelops.ErrNotFound, syscall.EADDRNOTAVAIL, "no such address")
	}
	n.removeAddrLocked(i, p)
	return nil
}

// HasAddress reports whether the interface carries the address (with any
// prefix length).
func (n *Net) HasAddress(name string, a netip.Addr) (bool, error) {
	n.mu.Lock()
	defer n.mu.Unlock()
	i, err := n.get("has address", name)
	if err != nil {
		return false, err
	}
	return slices.ContainsFunc(i.addrs, func(q netip.Prefix) bool { return q.Addr() == a }), nil
}

func (n *Net) addAddrLocked(i *iface, p netip.Prefix) {
	i.addrs = append(i.addrs, p)
	n.publish(&kernelops.AddrEvent{Added: true, IfIndex: i.index, IfName: i.name, Prefix: p})
	if p.Bits() < p.Addr().BitLen() {
		n.publish(&kernelops.RouteEvent{Added: true, Dst: p.Masked(), Src: p.Addr(), IfIndex: i.index, Table: mainTable})
	}
}

func (n *Net) removeAddrLocked(i *iface, p netip.Prefix) {
	i.addrs = slices.DeleteFunc(i.addrs, func(q netip.Prefix) bool { return q == p })
	n.publish(&kernelops.AddrEvent{IfIndex: i.index, IfName: i.name, Prefix: p})
	if p.Bits() < p.Addr().BitLen() {
		n.publish(&kernelops.RouteEvent{Dst: p.Masked(), Src: p.Addr(), IfIndex: i.index, Table: mainTable})
	}
}

// AddRoute adds a route through an existing interface.
func (n *Net) AddRoute(r Route) error {
	const op = "add route"
	if !r.Dst.IsValid() || r.Dst.Masked() != r.Dst {
		return kernelops.Invalid(Name, op, r.Dst.String(), "Dst", "want a masked prefix, got %s", r.Dst)
	}
	fam := func(a netip.Addr) bool { return !a.IsValid() || a.Is4() == r.Dst.Addr().Is4() }
	if !fam(r.Gateway) || !fam(r.Src) {
		return kernelops.Invalid(Name, op, r.Dst.String(), "Gateway", "mixed address families")
	}
	n.mu.Lock()
	defer n.mu.Unlock()
	i, err := n.get(op, r.IfName)
	if err != nil {
		return err
	}
	if slices.ContainsFunc(n.routes, func(x Route) bool { return x.Dst == r.Dst && x.IfName == r.IfName }) {
		return netErr(op, r.Dst.String(), kernelops.ErrExists, syscall.EEXIST, "route exists")
	}
	n.routes = append(n.routes, r)
	n.publish(&kernelops.RouteEvent{Added: true, Dst: r.Dst, Gateway: r.Gateway, Src: r.Src, IfIndex: i.index, Table: mainTable})
	return nil
}

// DeleteRoute removes the route to dst through ifname.
func (n *Net) DeleteRoute(dst netip.Prefix, ifname string) error {
	n.mu.Lock()
	defer n.mu.Unlock()
	for k, r := range n.routes {
		if r.Dst == dst && r.IfName == ifname {
			n.routes = slices.Delete(n.routes, k, k+1)
			idx := 0
			if i := n.ifs[ifname]; i != nil {
				idx = i.index
			}
			n.publish(&kernelops.RouteEvent{Dst: r.Dst, Gateway: r.Gateway, Src: r.Src, IfIndex: idx, Table: mainTable})
			return nil
		}
	}
	return netErr("delete route", dst.String(), kernelops.ErrNotFound, syscall.ESRCH, "no route via %s", ifname)
}

// SetOffload declares what a device can offload.
func (n *Net) SetOffload(name string, s kernelops.OffloadSupport) error {
	n.mu.Lock()
	defer n.mu.Unlock()
	i, err := n.get("set offload", name)
	if err != nil {
		return err
	}
	i.offload = s
	return nil
}

func (n *Net) get(op, name string) (*iface, error) {
	if i := n.ifs[name]; i != nil {
		return i, nil
	}
	return nil, netErr(op, name, kernelops.ErrNotFound, syscall.ENODEV, "no such interface")
}

func (n *Net) list() []kernelops.Interface {
	n.mu.Lock()
	defer n.mu.Unlock()
	out := make([]kernelops.Interface, 0, len(n.ifs))
	for _, i := range n.ifs {
		it := kernelops.Interface{Index: i.index, Name: i.name, Up: i.up, Addrs: slices.Clone(i.addrs)}
		if i.xfrm != nil {
			it.XfrmIfID = i.xfrm.IfID
		}
		out = append(out, it)
	}
	slices.SortFunc(out, func(a, b kernelops.Interface) int { return cmp.Compare(a.Index, b.Index) })
	return out
}

// routeTo picks the route Linux would: a local address goes via lo;
// otherwise the longest matching prefix among connected networks and
// routes on up links, connected networks first on a tie.
func (n *Net) routeTo(dst netip.Addr) (kernelops.Route, error) {
	n.mu.Lock()
	defer n.mu.Unlock()
	if lo := n.ifs["lo"]; lo != nil && lo.up {
		for _, i := range n.ifs {
			if i.up && slices.ContainsFunc(i.addrs, func(q netip.Prefix) bool { return q.Addr() == dst }) {
				return kernelops.Route{Src: dst, IfIndex: lo.index, IfName: lo.name}, nil
			}
		}
		for _, q := range lo.addrs {
			if q.Contains(dst) {
				return kernelops.Route{Src: q.Addr(), IfIndex: lo.index, IfName: lo.name}, nil
			}
		}
	}
	var best *kernelops.Route
	bestBits := -1
	for _, i := range n.sortedIfs() {
		if !i.up {
			continue
		}
		for _, q := range i.addrs {
			if q.Contains(dst) && q.Bits() > bestBits {
				bestBits = q.Bits()
				best = &kernelops.Route{Src: q.Addr(), IfIndex: i.index, IfName: i.name}
			}
		}
	}
	for _, r := range n.routes {
		i := n.ifs[r.IfName]
		if i == nil || !i.up || !r.Dst.Contains(dst) || r.Dst.Bits() <= bestBits {
			continue
		}
		src := r.Src
		if !src.IsValid() {
			src = i.sourceFor(r.Gateway, dst)
		}
		if !src.IsValid() {
			continue // no address of the family to send from
		}
		bestBits = r.Dst.Bits()
		best = &kernelops.Route{Src: src, Gateway: r.Gateway, IfIndex: i.index, IfName: i.name}
	}
	if best == nil {
		return kernelops.Route{}, netErr("route to", dst.String(), kernelops.ErrNotFound, syscall.ENETUNREACH, "network unreachable")
	}
	return *best, nil
}

func (n *Net) sortedIfs() []*iface {
	out := make([]*iface, 0, len(n.ifs))
	for _, i := range n.ifs {
		out = append(out, i)
	}
	slices.SortFunc(out, func(a, b *iface) int { return cmp.Compare(a.index, b.index) })
	return out
}

// sourceFor prefers the address whose network holds the gateway (or the
// destination), then the interface's first address of the family.
func (i *iface) sourceFor(gw, dst netip.Addr) netip.Addr {
	var first netip.Addr
	for _, q := range i.addrs {
		if q.Addr().Is4() != dst.Is4() {
			continue
		}
		if (gw.IsValid() && q.Contains(gw)) || q.Contains(dst) {
			return q.Addr()
		}
		if !first.IsValid() {
			first = q.Addr()
		}
	}
	return first
}

// RouteTo returns the source address and interface for dst
// (AddrSelector); no route is ErrNotFound (ENETUNREACH).
func (b *model) RouteTo(ctx context.Context, dst netip.Addr) (kernelops.Route, error) {
	if err := b.checkOpen(); err != nil {
		return kernelops.Route{}, err
	}
	return b.net.routeTo(dst.Unmap())
}

// Interfaces lists the simulated interfaces by index (AddrSelector).
func (b *model) Interfaces(ctx context.Context) ([]kernelops.Interface, error) {
	if err := b.checkOpen(); err != nil {
		return nil, err
	}
	return b.net.list(), nil
}

func (b *model) checkOpen() error {
	b.mu.Lock()
	defer b.mu.Unlock()
	return b.checkLocked()
}

// HasAddress, AssignAddress and UnassignAddress are the driver side of
// AddrManager over the simulated interfaces; the front end counts the
// references.
func (b *model) HasAddress(_ context.Context, ifname string, p netip.Prefix) (bool, error) {
	return b.net.HasAddress(ifname, p.Addr())
}

func (b *model) AssignAddress(_ context.Context, ifname string, p netip.Prefix) error {
	return b.net.AddAddress(ifname, p)
}

func (b *model) UnassignAddress(_ context.Context, ifname string, p netip.Prefix) error {
	return b.net.RemoveAddress(ifname, p)
}

// AddXfrmInterface creates a simulated xfrm interface, up (as IKE daemons
// set it right after creating it). A taken name or if_id is ErrExists; a
// missing underlay is ErrNotFound.
func (b *model) AddXfrmInterface(ctx context.Context, x kernelops.XfrmInterface) error {
	if err := b.checkOpen(); err != nil {
		return err
	}
	if x.Underlay != "" {
		b.net.mu.Lock()
		_, err := b.net.get("", x.Underlay)
		b.net.mu.Unlock()
		if err != nil {
			return err
		}
	}
	xc := x
	_, err := b.net.addInterface(x.Name, &xc)
	if ke := (*kernelops.Error)(nil); errors.As(err, &ke) && ke.Op == "add interface" {
		ke.Op = ""
	}
	return err
}

// DeleteXfrmInterface removes a simulated xfrm interface; a missing one,
// or an interface that is not an xfrm interface, is ErrNotFound.
func (b *model) DeleteXfrmInterface(ctx context.Context, name string) error {
	if err := b.checkOpen(); err != nil {
		return err
	}
	n := b.net
	n.mu.Lock()
	defer n.mu.Unlock()
	i := n.ifs[name]
	if i == nil || i.xfrm == nil {
		return netErr("", name, kernelops.ErrNotFound, syscall.ENODEV, "no such xfrm interface")
	}
	n.deleteLocked(i)
	return nil
}

// OffloadSupport reports what a simulated device can offload.
func (b *model) OffloadSupport(ctx context.Context, ifname string) (kernelops.OffloadSupport, error) {
	if err := b.checkOpen(); err != nil {
		return kernelops.OffloadSupport{}, err
	}
	b.net.mu.Lock()
	defer b.net.mu.Unlock()
	i, err := b.net.get("", ifname)
	if err != nil {
		return kernelops.OffloadSupport{}, err
	}
	s := i.offload
	s.Detail = fmt.Sprintf("simulated device: crypto=%v packet=%v", s.Crypto, s.Packet)
	return s, nil
}

// resolveOffload decides the offload an SA gets: an explicit mode the
// device lacks is refused with an *OffloadError; auto falls back from
// packet to crypto to none.
func (n *Net) resolveOffload(o kernelops.Offload) (kernelops.OffloadMode, error) {
	if o.Mode == kernelops.OffloadNone {
		return kernelops.OffloadNone, nil
	}
	n.mu.Lock()
	i := n.ifs[o.Device]
	var sup kernelops.OffloadSupport
	if i != nil {
		sup = i.offload
	}
	n.mu.Unlock()
	refuse := func(mode kernelops.OffloadMode, reason string) error {
		return &kernelops.Error{Field: "Offload.Mode",
			Err: &kernelops.OffloadError{Device: o.Device, Mode: mode, Reason: reason}, Errno: syscall.EINVAL}
	}
	if i == nil {
		if o.Mode == kernelops.OffloadAuto {
			return kernelops.OffloadNone, nil
		}
		return 0, refuse(o.Mode, "no such device")
	}
	switch o.Mode {
	case kernelops.OffloadCrypto:
		if !sup.Crypto {
			return 0, refuse(o.Mode, "device does not support crypto offload")
		}
		return kernelops.OffloadCrypto, nil
	case kernelops.OffloadPacket:
		if !sup.Packet {
			return 0, refuse(o.Mode, "device does not support packet offload")
		}
		return kernelops.OffloadPacket, nil
	}
	switch { // auto
	case sup.Packet:
		return kernelops.OffloadPacket, nil
	case sup.Crypto:
		return kernelops.OffloadCrypto, nil
	}
	return kernelops.OffloadNone, nil
}

// parseInterfaces reads "eth0=192.0.2.1/24+2001:db8::1/64;eth1=...".
func (n *Net) parseInterfaces(v string) error {
	for _, item := range splitList(v) {
		name, addrs, _ := strings.Cut(item, "=")
		var ps []netip.Prefix
		for _, a := range strings.FieldsFunc(addrs, func(r rune) bool { return r == '+' || r == ',' }) {
			p, err := netip.ParsePrefix(strings.TrimSpace(a))
			if err != nil {
				return kernelops.Invalid(Name, "open", "", "Params.interfaces", "%q: %v", item, err)
			}
			ps = append(ps, p)
		}
		if _, err := n.AddInterface(strings.TrimSpace(name), ps...); err != nil {
			return kernelops.Invalid(Name, "open", "", "Params.interfaces", "%q: %v", item, err)
		}
	}
	return nil
}

// parseRoutes reads "0.0.0.0/0 via 192.0.2.254 dev eth0 [src A]; ...".
func (n *Net) parseRoutes(v string) error {
	for _, item := range splitList(v) {
		f := strings.Fields(item)
		bad := func(why string) error {
			return kernelops.Invalid(Name, "open", "", "Params.routes", "%q: %s (want PREFIX [via GW] dev NAME [src ADDR])", item, why)
		}
		if len(f) == 0 || len(f)%2 == 0 {
			return bad("odd words")
		}
		dst, err := netip.ParsePrefix(f[0])
		if err != nil {
			return bad(err.Error())
		}
		r := Route{Dst: dst}
		for k := 1; k < len(f); k += 2 {
			switch f[k] {
			case "via":
				r.Gateway, err = netip.ParseAddr(f[k+1])
			case "src":
				r.Src, err = netip.ParseAddr(f[k+1])
			case "dev":
				r.IfName = f[k+1]
			default:
				return bad("unknown word " + f[k])
			}
			if err != nil {
				return bad(err.Error())
			}
		}
		if err := n.AddRoute(r); err != nil {
			return bad(err.Error())
		}
	}
	return nil
}

// parseOffload reads "eth0=crypto+packet;eth1=crypto".
func (n *Net) parseOffload(v string) error {
	for _, item := range splitList(v) {
		name, modes, _ := strings.Cut(item, "=")
		var s kernelops.OffloadSupport
		for _, m := range strings.FieldsFunc(modes, func(r rune) bool { return r == '+' || r == ',' }) {
			switch strings.TrimSpace(m) {
			case "crypto":
				s.Crypto = true
			case "packet":
				s.Packet = true
			case "none", "no":
			default:
				return kernelops.Invalid(Name, "open", "", "Params.offload", "%q: mode %q: want crypto or packet", item, m)
			}
		}
		if err := n.SetOffload(strings.TrimSpace(name), s); err != nil {
			return kernelops.Invalid(Name, "open", "", "Params.offload", "%q: %v", item, err)
		}
	}
	return nil
}

func splitList(v string) []string {
	var out []string
	for _, s := range strings.Split(v, ";") {
		if s = strings.TrimSpace(s); s != "" {
			out = append(out, s)
		}
	}
	return out
}
