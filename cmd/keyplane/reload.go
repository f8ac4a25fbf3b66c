package main

import (
	"context"
	"fmt"
	"log/slog"
	"slices"
	"sync"
	"time"

	"github.com/keyplane/keyplane/ike"
	"github.com/keyplane/keyplane/ike/config"
	"github.com/keyplane/keyplane/ike/control"
	"github.com/keyplane/keyplane/internal/logging"
	"github.com/keyplane/keyplane/internal/metrics"
	"github.com/keyplane/keyplane/internal/sdnotify"
	"github.com/keyplane/keyplane/kernelops"
)

// daemon is the state a reload changes: the running configuration and
// the log levels. A reload is all or nothing: the new file is loaded and
// validated, changes that need a restart are refused, the engine applies
// it (or refuses it, changing nothing), and only then do the daemon's own
// settings follow.
type daemon struct {
	mu       sync.Mutex // SIGHUP and the control socket may reload at once
	file     string
	cfg      *config.Config // running
	started  *config.Config // at start: what needs a restart to change
	override *slog.Level    // -log-level, which wins at start and at every reload
	level    slog.LevelVar
	logs     *logging.Handler
	eng      *ike.Engine
	b        kernelops.Backend
	ha       *haNode // nil: no ha { }
	// updown: the children with an updown command, the hooks' filter
	// on the engine's loop (updown.go).
	updown  *updownNames
	log     *slog.Logger
	metrics *metrics.Metrics
	notify  *sdnotify.Notifier
	// ctx and wg: the initiations a reload starts, ended and waited for
	// at shutdown.
	ctx context.Context
	wg  sync.WaitGroup
}

// logLevel is the level cfg asks for, unless -log-level overrides it.
func (d *daemon) logLevel(cfg *config.Config) slog.Level {
	if d.override != nil {
		return *d.override
	}
	return cfg.Daemon.LogLevel
}

func (d *daemon) levelSource() string {
	if d.override != nil {
		return "-log-level"
	}
	return "daemon.log_level"
}

// config is the running configuration (control.Server.Config).
func (d *daemon) config() *config.Config {
	d.mu.Lock()
	defer d.mu.Unlock()
	return d.cfg
}

// restartOnly are the settings a reload cannot apply. Those of refused
// ones make the reload fail; the others are kept as they were started
// and the reply warns.
var restartOnly = []struct {
	setting string
	refuse  bool
}{
	{"backend.name", true},
	{"backend.params", true},
	{"backend.cleanup", false},
	{"daemon.control", false},
	{"daemon.metrics", false},
	{"daemon.log_format", false},
}

// reload re-reads the file and applies it; the report is the control
// socket's reply.
func (d *daemon) reload(ctx context.Context) (*control.ReloadReport, error) {
	d.mu.Lock()
	defer d.mu.Unlock()
	_ = d.notify.Notify(sdnotify.Reloading)
	defer func() { _ = d.notify.Notify(sdnotify.Ready) }()
	r, err := d.apply(ctx)
	d.metrics.Reload(err == nil)
	if err != nil {
		d.log.Error("reload refused; the running configuration is kept", "err", err)
		return nil, fmt.Errorf("reload refused, the running configuration is kept: %w", err)
	}
	d.log.Info("reload applied", "added", r.Added, "removed", r.Removed, "changed", r.Changed, "started", r.Started)
	return r, nil
}

