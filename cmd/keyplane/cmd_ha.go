package main

import (
	"context"
	"encoding/json"
	"fmt"
	"io"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	clientv3 "go.etcd.io/etcd/client/v3"

	"github.com/keyplane/keyplane/ike/control"
)

func init() {
	register(&command{name: "ha", summary: "high availability ('ha status')", subs: []*command{{
		name: "status", summary: "this node's role, the leader, the lease, the state lag",
		help: `Asks the daemon (with an ha { } section) for this node's role (standby, active,
stopping), the leader etcd names, the lease and the time it has left, the records mirrored
(standby) or written (active), and the lag: the newest record change in etcd minus the
mirror's revision, records waiting to be written, counter syncs written and dropped, and the
last takeover. With -json one object. A daemon without ha { } answers that it runs no HA.`,
		run: runHAStatus,
	}}})
}

// haStatus is what `keyplane ha status` shows.
type haStatus struct {
	Node string `json:"node"`
	Role string `json:"role"`
	// Leading: this node holds the lease as far as it knows (an active
	// node whose lease was lost, etcd down, is active and not leading).
	Leading bool      `json:"leading"`
	Since   time.Time `json:"since"`
	Leader  string    `json:"leader"` // "" when etcd names none or cannot be asked
	// LeaderErr says why Leader is empty.
	LeaderErr string `json:"leader_error,omitempty"`
	Lease     string `json:"lease"` // hex id, "" without a session
	LeaseTTL  string `json:"lease_ttl"`
	// LeaseRemaining is what etcd says the lease has left (-1: expired
	// or unknown).
	LeaseRemaining int64  `json:"lease_remaining_s"`
	EtcdRevision   int64  `json:"etcd_revision"`
	VIP            string `json:"vip,omitempty"`
	VIPHeld        bool   `json:"vip_held"`
	// Standby: the records the mirror holds and how far behind etcd.
	RecordsMirrored int   `json:"records_mirrored"`
	MirrorRevision  int64 `json:"mirror_revision"`
	// LagRevisions: the newest record change in etcd minus the
	// mirror's revision (0: caught up).
	LagRevisions  int64  `json:"lag_revisions"`
	MirrorRefused uint64 `json:"mirror_refused"`
	// Active: etcd writes done and waiting, counter syncs.
	Writes         uint64      `json:"etcd_writes"`
	Pending        int         `json:"records_pending"`
	WriteErr       string      `json:"write_error,omitempty"`
	CounterSyncs   uint64      `json:"counter_syncs"`
	CounterDrops   uint64      `json:"counter_drops"`
	RecordsRefused uint64      `json:"records_refused"`
	Takeover       *haTakeover `json:"takeover,omitempty"`
}

