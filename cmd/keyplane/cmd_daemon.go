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
	level := fs.String("log-level", "", "log level (overrides daemon.log_level): debug, info, warn, error")
	if err := fs.Parse(args); err != nil {
		return err
	}
	cfg, err := config.Load(*file)
	if err != nil {
		return err
	}
	lvl := cfg.Daemon.LogLevel
	if *level != "" {
		if err := lvl.UnmarshalText([]byte(*level)); err != nil {
			return usageError{"bad -log-level: " + *level}
		}
	}
	var lv slog.LevelVar
	lv.Set(lvl)
	log := slog.New(slog.NewTextHandler(e.stderr, &slog.HandlerOptions{Level: &lv}))
	b, err := kernelops.Open(ctx, cfg.Backend.Name, kernelops.Options{Logger: log, Params: cfg.Backend.Params})
	if err != nil {
		return fmt.Errorf("open backend %s: %w", cfg.Backend.Name, err)
	}
	defer b.Close()
	eng, err := ike.New(ctx, ike.Options{Backend: b, Config: cfg, Logger: log})
	if err != nil {
		return err
	}
	reload := func(ctx context.Context) error {
		nc, err := config.Load(*file)
		if err != nil {
			log.Error("reload refused", "err", err)
			return err
		}
		if nc.Backend.Name != cfg.Backend.Name || fmt.Sprint(nc.Backend.Params) != fmt.Sprint(cfg.Backend.Params) {
			log.Warn("reload: backend changes need a restart; keeping", "backend", cfg.Backend.Name)
		}
		lv.Set(nc.Daemon.LogLevel)
		return eng.Reload(ctx, nc)
	}
	srv := &control.Server{Engine: eng, Reload: reload, Describe: eventText, Log: log}
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
			_ = reload(ctx)
		}
	}
	log.Info("shutting down: deleting IKE SAs")
	sctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
	defer cancel()
	srv.Close()
	err = eng.Shutdown(sctx)
	os.Remove(path)
	log.Info("keyplane daemon stopped")
	return err
}
