package ike

import (
	"context"
	"errors"
	"fmt"
	"net/netip"
	"slices"
	"strings"
	"time"

	"github.com/keyplane/keyplane/ike/config"
	"github.com/keyplane/keyplane/ike/message"
)

// Address pools, the responder's side of virtual IPs (RFC 7296 §3.15):
// a peer that asks for an address in IKE_AUTH gets a lease from its
// connection's pools. As charon does, a lease stays with the identity
// after its IKE SAs are gone ("offline") and the same identity gets it
// back; a new identity gets an address never leased, else the oldest
// offline lease. A pool with every address online refuses.

// ErrPoolExhausted: no pool of the connection has an address to lease.
var ErrPoolExhausted = errors.New("no virtual IP left in the pools")

// addrPool is a pool's leases. Loop-owned. Its tables hold at most one
// lease per address (Size), however many identities ask.
type addrPool struct {
	cfg    *config.Pool
	size   int
	next   netip.Addr // the first address never leased
	handed int        // addresses leased at least once
	byID   map[string]*lease
	byAddr map[netip.Addr]*lease
}

// lease is an address given to an identity; online counts the IKE SAs
// holding it.
type lease struct {
	pool   *addrPool
	addr   netip.Addr
	id     string
	online int
	since  time.Time // offline since
}

func newAddrPool(p *config.Pool) *addrPool {
	return &addrPool{cfg: p, size: p.Size(), next: p.First, byID: map[string]*lease{}, byAddr: map[netip.Addr]*lease{}}
}

// acquire leases an address to id: its own lease again if it has one,
// else one never leased, else the oldest offline lease.
func (p *addrPool) acquire(id string) (*lease, bool, error) {
	if l := p.byID[id]; l != nil {
		l.online++
		return l, true, nil
	}
	if p.handed < p.size {
		l := &lease{pool: p, addr: p.next, id: id, online: 1}
		p.next = p.next.Next()
		p.handed++
		p.byID[id], p.byAddr[l.addr] = l, l
		return l, false, nil
	}
	var old *lease
	for _, l := range p.byAddr {
		if l.online == 0 && (old == nil || l.since.Before(old.since) || l.since.Equal(old.since) && l.addr.Less(old.addr)) {
			old = l
		}
	}
	if old == nil {
		return nil, false, fmt.Errorf("pool %s (%s) has all %d addresses online: %w", p.cfg.Name, p.cfg.Addrs, p.size, ErrPoolExhausted)
	}
	delete(p.byID, old.id)
	old.id, old.online = id, 1
	p.byID[id] = old
	return old, false, nil
}

func (p *addrPool) release(l *lease, now time.Time) {
	if l.online > 0 {
		l.online--
		if l.online == 0 {
			l.since = now
		}
	}
}

// applyPools builds the pools of cfg; a pool whose addresses did not
// change keeps its leases (a reload does not hand an address twice).
func (e *Engine) applyPools(cfg *config.Config) {
	old := e.pools
	e.pools = make(map[string]*addrPool, len(cfg.Pools))
	for _, pc := range cfg.Pools {
		if p := old[pc.Name]; p != nil && p.cfg.First == pc.First && p.cfg.Last == pc.Last {
			p.cfg = pc
			e.pools[pc.Name] = p
			continue
		}
		e.pools[pc.Name] = newAddrPool(pc)
	}
}

