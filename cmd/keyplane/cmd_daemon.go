package main

import (
	"context"
	"errors"
	"fmt"
	"github.com/keyplane/keyplane/internal/procs"
	"log/slog"
	"os"
	"os/signal"
	"syscall"
	"time"

	"github.com/keyplane/keyplane/ike"
	"github.com/keyplane/keyplane/ike/config"
	"github.com/keyplane/keyplane/ike/control"
	"github.com/keyplane/keyplane/internal/buildinfo"
	"github.com/keyplane/keyplane/internal/logging"
	"github.com/keyplane/keyplane/internal/metrics"
	"github.com/keyplane/keyplane/internal/sdnotify"
	"github.com/keyplane/keyplane/kernelops"
)

func init() {
	register(&command{name: "daemon", usage: "[-c FILE] [-s SOCKET] [-log-level LEVEL]", run: runDaemon,
		summary: "run the IKE daemon",
		help: `Runs the engine on the configured backend (docs/config.md) and serves the control socket.
SIGHUP reloads the file (as 'keyplane reload' does); SIGTERM and SIGINT delete every IKE SA,
telling the peers, and exit. Under systemd (Type=notify, $NOTIFY_SOCKET) the daemon reports
READY=1 once it serves, RELOADING=1 and READY=1 around each reload, STOPPING=1 at shutdown,
and WATCHDOG=1 when WatchdogSec is set (only while the engine answers).
With daemon { metrics = ADDRESS:PORT } it serves Prometheus metrics on /metrics and Go's
profiler on /debug/pprof/ there.`})
}

// daemonHooks let backend-specific files add control commands (e.g.
// simulated traffic on the nokernel model).
var daemonHooks []func(b kernelops.Backend, e *ike.Engine, s *control.Server)

func runDaemon(ctx context.Context, e *env, args []string) error {
	fs := newFlags(e, "daemon")
	file := fs.String("c", "/etc/keyplane/keyplane.conf", "configuration file")
	sock := fs.String("s", e.socket, "control socket (overrides daemon.control)")
	level := fs.String("log-level", "", "log level (overrides daemon.log_level, also at reload): debug, info, warn, error")
	if err := e.parse(fs, args); err != nil {
		return err
	}
	if fs.NArg() != 0 {
		return usageError{fmt.Sprintf("no arguments, got %q (the configuration file is -c FILE)", fs.Args())}
	}
	var override *slog.Level
	if *level != "" {
		var l slog.Level
		if err := l.UnmarshalText([]byte(*level)); err != nil {
			return usageError{"bad -log-level: " + *level}
		}
		override = &l
	}
	cfg, err := config.Load(*file)
	if err != nil {
		return err
	}
	d := &daemon{file: *file, cfg: cfg, started: cfg, override: override, notify: sdnotify.FromEnv(), updown: &updownNames{}}
	d.updown.set(cfg)
	defer func() { d.cfg.Wipe() }()
	d.level.Set(d.logLevel(cfg))
	d.metrics = metrics.New(engineSource{d}, buildinfo.Read())
	logStream := logging.NewStream(e.stderr) // `keyplane log` follows it
	d.logs = logging.New(logStream, logging.Options{Format: cfg.Daemon.LogFormat, Level: &d.level, Hook: d.metrics.LogHook})
	d.logs.SetConnLevels(logging.ConnLevels(cfg))
	log := slog.New(d.logs)
	d.log = log
	logWarnings(log, cfg)
	b, err := kernelops.Open(ctx, cfg.Backend.Name, kernelops.Options{Logger: log, Params: cfg.Backend.Params})
	if err != nil {
		return fmt.Errorf("open backend %s: %w", cfg.Backend.Name, err)
	}
	defer b.Close()
	if err := haUsable(cfg, b); err != nil {
		return err
	}
	if cfg.Backend.Cleanup == config.CleanupOwned {
		// What an earlier run left (a crash, a kill -9) goes before
		// anything is installed, so nothing stale stays in the kernel.
		if err := cleanupOwned(ctx, b, log, "start"); err != nil {
			return err
		}
	}
	d.b = b
	engBackend, engCfg := kernelops.Backend(b), cfg
	if cfg.HA != nil {
		// A standby's engine runs without connections behind the fence
		// until this node wins the election (ha_daemon.go).
		if d.ha, err = startHA(ctx, cfg, b, log); err != nil {
			return err
		}
		engBackend, engCfg = d.ha.fenced, standbyConfig(cfg)
	}
	eng, err := ike.New(ctx, ike.Options{Backend: engBackend, Config: engCfg, Logger: log, Hooks: updownHooks{config: d.config, log: log, names: d.updown},
		OnEvent: d.metrics.EngineEvent})
	if err != nil {
		if d.ha != nil {
			d.ha.close()
		}
		return err
	}
	d.eng = eng
	dctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	d.ctx = dctx
	go d.metrics.Run(dctx, b)
	if _, set := os.LookupEnv("GOMAXPROCS"); !set {
		// One P until the load needs more (internal/procs says why).
		go procs.Adapt(dctx, procs.Default, log, nil)
	}
	srv := &control.Server{Engine: eng, Reload: d.reload, Config: d.config, Describe: eventText, Log: log, Logs: logSource{logStream}}
	d.handle(srv, b)
	d.handleHA(srv)
	for _, h := range daemonHooks {
		h(b, eng, srv)
	}
	path := cfg.Daemon.Control
	if *sock != "" {
		path = *sock
	}
	if err := srv.Listen(path); err != nil {
		eng.Close()
		return err
	}
	var ms *metrics.Server
	if a := cfg.Daemon.Metrics; a.IsValid() {
		if ms, err = metrics.Listen(a, d.metrics.Handler(), log); err != nil {
			srv.Close()
			eng.Close()
			return fmt.Errorf("daemon.metrics: %w", err)
		}
		log.Info("serving metrics", "addr", ms.Addr().String(), "paths", "/metrics /debug/pprof/")
	}
	// SIGHUP is caught before READY: a reload asked for right after it
	// must not meet SIGHUP's default action (exit).
	hup := make(chan os.Signal, 1)
	signal.Notify(hup, syscall.SIGHUP)
	defer signal.Stop(hup)
	log.Info("keyplane daemon running", "config", *file, "backend", b.Name(), "control", path, "pid", os.Getpid())
	if err := d.notify.Notify(sdnotify.Ready, "STATUS=serving on "+path); err != nil {
		log.Warn("cannot notify systemd", "err", err)
	}
	go d.watchdog(dctx)
	var lost <-chan struct{}
	haDone := make(chan struct{})
	if d.ha != nil {
		d.haMetrics()
		lost = d.ha.lost
		go func() { defer close(haDone); d.ha.run(dctx, d) }()
	} else {
		close(haDone)
	}
	var exitErr error
	for done := false; !done; {
		select {
		case <-ctx.Done():
			done = true
		case <-lost:
			done, exitErr = true, ErrLeadershipLost
		case <-hup:
			log.Info("SIGHUP: reloading")
			_, _ = d.reload(ctx)
		}
	}
	_ = d.notify.Notify(sdnotify.Stopping)
	log.Info("shutting down: deleting IKE SAs")
	sctx, scancel := context.WithTimeout(context.Background(), 5*time.Second)
	defer scancel()
	srv.Close() // removes the socket
	if ms != nil {
		_ = ms.Close(sctx)
	}
	cancel()
	d.waitInitiations(sctx)
	if d.ha != nil {
		// A stop hands over: no peer is told (the next active resumes
		// the IKE SAs), the lease goes last.
		<-haDone
		d.stopHA(sctx)
		log.Info("keyplane daemon stopped", "ha-role", roleStopping)
		return exitErr
	}
	err = eng.Shutdown(sctx)
	if cfg.Backend.Cleanup == config.CleanupOwned {
		// The engine removed what it knew of; this catches the rest
		// (an install whose reply was lost, a trap of a failed reload).
		// It has time of its own: the peers' delete exchanges may have
		// used all of sctx (100 tunnels on a slow host), and what stays
		// in the kernel matters more than a peer told.
		cctx, ccancel := context.WithTimeout(context.Background(), 5*time.Second)
		defer ccancel()
		if cerr := cleanupOwned(cctx, b, log, "stop"); err == nil {
			err = cerr
		}
	}
	log.Info("keyplane daemon stopped")
	return err
}

