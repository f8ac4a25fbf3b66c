// Package example is the smallest complete keyplane backend: an in-memory
// SAD and SPD with no traffic model, written to be read next to
// docs/backend.md. It is translation code only: the kernelops front end
// (kernelops.NewHandle) validates every call, refuses what the
// capabilities below do not claim, wraps errors, hands out SPIs, enforces
// lifetimes in software, fans events out and detects idle SAs. It passes
// every conformance case its capabilities claim (example_test.go).
//
// It registers as "example"; nothing in keyplane imports it, so binaries
// do not carry it.
package example

import (
	"context"
	"iter"
	"sync"
	"time"

	"github.com/keyplane/keyplane/iana"
	"github.com/keyplane/keyplane/kernelops"
)

// Name is the backend's registry name.
const Name = "example"

func init() { kernelops.Register(Name, Open) }

// Open opens an empty in-memory dataplane behind the front end.
func Open(ctx context.Context, opts kernelops.Options) (kernelops.Backend, error) {
	return kernelops.NewHandle(ctx, Name, opts, func(_ context.Context, env *kernelops.Env) (kernelops.Driver, error) {
		if err := env.Options.CheckParams(Name); err != nil {
			return nil, err
		}
		return &driver{env: env, sas: map[kernelops.SAID]*saEntry{}, pols: map[kernelops.PolicyID]*polEntry{}}, nil
	})
}

// driver holds the tables. The front end has checked every argument
// before a method runs, so the methods only store, find and copy.
type driver struct {
	env *kernelops.Env

	mu   sync.Mutex
	sas  map[kernelops.SAID]*saEntry
	pols map[kernelops.PolicyID]*polEntry
}

type saEntry struct {
	sa    *kernelops.SA
	added time.Time
	state kernelops.SAState
}

type polEntry struct {
	p     *kernelops.Policy
	added time.Time
}

// Compile-time checks: the driver side of every facet it claims.
var (
	_ kernelops.Driver   = (*driver)(nil)
	_ kernelops.SADriver = (*driver)(nil) // no SPIAllocator: the front end allocates
	_ kernelops.SPD      = (*driver)(nil)
	_ kernelops.Expirer  = (*driver)(nil) // CapSoftwareLifetimes
)

// Capabilities claims what the tables can honestly do: store and read
// back SAs and policies with every field. Lifetimes (time only: there is
// no traffic to count) are the front end's; so is idle detection, which
// finds every watched SA idle, as it is without traffic. No traffic, so
// no counters, acquires or byte and packet limits; no sockets, no
// network.
func (d *driver) Capabilities() kernelops.Capabilities {
	o := d.env.Options
	return kernelops.Capabilities{
		Caps: kernelops.CapSAD | kernelops.CapSPD | kernelops.CapEvents | kernelops.CapIdle |
			kernelops.CapTunnelMode | kernelops.CapTransportMode | kernelops.CapESN | kernelops.CapUDPEncap |
			kernelops.CapMarks | kernelops.CapIfID | kernelops.CapSADir | kernelops.CapKeysReadable |
			kernelops.CapPolicyPriority | kernelops.CapLifetimeTime | kernelops.CapSoftwareLifetimes,
		Algorithms: kernelops.AlgorithmSet{
			Encryption: []kernelops.EncrID{iana.EncrAESCBC, iana.EncrAESGCM16, iana.EncrChaCha20Poly1305},
			Integrity:  []kernelops.IntegID{iana.IntegHMACSHA256_128, iana.IntegHMACSHA512_256},
		},
		SPIMin: o.SPIMin, SPIMax: o.SPIMax,
		Notes: map[kernelops.Cap]string{
			kernelops.CapCounters:     "an in-memory table with no traffic: counters never move",
			kernelops.CapTrap:         "no traffic, so nothing to raise an acquire",
			kernelops.CapLifetimeTime: "enforced by the kernelops front end on Options.Clock",
		},
	}
}

// Close has nothing to release.
func (d *driver) Close() error { return nil }

// AddSA stores a copy; the SA's ID is taken.
func (d *driver) AddSA(_ context.Context, sa *kernelops.SA) error {
	d.mu.Lock()
	defer d.mu.Unlock()
	if d.sas[sa.ID] != nil {
		return kernelops.ErrExists
	}
	d.sas[sa.ID] = &saEntry{sa: sa.Clone(), added: d.env.Options.Clock.Now()}
	return nil
}

// UpdateSA replaces the stored SA, keeping its add time and state.
func (d *driver) UpdateSA(_ context.Context, sa *kernelops.SA) error {
	d.mu.Lock()
	defer d.mu.Unlock()
	e := d.sas[sa.ID]
	if e == nil {
		return kernelops.ErrNotFound
	}
	e.sa = sa.Clone()
	return nil
}

// DeleteSA removes an SA.
func (d *driver) DeleteSA(_ context.Context, id kernelops.SAID) error {
	d.mu.Lock()
	defer d.mu.Unlock()
	if d.sas[id] == nil {
		return kernelops.ErrNotFound
	}
	delete(d.sas, id)
	return nil
}