func (d *daemon) apply(ctx context.Context) (*control.ReloadReport, error) {
	nc, err := config.Load(d.file)
	if err != nil {
		return nil, err
	}
	if err := haUsable(nc, d.b); err != nil {
		nc.Wipe()
		return nil, fmt.Errorf("%w: %w", control.ErrRefused, err)
	}
	// Against what runs: the started configuration for restart-only
	// settings (a refused change never became the running one).
	startDiff := config.Compare(d.started, nc)
	if slices.Contains(startDiff.Settings, "ha") {
		nc.Wipe()
		return nil, fmt.Errorf("%w: %w", control.ErrRefused, ErrHAReload)
	}
	for _, s := range restartOnly {
		if s.refuse && slices.Contains(startDiff.Settings, s.setting) {
			nc.Wipe()
			return nil, fmt.Errorf("%w: %s changed (%s); a backend change needs a restart of the daemon",
				control.ErrRefused, s.setting, backendChange(d.started, nc))
		}
	}
	// A standby's engine runs no connections: it gets the new ones at
	// the takeover.
	standby := d.ha != nil && !d.ha.active()
	var res ike.ReloadResult
	// Until the reload is done, children of either configuration may
	// come up or go down: the hooks' filter lets both through.
	d.updown.set(d.cfg, nc)
	defer func() { d.updown.set(d.cfg) }()
	if !standby {
		if res, err = d.eng.Reconfigure(ctx, nc); err != nil {
			nc.Wipe()
			return nil, err
		}
	} else if err := nc.Validate(); err != nil {
		nc.Wipe()
		return nil, err
	}
	diff := config.Compare(d.cfg, nc)
	r := &control.ReloadReport{Diff: diff, Connections: len(nc.Connections), Started: []string{}, Warnings: []string{},
		Closed: res.Closed}
	if r.Closed == nil {
		r.Closed = []ike.ClosedIKESA{}
	}
	for _, s := range restartOnly {
		if !s.refuse && slices.Contains(startDiff.Settings, s.setting) {
			w := s.setting + " changes need a restart; the running one is kept"
			r.Warnings = append(r.Warnings, w)
			d.log.Warn("reload: "+w, "file", d.file)
		}
	}
	for _, w := range nc.Warnings {
		r.Warnings = append(r.Warnings, w.Error())
	}
	logWarnings(d.log, nc)
	if !standby {
		r.Started = d.startAdded(d.cfg, nc, diff)
	}
	// The engine moved every SA still in use to nc, or closed it: no SA
	// needs the old configuration's keys any more (ike.Reconfigure).
	d.cfg.Wipe()
	d.cfg = nc
	d.level.Set(d.logLevel(nc))
	d.logs.SetConnLevels(logging.ConnLevels(nc))
	r.LogLevel, r.LogLevelFrom = d.level.Level().String(), d.levelSource()
	return r, nil
}

// startAdded initiates the children with start_action = start that the
// reload added or switched to start, and names them. The engine itself
// starts those of new connections; the others (a start child added to a
// connection that was there, or one whose start_action became start) it
// leaves, so the daemon initiates them. Initiating a child that is
// already negotiating only waits for it.
func (d *daemon) startAdded(old, nc *config.Config, diff config.Diff) []string {
	out := []string{}
	for _, c := range nc.Connections {
		newConn := slices.Contains(diff.Added.Connections, c.Name)
		for _, ch := range c.Children {
			if ch.StartAction != config.StartStart {
				continue
			}
			_, och := old.Child(ch.Name)
			if och != nil && och.StartAction == config.StartStart {
				continue
			}
			out = append(out, ch.Name)
			if newConn {
				continue
			}
			d.wg.Add(1)
			go func(name string) {
				defer d.wg.Done()
				ctx, cancel := context.WithTimeout(d.ctx, control.DefaultInitiateTimeout)
				defer cancel()
				if err := d.eng.Initiate(ctx, name); err != nil && d.ctx.Err() == nil {
					d.log.Warn("reload: initiating a start child failed", "child", name, "err", err)
				}
			}(ch.Name)
		}
	}
	return out
}

func backendChange(a, b *config.Config) string {
	return fmt.Sprintf("running %s %v, file %s %v", a.Backend.Name, a.Backend.Params, b.Backend.Name, b.Backend.Params)
}

// waitInitiations waits for what reloads started, at most until ctx ends.
func (d *daemon) waitInitiations(ctx context.Context) {
	done := make(chan struct{})
	go func() { d.wg.Wait(); close(done) }()
	select {
	case <-done:
	case <-ctx.Done():
	case <-time.After(10 * time.Second):
	}
}
