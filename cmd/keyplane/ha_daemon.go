package main

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"sync"
	"syscall"
	"time"

	clientv3 "go.etcd.io/etcd/client/v3"

	"github.com/keyplane/keyplane/ha"
	"github.com/keyplane/keyplane/ike"
	"github.com/keyplane/keyplane/ike/config"
	"github.com/keyplane/keyplane/kernelops"
)

// The daemon's HA (docs/config.md, ha { }): a node starts as standby —
// its engine runs with no connections (no IKE socket, nothing installed)
// behind a fenced dataplane, a mirror follows the active node's records
// and it campaigns. On winning it takes the VIP, gives the engine the
// configuration, writes its own state from then on and restores what the
// mirror holds. Losing the leadership ends the daemon (its SAs removed
// from the dataplane, the VIP dropped, no peer told): restarted, it comes
// back as standby. A lease lost while etcd names no other leader (etcd
// down) keeps the tunnels: the node campaigns again.

// Where the daemon's records and election live in etcd.
const (
	haPrefix      = "/keyplane/ha"
	haStatePrefix = haPrefix + "/state"
)

// haSeqMarginMin is the least outbound sequence number margin at a
// takeover: well past a sync threshold's worth of packets and what was
// sent while the last sync event was being written.
const haSeqMarginMin = 1 << 16

// haSeqMargin covers the packets that may have gone out after the last
// synced sequence number: up to the threshold, and the same again while
// its sync event was on its way to etcd.
func haSeqMargin(h *config.HA) uint64 {
	return max(haSeqMarginMin, 4*uint64(h.SyncPackets))
}

// ErrHANoSync: the backend cannot sync replay counters (no Syncer), so
// a takeover could not resume its SAs.
var ErrHANoSync = errors.New("ha { } needs a backend with the sync capability")

// HABackendError refuses an ha { } section on a backend without Syncer,
// quoting the backend's note on the capability.
type HABackendError struct {
	Backend string
	Note    string
}

func (e *HABackendError) Error() string {
	return fmt.Sprintf("ha { }: backend %s cannot sync SA counters to a standby (capability sync: %s)", e.Backend, e.Note)
}
func (e *HABackendError) Unwrap() error { return ErrHANoSync }

// haUsable refuses ha { } on a backend that lacks what a takeover needs:
// Syncer (counter sync and restore) and EventSource (sync events).
func haUsable(cfg *config.Config, b kernelops.Backend) error {
	if cfg.HA == nil {
		return nil
	}
	if _, err := kernelops.As[kernelops.Syncer](b); err != nil {
		return &HABackendError{Backend: cfg.Backend.Name, Note: b.Capabilities().Why(kernelops.CapSync)}
	}
	if _, err := kernelops.As[kernelops.EventSource](b); err != nil {
		return &HABackendError{Backend: cfg.Backend.Name, Note: b.Capabilities().Why(kernelops.CapEvents)}
	}
	return nil
}

// ErrLeadershipLost ends an active node's daemon: another node may lead
// (its lease expired, or etcd says its election key is gone).
var ErrLeadershipLost = errors.New("ha: leadership lost; the dataplane state was removed, restart to join as standby")

// Roles.
const (
	roleStandby  = "standby"
	roleActive   = "active"
	roleStopping = "stopping"
)

// haNode is the daemon's part in the cluster.
type haNode struct {
	cfg    *config.HA
	log    *slog.Logger
	b      kernelops.Backend // the backend itself: counters, cleanup
	fenced *ha.Fenced        // what the engine writes through
	cli    *clientv3.Client
	el     *ha.Elector
	seal   *ha.Sealer

	mu       sync.Mutex
	role     string
	since    time.Time
	mirror   *ha.Mirror // standby, until the takeover
	store    *ha.Store  // active
	ctr      *ha.Counters
	sink     *ha.Sink
	vipHeld  bool
	takeover *haTakeover
	lost     chan struct{} // closed when an active node lost its lease

	mirrored int // records the mirror held at the takeover
}

// haTakeover is what the last takeover did, for ha status.
type haTakeover struct {
	At       time.Time     `json:"at"`
	Took     time.Duration `json:"took_ns"`
	IKESAs   int           `json:"ike_sas"`
	Children int           `json:"children"`
	Failed   []string      `json:"failed"`
	GARP     string        `json:"garp,omitempty"` // the gratuitous ARP/NA sent, or why not
	// Where the time went, from winning the election: the VIP (and its
	// announcement), starting the connections, the state sink and
	// counter sync, the restore (Restore: its parts), and the fence
	// checks the takeover's dataplane writes made (part of the others).
	VIPTook     time.Duration     `json:"vip_ns"`
	ConnsTook   time.Duration     `json:"connections_ns"`
	SinkTook    time.Duration     `json:"sink_ns"`
	RestoreTook time.Duration     `json:"restore_ns"`
	Restore     *ike.RestoreStats `json:"restore,omitempty"`
	Fences      int64             `json:"fences"`
	FencesTook  time.Duration     `json:"fences_ns"`
}