// watchdog sends WATCHDOG=1 at the interval systemd asks for, as long
// as the engine's loop answers: a wedged engine gets the daemon
// restarted.
func (d *daemon) watchdog(ctx context.Context) {
	every, err := sdnotify.WatchdogInterval()
	if err != nil {
		if !errors.Is(err, sdnotify.ErrNoWatchdog) {
			d.log.Warn("systemd watchdog: not pinging", "err", err)
		}
		return
	}
	t := time.NewTicker(every)
	defer t.Stop()
	for {
		select {
		case <-ctx.Done():
			return
		case <-t.C:
		}
		cctx, cancel := context.WithTimeout(ctx, every)
		_, err := d.eng.Handshakes(cctx)
		cancel()
		if err != nil {
			d.log.Error("systemd watchdog: the engine does not answer; not pinging", "err", err)
			continue
		}
		_ = d.notify.Notify(sdnotify.Watchdog)
	}
}

// engineSource is the engine's status for the metrics, through d (the
// metrics exist before the engine does).
type engineSource struct{ d *daemon }

var errNoEngine = errors.New("the engine is not running yet")

func (s engineSource) IKESAs(ctx context.Context) ([]ike.IKESAInfo, error) {
	if s.d.eng == nil {
		return nil, errNoEngine
	}
	return s.d.eng.IKESAs(ctx)
}

func (s engineSource) StateCounts(ctx context.Context) (map[ike.IKEState]int, map[ike.ChildState]int, error) {
	if s.d.eng == nil {
		return nil, nil, errNoEngine
	}
	return s.d.eng.StateCounts(ctx)
}

func (s engineSource) Handshakes(ctx context.Context) ([]time.Duration, error) {
	if s.d.eng == nil {
		return nil, errNoEngine
	}
	return s.d.eng.Handshakes(ctx)
}

func (s engineSource) SocketStats(ctx context.Context) ([]ike.SocketStats, error) {
	if s.d.eng == nil {
		return nil, errNoEngine
	}
	return s.d.eng.SocketStats(ctx)
}

func logWarnings(log *slog.Logger, cfg *config.Config) {
	for _, w := range cfg.Warnings {
		log.Warn("configuration: " + w.Error())
	}
}