// status gathers the node's state; the etcd questions are bounded by ctx.
func (n *haNode) status(ctx context.Context) haStatus {
	n.mu.Lock()
	st := haStatus{Node: n.cfg.Node, Role: n.role, Since: n.since, LeaseTTL: n.cfg.LeaseTTL.String(), VIPHeld: n.vipHeld,
		Takeover: n.takeover, LeaseRemaining: -1}
	mirror, store, ctr, sink := n.mirror, n.store, n.ctr, n.sink
	n.mu.Unlock()
	// The elector's lock may be held while it asks etcd for a lease
	// (etcd down: up to the TTL); not under n.mu.
	st.Leading = n.el.Leading()
	if n.cfg.VIP.IsValid() {
		st.VIP = n.cfg.VIP.String() + " on " + n.cfg.Interface
	}
	ctx, cancel := context.WithTimeout(ctx, 2*time.Second)
	defer cancel()
	if l, err := n.el.Leader(ctx); err != nil {
		st.LeaderErr = err.Error()
	} else {
		st.Leader = l
	}
	if id := n.el.LeaseID(); id != 0 {
		st.Lease = fmt.Sprintf("%x", int64(id))
		if r, err := n.cli.TimeToLive(ctx, id); err == nil {
			st.LeaseRemaining = r.TTL
			st.EtcdRevision = r.ResponseHeader.Revision
		}
	}
	if mirror != nil {
		st.RecordsMirrored, st.MirrorRevision = mirror.Len(), mirror.Rev()
		_, st.MirrorRefused = mirror.Refused()
		// Lag: the newest record change etcd holds that the mirror has
		// not seen (the election's own writes raise etcd's revision too,
		// so the header revision alone would overstate it).
		if r, err := n.cli.Get(ctx, haStatePrefix+"/", clientv3.WithPrefix(), clientv3.WithKeysOnly(), clientv3.WithLimit(1),
			clientv3.WithSort(clientv3.SortByModRevision, clientv3.SortDescend)); err == nil && len(r.Kvs) == 1 {
			st.LagRevisions = max(0, r.Kvs[0].ModRevision-st.MirrorRevision)
		}
	} else {
		st.RecordsMirrored = n.mirrored
	}
	if store != nil {
		st.Writes, st.Pending = store.Writes(), store.Pending()
		if err := store.Err(); err != nil {
			st.WriteErr = err.Error()
		}
	}
	if ctr != nil {
		st.CounterSyncs, st.CounterDrops = ctr.Synced(), ctr.Drops()
	}
	if sink != nil {
		st.RecordsRefused = sink.Refused()
	}
	return st
}

// handleHA registers ha-status on the control socket.
func (d *daemon) handleHA(srv *control.Server) {
	srv.Handle("ha-status", func(ctx context.Context, req control.Request) (control.Response, error) {
		if d.ha == nil {
			return control.Response{}, fmt.Errorf("this daemon runs no HA (no ha { } section)")
		}
		return data(d.ha.status(ctx))
	})
}

// haMetrics exports the node's HA state with the daemon's metrics: read
// from memory at each scrape (no etcd round trip).
func (d *daemon) haMetrics() {
	n := d.ha
	reg := d.metrics.Registry()
	for _, r := range []string{roleStandby, roleActive, roleStopping} {
		reg.MustRegister(prometheus.NewGaugeFunc(prometheus.GaugeOpts{Name: "keyplane_ha_role",
			Help: "1 for this node's current HA role", ConstLabels: prometheus.Labels{"role": r}},
			func() float64 {
				if n.Role() == r {
					return 1
				}
				return 0
			}))
	}
	with := func(f func(st *haNode) float64) func() float64 {
		return func() float64 { return f(n) }
	}
	reg.MustRegister(
		prometheus.NewGaugeFunc(prometheus.GaugeOpts{Name: "keyplane_ha_records_mirrored",
			Help: "records the standby's mirror holds (at the takeover, once active)"}, with(func(n *haNode) float64 {
			n.mu.Lock()
			defer n.mu.Unlock()
			if n.mirror != nil {
				return float64(n.mirror.Len())
			}
			return float64(n.mirrored)
		})),
		prometheus.NewGaugeFunc(prometheus.GaugeOpts{Name: "keyplane_ha_mirror_revision",
			Help: "the etcd revision the standby's mirror is at (0 once active)"}, with(func(n *haNode) float64 {
			n.mu.Lock()
			defer n.mu.Unlock()
			if n.mirror != nil {
				return float64(n.mirror.Rev())
			}
			return 0
		})),
		prometheus.NewCounterFunc(prometheus.CounterOpts{Name: "keyplane_ha_etcd_writes_total",
			Help: "records written to etcd as the active node"}, with(func(n *haNode) float64 {
			n.mu.Lock()
			defer n.mu.Unlock()
			if n.store != nil {
				return float64(n.store.Writes())
			}
			return 0
		})),
		prometheus.NewGaugeFunc(prometheus.GaugeOpts{Name: "keyplane_ha_records_pending",
			Help: "records waiting to be written to etcd"}, with(func(n *haNode) float64 {
			n.mu.Lock()
			defer n.mu.Unlock()
			if n.store != nil {
				return float64(n.store.Pending())
			}
			return 0
		})),
		prometheus.NewCounterFunc(prometheus.CounterOpts{Name: "keyplane_ha_counter_syncs_total",
			Help: "dataplane sync events written as counter records"}, with(func(n *haNode) float64 {
			n.mu.Lock()
			defer n.mu.Unlock()
			if n.ctr != nil {
				return float64(n.ctr.Synced())
			}
			return 0
		})),
		prometheus.NewGaugeFunc(prometheus.GaugeOpts{Name: "keyplane_ha_takeover_seconds",
			Help: "how long the last takeover took, from winning the election to the state restored"}, with(func(n *haNode) float64 {
			n.mu.Lock()
			defer n.mu.Unlock()
			if n.takeover != nil {
				return n.takeover.Took.Seconds()
			}
			return 0
		})),
	)
}