// startHA connects to etcd and joins as standby: it opens a session
// (etcd must answer within the lease TTL) and starts the mirror.
func startHA(ctx context.Context, cfg *config.Config, b kernelops.Backend, log *slog.Logger) (*haNode, error) {
	h := cfg.HA
	seal, err := ha.NewSealer(h.ClusterKey)
	if err != nil {
		return nil, err
	}
	cli, err := ha.NewClient(ha.ClientOptions{Endpoints: h.Endpoints, CA: h.CA, Cert: h.Cert, Key: h.Key})
	if err != nil {
		return nil, err
	}
	n := &haNode{cfg: h, log: log.With("ha-node", h.Node), b: b, cli: cli, seal: seal, role: roleStandby,
		since: time.Now(), lost: make(chan struct{})}
	hh := kernelops.HandleOf(b)
	if hh == nil {
		cli.Close()
		return nil, fmt.Errorf("ha: backend %s: %T has no kernelops handle to fence", b.Name(), b)
	}
	sctx, cancel := context.WithTimeout(ctx, h.LeaseTTL+5*time.Second)
	defer cancel()
	n.el, err = ha.NewElector(sctx, cli, haPrefix, h.Node, h.LeaseTTL)
	if err != nil {
		cli.Close()
		return nil, fmt.Errorf("ha: etcd at %v: %w", h.Endpoints, err)
	}
	n.fenced = ha.NewFenced(hh, n.el)
	// A standby holds no VIP: one left by this node's killed
	// predecessor (kill -9 leaves the address) goes now.
	if h.VIP.IsValid() && cfg.Backend.Name == "xfrm" { // the kernel's addresses
		if was, err := dropStaleVIP(cfg.Backend.Params["netns"], h.Interface, h.VIP); err != nil {
			n.log.Warn("ha: cannot check for a stale vip", "vip", h.VIP.String(), "interface", h.Interface, "err", err)
		} else if was {
			n.log.Warn("ha: removed a vip left by an earlier run", "vip", h.VIP.String(), "interface", h.Interface)
		}
	}
	n.mirror, err = ha.NewMirror(sctx, cli, haStatePrefix, seal, ha.DefaultLimits, n.log)
	if err != nil {
		n.el.Close()
		cli.Close()
		return nil, fmt.Errorf("ha: reading the records from etcd at %v: %w", h.Endpoints, err)
	}
	return n, nil
}

// standbyConfig is what the engine runs on a standby: cfg without its
// connections (no socket bound, nothing installed). It shares cfg's
// settings: never Wipe it.
func standbyConfig(cfg *config.Config) *config.Config {
	c := *cfg
	c.Connections = nil
	c.Warnings = nil
	return &c
}

func (n *haNode) Role() string {
	n.mu.Lock()
	defer n.mu.Unlock()
	return n.role
}

func (n *haNode) active() bool { return n.Role() == roleActive }

// run campaigns until this node leads, then has d take over, then waits
// for the lease to be lost. It returns when ctx ends or the leadership
// is lost (n.lost closed).
func (n *haNode) run(ctx context.Context, d *daemon) {
	n.log.Info("ha: standby, campaigning", "endpoints", n.cfg.Endpoints, "lease-ttl", n.cfg.LeaseTTL.String())
	if err := n.el.Campaign(ctx); err != nil {
		if ctx.Err() == nil {
			n.log.Error("ha: campaign ended", "err", err)
		}
		return
	}
	won := time.Now()
	if err := d.takeOver(ctx, won); err != nil {
		n.log.Error("ha: takeover failed; giving up the leadership", "err", err)
		n.mu.Lock()
		n.role = roleStopping
		n.mu.Unlock()
		close(n.lost)
		return
	}
	for {
		select {
		case <-ctx.Done():
			return
		case <-n.el.Lost():
		}
		// The lease is gone as this client sees it: etcd may be down
		// (then no one can be elected, and the tunnels stay up; new
		// dataplane installs are fenced) or another node may lead.
		n.log.Warn("ha: lease lost; keeping the tunnels, dataplane writes fenced, until etcd names a leader")
		if n.regain(ctx) {
			n.log.Info("ha: leading again")
			continue
		}
		if ctx.Err() != nil {
			return
		}
		break
	}
	n.log.Error("ha: another node leads")
	n.mu.Lock()
	if n.role == roleActive {
		n.role = roleStopping
	}
	n.mu.Unlock()
	close(n.lost)
}

