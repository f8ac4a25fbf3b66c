package main

import (
	"context"
	"fmt"
	"log/slog"
	"os"
	"os/signal"
	"syscall"
	"time"

	"github.com/keyplane/keyplane/ike"
	"github.com/keyplane/keyplane/ike/config"
	"github.com/keyplane/keyplane/ike/control"
	"github.com/keyplane/keyplane/kernelops"
)

func init() {
	register(&command{name: "daemon", summary: "run the IKE daemon: 'daemon -c FILE'", run: runDaemon})
}

// daemonHooks let backend-specific files add control commands (e.g.
// simulated traffic on the nokernel model).
var daemonHooks []func(b kernelops.Backend, e *ike.Engine, s *control.Server)

func runDaemon(ctx context.Context, e *env, args []string) error {
	fs := newFlags(e, "daemon")
	file := fs.String("c", "/etc/keyplane/keyplane.conf", "configuration file")
	sock := fs.String("s", "", "control socket (overrides daemon.control)")
	level := fs.String("log-level", "", "log level (overrides daemon.log_level, also at reload): debug, info, warn, error")
	if err := fs.Parse(args); err != nil {
		return err
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
	d := &daemon{file: *file, cfg: cfg, started: cfg, override: override}
	defer func() { d.cfg.Wipe() }()
	d.level.Set(d.logLevel(cfg))
	log := slog.New(slog.NewTextHandler(e.stderr, &slog.HandlerOptions{Level: &d.level}))
	d.log = log
	logWarnings(log, cfg)
	b, err := kernelops.Open(ctx, cfg.Backend.Name, kernelops.Options{Logger: log, Params: cfg.Backend.Params})
	if err != nil {
		return fmt.Errorf("open backend %s: %w", cfg.Backend.Name, err)
	}
	defer b.Close()
	if cfg.Backend.Cleanup == config.CleanupOwned {
		// What an earlier run left (a crash, a kill -9) goes before
		// anything is installed, so nothing stale stays in the kernel.
		if err := cleanupOwned(ctx, b, log, "start"); err != nil {
			return err
		}
	}
	eng, err := ike.New(ctx, ike.Options{Backend: b, Config: cfg, Logger: log})
	if err != nil {
		return err
	}
	d.eng = eng
	srv := &control.Server{Engine: eng, Reload: d.reload, Describe: eventText, Log: log}
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
	log.Info("keyplane daemon running", "config", *file, "backend", b.Name(), "control", path, "pid", os.Getpid())
	hup := make(chan os.Signal, 1)
	signal.Notify(hup, syscall.SIGHUP)
	defer signal.Stop(hup)
	for done := false; !done; {
		select {
		case <-ctx.Done():
			done = true
		case <-hup:
			log.Info("SIGHUP: reloading")
			_, _ = d.reload(ctx)
		}
	}
	log.Info("shutting down: deleting IKE SAs")
	sctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
	defer cancel()
	srv.Close() // removes the socket
	err = eng.Shutdown(sctx)
	if cfg.Backend.Cleanup == config.CleanupOwned {
		// The engine removed what it knew of; this catches the rest
		// (an install whose reply was lost, a trap of a failed reload).
		if cerr := cleanupOwned(sctx, b, log, "stop"); err == nil {
			err = cerr
		}
	}
	log.Info("keyplane daemon stopped")
	return err
}

func logWarnings(log *slog.Logger, cfg *config.Config) {
	for _, w := range cfg.Warnings {
		log.Warn("configuration: " + w.Error())
	}
}
