//go:build linux || freebsd || netbsd || darwin

package pfkey

import (
	"context"
	"errors"
	"fmt"
	"net/netip"

	"github.com/keyplane/keyplane/backends/pfkey/sadb"
	"github.com/keyplane/keyplane/kernelops"
)

// Migrate implements kernelops.Migrator with SADB_X_MIGRATE (Linux
// af_key's pfkey_migrate → xfrm_migrate), which moves a policy's
// templates and the SAs that match them to new addresses, keeping keys,
// counters and replay state.
//
// xfrm_migrate moves only SAs named through a policy. An SA of
// m.SAs that no listed policy covers (the inbound SA when only the
// outbound policy is listed) is moved through a temporary inbound policy
// whose selector matches nothing real (protocol 254, RFC 3692's
// experimental number), removed again afterwards.
//
// PF_KEY passes no encapsulation to xfrm_migrate: SAs keep their NAT-T
// ports, so a migration that would change them is refused.
func (b *driver) Migrate(ctx context.Context, m kernelops.Migration) error {
	obj := fmt.Sprintf("reqid %#x %s->%s", m.ReqID, m.Old.Local, m.New.Local)
	bad := func(field, format string, args ...any) error {
		return kernelops.Invalid("", "", obj, field, format, args...)
	}
	for _, e := range []struct {
		name string
		ep   kernelops.Endpoints
	}{{"Old", m.Old}, {"New", m.New}} {
		if !e.ep.Local.IsValid() || !e.ep.Remote.IsValid() || e.ep.Local.Is4() != e.ep.Remote.Is4() {
			return bad(e.name, "endpoints %s, %s: want two addresses of one family", e.ep.Local, e.ep.Remote)
		}
	}
	if len(m.SAs) == 0 && len(m.Policies) == 0 {
		return bad("SAs", "nothing to migrate")
	}
	kreqid, err := b.x.rq.toKernel(m.ReqID, true)
	if err != nil {
		return bad("ReqID", "%v", err)
	}
	// Refuse what the kernel would do differently before touching anything.
	sas := make(map[kernelops.SAID]*kernelops.SAEntry, len(m.SAs))
	for i, id := range m.SAs {
		e, err := b.getSA(ctx, id)
		if err != nil {
			return err
		}
		if !sameEncap(e.Encap, m.Encap) {
			return unsupported(id.String(), fmt.Sprintf("SAs[%d]", i),
				"SADB_X_MIGRATE cannot change NAT-T encapsulation (%v -> %v): af_key passes none to xfrm_migrate",
				e.Encap, m.Encap)
		}
		if !endpointsOf(id, m.Old) {
			return bad(fmt.Sprintf("SAs[%d]", i), "%s is not between the old endpoints", id)
		}
		sas[id] = e
	}
	km := &sadb.KMAddress{Local: m.New.Local, Remote: m.New.Remote}
	covered := map[kernelops.SAID]bool{}
	for i, pid := range m.Policies {
		pe, err := b.GetPolicy(ctx, pid)
		if err != nil {
			return err
		}
		pairs := b.pairs(pe, m, kreqid)
		if len(pairs) == 0 {
			return bad(fmt.Sprintf("Policies[%d]", i), "%s has no template with reqid %#x between the old endpoints", pid, m.ReqID)
		}
		if err := b.sendMigrate(ctx, pe.ID(), pairs, km); err != nil {
			return err
		}
		for _, p := range pairs {
			for id := range sas {
				if id.Src == p[0].Src.Addr() && id.Dst == p[0].Dst.Addr() && uint16(id.Proto) == p[0].Proto {
					covered[id] = true
				}
			}
		}
	}
	for id, e := range sas {
		if covered[id] {
			continue
		}
		if err := b.migrateAlone(ctx, id, e, m, kreqid, km); err != nil {
			return err
		}
	}
	for id := range sas {
		nid := id
		nid.Src, nid.Dst = moved(id.Src, m), moved(id.Dst, m)
		if _, err := b.getSA(ctx, nid); err != nil {
			return fmt.Errorf("SA %s was not moved to %s: %w", id, nid, err)
		}
		b.forget(id)
	}
	return nil
}

func sameEncap(a, b *kernelops.Encap) bool {
	if a == nil || b == nil {
		return a == b
	}
	return a.SrcPort == b.SrcPort && a.DstPort == b.DstPort
}