// regain campaigns again after the lease was lost; true once this node
// leads again, false as soon as etcd names another node (or ctx ends).
func (n *haNode) regain(ctx context.Context) bool {
	cctx, cancel := context.WithCancel(ctx)
	defer cancel()
	won := make(chan error, 1)
	go func() { won <- n.el.Campaign(cctx) }()
	t := time.NewTicker(250 * time.Millisecond)
	defer t.Stop()
	for {
		select {
		case err := <-won:
			return err == nil
		case <-ctx.Done():
			return false
		case <-t.C:
		}
		qctx, qcancel := context.WithTimeout(ctx, time.Second)
		l, err := n.el.Leader(qctx)
		qcancel()
		// Our own name: our old election key, not expired yet.
		if err == nil && l != n.cfg.Node {
			cancel()
			<-won
			return false
		}
	}
}

// takeoverBindWait bounds how long a takeover waits for an IKE address
// that is not free yet: still bound by the old active node letting go
// of it on the same host (EADDRINUSE), or an IPv6 VIP still tentative
// (EADDRNOTAVAIL).
const takeoverBindWait = 3 * time.Second

type reconfigurer interface {
	Reconfigure(ctx context.Context, cfg *config.Config) (ike.ReloadResult, error)
}

// startConnections gives the engine its connections, trying again every
// 100 ms for up to wait while an IKE address is in use or not available.
// A failed Reconfigure changes nothing, so trying again is safe.
func startConnections(ctx context.Context, eng reconfigurer, cfg *config.Config, wait time.Duration, log *slog.Logger) error {
	deadline := time.Now().Add(wait)
	for {
		_, err := eng.Reconfigure(ctx, cfg)
		if err == nil || !(errors.Is(err, syscall.EADDRINUSE) || errors.Is(err, syscall.EADDRNOTAVAIL)) || !time.Now().Before(deadline) {
			return err
		}
		log.Warn("ha: an IKE address is not free yet; trying again", "err", err)
		select {
		case <-ctx.Done():
			return ctx.Err()
		case <-time.After(100 * time.Millisecond):
		}
	}
}

// takeOver makes this daemon the active node: VIP, configuration,
// state sink and counter sync, then the mirrored state restored.
func (d *daemon) takeOver(ctx context.Context, won time.Time) error {
	n := d.ha
	d.mu.Lock()
	defer d.mu.Unlock()
	tk := &haTakeover{At: won, Failed: []string{}}
	fences, fencesTook := n.fenced.FenceStats()
	// Until the mirrored SAs are restored, the peers' requests for them
	// reach an engine without them: not answered (they retransmit),
	// rather than INVALID_IKE_SPI, which would end them at the peer.
	if err := d.eng.HoldUnknownSPIs(ctx, true); err != nil {
		return err
	}
	defer func() {
		if err := d.eng.HoldUnknownSPIs(context.WithoutCancel(ctx), false); err != nil {
			n.log.Warn("ha: cannot answer unknown IKE SAs again", "err", err)
		}
	}()
	t := time.Now()
	if n.cfg.VIP.IsValid() {
		if err := n.fenced.AddAddress(ctx, n.cfg.Interface, n.cfg.VIP); err != nil && !errors.Is(err, kernelops.ErrExists) {
			return fmt.Errorf("ha: vip %s on %s: %w", n.cfg.VIP, n.cfg.Interface, err)
		}
		n.mu.Lock()
		n.vipHeld = true
		n.mu.Unlock()
		tk.GARP = announceVIP(d.cfg.Backend.Params["netns"], n.cfg.Interface, n.cfg.VIP.Addr(), n.log)
	}
	tk.VIPTook, t = time.Since(t), time.Now()
	if err := startConnections(ctx, d.eng, d.cfg, takeoverBindWait, n.log); err != nil {
		return fmt.Errorf("ha: starting the connections: %w", err)
	}
	tk.ConnsTook, t = time.Since(t), time.Now()
	store := ha.NewStore(n.cli, haStatePrefix, n.seal, n.el, ha.DefaultLimits, n.log)
	ctr, err := ha.NewCounters(ctx, n.b, store, kernelops.SyncThresholds{ReplayDiff: n.cfg.SyncPackets, Timer: n.cfg.SyncInterval}, n.log)
	if err != nil {
		store.Close()
		return err
	}
	// The counters' thresholds (a dataplane call per SA) and the sync
	// events they start wait for the restore to be over.
	ctr.Hold()
	sink := ha.NewSink(store, n.log).WithCounters(ctr)
	if err := d.eng.SetStateSink(ctx, sink); err != nil {
		ctr.Close()
		store.Close()
		return err
	}
	n.mu.Lock()
	n.store, n.ctr, n.sink = store, ctr, sink
	mirror := n.mirror
	n.mu.Unlock()
	n.mirrored = mirror.Len()
	tk.SinkTook, t = time.Since(t), time.Now()
	res := ha.Restore(ctx, d.eng, mirror, ike.RestoreOptions{SeqMargin: haSeqMargin(n.cfg), Replay: ha.ReplayFrom(mirror)})
	ctr.Release()
	tk.RestoreTook = time.Since(t)
	tk.IKESAs, tk.Children, tk.Restore = res.IKESAs, res.Children, &res.Stats
	f, ft := n.fenced.FenceStats()
	tk.Fences, tk.FencesTook = f-fences, ft-fencesTook
	for _, err := range res.Failed {
		tk.Failed = append(tk.Failed, err.Error())
		n.log.Error("ha: an IKE SA could not be restored", "err", err)
	}
	tk.Took = time.Since(won)
	n.mu.Lock()
	n.role, n.since, n.takeover, n.mirror = roleActive, time.Now(), tk, nil
	n.mu.Unlock()
	mirror.Close()
	d.metrics.Refresh(ctx)
	n.log.Info("ha: active", "ike-sas-restored", tk.IKESAs, "children-restored", tk.Children,
		"failed", len(tk.Failed), "took", tk.Took.String(), "vip", n.cfg.VIP.String(), "announce", tk.GARP,
		"vip-took", tk.VIPTook.String(), "connections-took", tk.ConnsTook.String(), "sink-took", tk.SinkTook.String(),
		"restore-took", tk.RestoreTook.String(), "restore", tk.Restore.String(), "fences", tk.Fences, "fences-took", tk.FencesTook.String())
	return nil
}