// GetSA returns a copy.
func (d *driver) GetSA(_ context.Context, id kernelops.SAID) (*kernelops.SAEntry, error) {
	d.mu.Lock()
	defer d.mu.Unlock()
	e := d.sas[id]
	if e == nil {
		return nil, kernelops.ErrNotFound
	}
	out := &kernelops.SAEntry{}
	e.fill(out)
	return out, nil
}

func (e *saEntry) fill(out *kernelops.SAEntry) {
	out.SA = *e.sa.Clone()
	out.State = e.state
	out.Counters = kernelops.Counters{AddTime: e.added}
}

// SAs streams a snapshot, one reused entry (the SAD contract allows it).
func (d *driver) SAs(ctx context.Context) iter.Seq2[*kernelops.SAEntry, error] {
	return func(yield func(*kernelops.SAEntry, error) bool) {
		d.mu.Lock()
		snap := make([]*saEntry, 0, len(d.sas))
		for _, e := range d.sas {
			snap = append(snap, e)
		}
		d.mu.Unlock()
		var out kernelops.SAEntry
		for _, e := range snap {
			if err := ctx.Err(); err != nil {
				yield(nil, err)
				return
			}
			d.mu.Lock()
			e.fill(&out)
			d.mu.Unlock()
			if !yield(&out, nil) {
				return
			}
		}
	}
}

// FlushSAs removes the SAs whose reqid keyplane owns, and no other.
func (d *driver) FlushSAs(context.Context) error {
	d.mu.Lock()
	defer d.mu.Unlock()
	for id, e := range d.sas {
		if d.env.Options.Owns(e.sa.ReqID) {
			delete(d.sas, id)
		}
	}
	return nil
}

// Expire applies a lifetime the front end enforces: soft marks the SA
// dying, hard removes it. It reports whether the SA was still there.
func (d *driver) Expire(_ context.Context, ev *kernelops.ExpireEvent) bool {
	d.mu.Lock()
	defer d.mu.Unlock()
	e := d.sas[ev.SA]
	switch {
	case e == nil:
		return false
	case ev.Hard:
		delete(d.sas, ev.SA)
	default:
		e.state = kernelops.SADying
	}
	return true
}

// AddPolicy stores a copy with its effective priority; the ID is taken.
func (d *driver) AddPolicy(ctx context.Context, p *kernelops.Policy) error {
	return d.putPolicy(p, false)
}

// ReplacePolicy stores a copy, replacing one with the same ID.
func (d *driver) ReplacePolicy(ctx context.Context, p *kernelops.Policy) error {
	return d.putPolicy(p, true)
}

func (d *driver) putPolicy(p *kernelops.Policy, replace bool) error {
	d.mu.Lock()
	defer d.mu.Unlock()
	if d.pols[p.ID()] != nil && !replace {
		return kernelops.ErrExists
	}
	c := p.Clone()
	c.Priority = kernelops.EffectivePriority(p)
	d.pols[p.ID()] = &polEntry{p: c, added: d.env.Options.Clock.Now()}
	return nil
}

// DeletePolicy removes a policy.
func (d *driver) DeletePolicy(_ context.Context, id kernelops.PolicyID) error {
	d.mu.Lock()
	defer d.mu.Unlock()
	if d.pols[id] == nil {
		return kernelops.ErrNotFound
	}
	delete(d.pols, id)
	return nil
}

// GetPolicy returns a copy.
func (d *driver) GetPolicy(_ context.Context, id kernelops.PolicyID) (*kernelops.PolicyEntry, error) {
	d.mu.Lock()
	defer d.mu.Unlock()
	e := d.pols[id]
	if e == nil {
		return nil, kernelops.ErrNotFound
	}
	return &kernelops.PolicyEntry{Policy: *e.p.Clone(), AddTime: e.added}, nil
}

// Policies streams a snapshot.
func (d *driver) Policies(ctx context.Context) iter.Seq2[*kernelops.PolicyEntry, error] {
	return func(yield func(*kernelops.PolicyEntry, error) bool) {
		d.mu.Lock()
		snap := make([]kernelops.PolicyEntry, 0, len(d.pols))
		for _, e := range d.pols {
			snap = append(snap, kernelops.PolicyEntry{Policy: *e.p.Clone(), AddTime: e.added})
		}
		d.mu.Unlock()
		for i := range snap {
			if err := ctx.Err(); err != nil {
				yield(nil, err)
				return
			}
			if !yield(&snap[i], nil) {
				return
			}
		}
	}
}

// FlushPolicies removes the policies with a template of an owned reqid.
func (d *driver) FlushPolicies(context.Context) error {
	d.mu.Lock()
	defer d.mu.Unlock()
	for id, e := range d.pols {
		for _, t := range e.p.Templates {
			if d.env.Options.Owns(t.ReqID) {
				delete(d.pols, id)
				break
			}
		}
	}
	return nil
}