func endpointsOf(id kernelops.SAID, ep kernelops.Endpoints) bool {
	return (id.Src == ep.Local && id.Dst == ep.Remote) || (id.Src == ep.Remote && id.Dst == ep.Local)
}

// moved maps an old endpoint to its new address.
func moved(a netip.Addr, m kernelops.Migration) netip.Addr {
	switch a {
	case m.Old.Local:
		return m.New.Local
	case m.Old.Remote:
		return m.New.Remote
	}
	return a
}

// pairs builds the old/new ipsecrequest pairs for a policy's templates
// with the migration's reqid between the old endpoints. Transport-mode
// templates name no addresses; their SAs run between the endpoints.
func (b *driver) pairs(pe *kernelops.PolicyEntry, m kernelops.Migration, kreqid uint32) [][2]sadb.Request {
	var out [][2]sadb.Request
	for _, tm := range pe.Templates {
		if tm.ReqID != m.ReqID {
			continue
		}
		src, dst := tm.Src, tm.Dst
		if tm.Mode != kernelops.ModeTunnel {
			src, dst = m.Old.Local, m.Old.Remote
			if pe.Dir != kernelops.DirOut {
				src, dst = dst, src
			}
		}
		if !endpointsOf(kernelops.SAID{Src: src, Dst: dst}, m.Old) {
			continue
		}
		r := sadb.Request{Proto: uint16(tm.Proto), Mode: modeToSADB(tm.Mode), Level: sadb.LevelUnique, ReqID: kreqid,
			Src: netip.AddrPortFrom(src, 0), Dst: netip.AddrPortFrom(dst, 0)}
		n := r
		n.Src, n.Dst = netip.AddrPortFrom(moved(src, m), 0), netip.AddrPortFrom(moved(dst, m), 0)
		out = append(out, [2]sadb.Request{r, n})
	}
	return out
}

// sendMigrate sends one SADB_X_MIGRATE. Linux answers success with
// silence and failure with an error reply, both before write returns.
func (b *driver) sendMigrate(ctx context.Context, id kernelops.PolicyID, pairs [][2]sadb.Request, km *sadb.KMAddress) error {
	reply, err := b.exchange(ctx, id.String(), b.x.migrateMsg(id, pairs, km), false)
	if err != nil {
		return err
	}
	if reply.Errno != 0 {
		return kerr(id.String(), reply.Type, errnoOf(reply.Errno))
	}
	return nil
}

// migrateAlone moves an SA no listed policy covers, through a temporary
// inbound policy that selects nothing real.
func (b *driver) migrateAlone(ctx context.Context, id kernelops.SAID, e *kernelops.SAEntry,
	m kernelops.Migration, kreqid uint32, km *sadb.KMAddress) error {
	host := func(a netip.Addr) netip.Prefix { return netip.PrefixFrom(a, a.BitLen()) }
	tmp := &kernelops.Policy{
		Selector: kernelops.Selector{Src: host(id.Src), Dst: host(id.Dst), Proto: 254},
		Dir:      kernelops.DirIn,
		Action:   kernelops.ActionIPsec,
		Templates: []kernelops.Template{{Src: id.Src, Dst: id.Dst, Proto: id.Proto, Mode: e.Mode,
			ReqID: m.ReqID}},
	}
	if err := b.AddPolicy(ctx, tmp); err != nil {
		if errors.Is(err, kernelops.ErrExists) {
			return fmt.Errorf("temporary migration policy %s exists already: %w", tmp.ID(), err)
		}
		return err
	}
	defer b.DeletePolicy(context.WithoutCancel(ctx), tmp.ID())
	r := sadb.Request{Proto: uint16(id.Proto), Mode: modeToSADB(e.Mode), Level: sadb.LevelUnique, ReqID: kreqid,
		Src: netip.AddrPortFrom(id.Src, 0), Dst: netip.AddrPortFrom(id.Dst, 0)}
	n := r
	n.Src, n.Dst = netip.AddrPortFrom(moved(id.Src, m), 0), netip.AddrPortFrom(moved(id.Dst, m), 0)
	return b.sendMigrate(ctx, tmp.ID(), [][2]sadb.Request{{r, n}}, km)
}