func runHAStatus(ctx context.Context, e *env, args []string) error {
	fs := newFlags(e, e.path)
	cf := addCtlFlags(e, fs)
	if err := e.parse(fs, args); err != nil {
		return err
	}
	if fs.NArg() != 0 {
		return usageError{fmt.Sprintf("no arguments, got %q", fs.Args())}
	}
	r, err := cf.client().Do(ctx, control.Request{Cmd: "ha-status"})
	if err != nil {
		return err
	}
	var st haStatus
	if err := json.Unmarshal(r.Data, &st); err != nil {
		return fmt.Errorf("ha status reply: %w", err)
	}
	if cf.json {
		return writeJSON(e.stdout, st)
	}
	printHA(e.stdout, &st)
	return nil
}

func printHA(w io.Writer, st *haStatus) {
	fmt.Fprintf(w, "node       %s\n", st.Node)
	fmt.Fprintf(w, "role       %s since %s\n", st.Role, st.Since.Format(time.RFC3339))
	leader := st.Leader
	if leader == "" {
		leader = "none (" + st.LeaderErr + ")"
	}
	fmt.Fprintf(w, "leader     %s\n", leader)
	rem := "unknown"
	if st.LeaseRemaining >= 0 {
		rem = fmt.Sprintf("%ds left", st.LeaseRemaining)
	}
	fmt.Fprintf(w, "lease      %s, ttl %s, %s\n", st.Lease, st.LeaseTTL, rem)
	if st.VIP != "" {
		fmt.Fprintf(w, "vip        %s (held: %v)\n", st.VIP, st.VIPHeld)
	}
	fmt.Fprintf(w, "mirror     %d records at revision %d (etcd %d, %d behind), %d refused\n",
		st.RecordsMirrored, st.MirrorRevision, st.EtcdRevision, st.LagRevisions, st.MirrorRefused)
	fmt.Fprintf(w, "writes     %d done, %d pending, %d counter syncs (%d dropped), %d records refused\n",
		st.Writes, st.Pending, st.CounterSyncs, st.CounterDrops, st.RecordsRefused)
	if st.WriteErr != "" {
		fmt.Fprintf(w, "last write error: %s\n", st.WriteErr)
	}
	if t := st.Takeover; t != nil {
		fmt.Fprintf(w, "takeover   %s: %d IKE SAs, %d children restored in %s, %d failed; %s\n",
			t.At.Format(time.RFC3339), t.IKESAs, t.Children, t.Took, len(t.Failed), t.GARP)
		fmt.Fprintf(w, "           vip %s, connections %s, sink %s, restore %s; %d fence checks %s\n",
			t.VIPTook, t.ConnsTook, t.SinkTook, t.RestoreTook, t.Fences, t.FencesTook)
		if t.Restore != nil {
			fmt.Fprintf(w, "           restore: %s\n", t.Restore)
		}
	}
}