// dropVIP removes the VIP if this node added it (removals are not
// fenced: a deposed node must be able to let go).
func (n *haNode) dropVIP(ctx context.Context) {
	n.mu.Lock()
	held := n.vipHeld
	n.vipHeld = false
	n.mu.Unlock()
	if !held {
		return
	}
	am, err := kernelops.As[kernelops.AddrManager](n.b)
	if err == nil {
		err = am.RemoveAddress(ctx, n.cfg.Interface, n.cfg.VIP)
	}
	if errors.Is(err, kernelops.ErrNotFound) {
		return
	}
	if err != nil {
		n.log.Error("ha: cannot remove the vip", "vip", n.cfg.VIP.String(), "interface", n.cfg.Interface, "err", err)
		return
	}
	n.log.Info("ha: vip removed", "vip", n.cfg.VIP.String(), "interface", n.cfg.Interface)
}

// stop hands over: the state sink is detached first (closing the engine
// must not delete the records the next active restores from), the
// pending records are written, the engine closed without telling the
// peers, the dataplane cleaned, the VIP dropped, and only then the lease
// revoked so that a standby takes over at once.
func (d *daemon) stopHA(ctx context.Context) {
	n := d.ha
	n.mu.Lock()
	n.role = roleStopping
	store, ctr, mirror := n.store, n.ctr, n.mirror
	n.mu.Unlock()
	// A peer's request that arrives while the engine closes finds no IKE
	// SA: unanswered (the next active answers its retransmission), not
	// INVALID_IKE_SPI, which would end the SA at the peer (seen in the
	// many-tunnel VM test's handover at its end; charon 5.9.8 ignored it).
	_ = d.eng.HoldUnknownSPIs(ctx, true)
	_ = d.eng.SetStateSink(ctx, nil)
	if store != nil && n.el.Leading() {
		fctx, cancel := context.WithTimeout(ctx, 2*time.Second)
		if err := store.Flush(fctx); err != nil {
			n.log.Warn("ha: records not all written at stop", "err", err)
		}
		cancel()
	}
	if ctr != nil {
		ctr.Close()
	}
	if store != nil {
		store.Close()
	}
	if mirror != nil {
		mirror.Close()
	}
	_ = d.eng.Close()
	if err := cleanupOwned(ctx, n.b, n.log, "ha stop"); err != nil {
		n.log.Error("ha: cleanup at stop", "err", err)
	}
	n.dropVIP(ctx)
	if err := n.el.Close(); err != nil {
		n.log.Warn("ha: closing the etcd session", "err", err)
	}
	_ = n.cli.Close()
}

// ErrHAReload refuses a reload that adds, removes or changes ha { }:
// the election, the etcd client and the VIP are set up at start.
var ErrHAReload = errors.New("ha { } changed: the ha section needs a restart of the daemon")

// close undoes startHA (the daemon did not get to run).
func (n *haNode) close() {
	if n.mirror != nil {
		n.mirror.Close()
	}
	_ = n.el.Close()
	_ = n.cli.Close()
}