// assignVIPs answers a peer's CFG_REQUEST of IKE_AUTH on conn: a lease
// per address family asked, from the first of the connection's pools of
// that family with one to give. It returns the CFG_REPLY (nil when the
// peer asked for nothing), or why no address at all could be given;
// a family that got none is logged, as charon does.
func (sa *ikeSA) assignVIPs(m *message.Message, conn *config.Connection, peerID string) (*message.CP, error) {
	req, _ := m.Find(message.PayloadCP).(*message.CP)
	if req == nil || req.CFGType != message.CFGRequest {
		return nil, nil
	}
	type ask struct {
		hint netip.Addr
		dns  bool
	}
	asks := map[bool]*ask{} // by family (true: IPv4)
	for _, a := range req.Attrs {
		v, err := a.Addr()
		if err != nil {
			continue
		}
		switch a.Type {
		case message.InternalIP4Address, message.InternalIP6Address:
			if asks[v.Is4()] == nil {
				asks[v.Is4()] = &ask{hint: v}
			}
		}
	}
	for _, a := range req.Attrs {
		if a.Type == message.InternalIP4DNS || a.Type == message.InternalIP6DNS {
			if k := asks[a.Type == message.InternalIP4DNS]; k != nil {
				k.dns = true
			}
		}
	}
	if len(asks) == 0 {
		return nil, nil
	}
	reply := &message.CP{CFGType: message.CFGReply}
	var why []string
	for _, fam := range []bool{true, false} {
		k := asks[fam]
		if k == nil {
			continue
		}
		var l *lease
		var again bool
		for _, name := range conn.Pools {
			p := sa.e.pools[name]
			if p == nil || p.cfg.First.Is4() != fam {
				continue
			}
			var err error
			if l, again, err = p.acquire(peerID); err != nil {
				why = append(why, err.Error())
				continue
			}
			break
		}
		if l == nil {
			if len(why) == 0 {
				why = append(why, fmt.Sprintf("no pool of connection %s (%s) holds %s addresses", conn.Name, strings.Join(conn.Pools, ", "), famName(fam)))
			}
			sa.logger().Warn("no virtual IP found", "requested", k.hint.String(), "identity", peerID, "reason", strings.Join(why, "; "))
			continue
		}
		v := made(&sa.vips)
		v.leases = append(v.leases, l)
		how := "new lease"
		if again {
			how = "its own lease again"
		}
		sa.logger().Info("assigning virtual IP", "vip", l.addr.String(), "pool", l.pool.cfg.Name, "identity", peerID, "requested", k.hint.String(), "how", how)
		t := message.InternalIP6Address
		if fam {
			t = message.InternalIP4Address
		}
		reply.Attrs = append(reply.Attrs, message.CFGAddr(t, l.addr))
		if k.dns {
			for _, d := range l.pool.cfg.DNS {
				if d.Is4() == fam {
					dt := message.InternalIP6DNS
					if fam {
						dt = message.InternalIP4DNS
					}
					reply.Attrs = append(reply.Attrs, message.CFGAddr(dt, d))
				}
			}
		}
	}
	if len(orZero(sa.vips).leases) == 0 {
		if len(conn.Pools) == 0 {
			why = append(why, "connection "+conn.Name+" has no pools")
		}
		return nil, fmt.Errorf("virtual IP for %s: %s: %w", peerID, strings.Join(why, "; "), ErrPoolExhausted)
	}
	return reply, nil
}

func famName(v4 bool) string {
	if v4 {
		return "IPv4"
	}
	return "IPv6"
}

// leasedAddrs are the addresses the IKE SA leased to the peer (its
// children's dynamic remote selectors); nil without any.
func (sa *ikeSA) leasedAddrs() []netip.Addr {
	var out []netip.Addr
	for _, l := range orZero(sa.vips).leases {
		out = append(out, l.addr)
	}
	return out
}

// PoolInfo is a pool as `keyplane pools list` shows it.
type PoolInfo struct {
	Name    string      `json:"name"`
	Addrs   string      `json:"addrs"`
	First   netip.Addr  `json:"first"`
	Last    netip.Addr  `json:"last"`
	Size    int         `json:"size"`
	Online  int         `json:"online"`
	Offline int         `json:"offline"`
	Leases  []LeaseInfo `json:"leases"`
}

// LeaseInfo is one lease: the identity it belongs to, its address, and
// whether an IKE SA holds it.
type LeaseInfo struct {
	Identity string     `json:"identity"`
	Addr     netip.Addr `json:"addr"`
	Online   bool       `json:"online"`
}

// Pools lists the configured pools and their leases, in the order of the
// configuration, leases by address.
func (e *Engine) Pools(ctx context.Context) ([]PoolInfo, error) {
	var out []PoolInfo
	err := e.call(ctx, func() {
		out = []PoolInfo{}
		for _, pc := range e.cfg.Pools {
			p := e.pools[pc.Name]
			if p == nil {
				continue
			}
			pi := PoolInfo{Name: pc.Name, Addrs: pc.Addrs, First: pc.First, Last: pc.Last, Size: p.size, Leases: []LeaseInfo{}}
			for _, l := range p.byAddr {
				pi.Leases = append(pi.Leases, LeaseInfo{Identity: l.id, Addr: l.addr, Online: l.online > 0})
				if l.online > 0 {
					pi.Online++
				} else {
					pi.Offline++
				}
			}
			slices.SortFunc(pi.Leases, func(a, b LeaseInfo) int { return a.Addr.Compare(b.Addr) })
			out = append(out, pi)
		}
	})
	return out, err
}
