package main

import (
	"context"
	"fmt"
	"log/slog"
	"sync"

	"github.com/keyplane/keyplane/ike"
	"github.com/keyplane/keyplane/ike/config"
)

// daemon is the state a reload changes: the running configuration and
// the log level. A reload is all or nothing: the new file is loaded and
// validated, the engine applies it (or refuses it, changing nothing), and
// only then do the daemon's own settings follow.
type daemon struct {
	mu       sync.Mutex // SIGHUP and the control socket may reload at once
	file     string
	cfg      *config.Config // running
	started  *config.Config // at start: what needs a restart to change
	override *slog.Level    // -log-level, which wins at start and at every reload
	level    slog.LevelVar
	eng      *ike.Engine
	log      *slog.Logger
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
		return "from -log-level"
	}
	return "from daemon.log_level"
}

// reload re-reads the file and applies it; its text is the control
// socket's reply.
func (d *daemon) reload(ctx context.Context) (string, error) {
	d.mu.Lock()
	defer d.mu.Unlock()
	nc, err := config.Load(d.file)
	if err != nil {
		d.log.Error("reload refused; the running configuration is kept", "err", err)
		return "", fmt.Errorf("reload refused, the running configuration is kept: %w", err)
	}
	if err := d.eng.Reload(ctx, nc); err != nil {
		nc.Wipe()
		d.log.Error("reload refused; the running configuration is kept", "err", err)
		return "", fmt.Errorf("reload refused, the running configuration is kept: %w", err)
	}
	// Settings read only at start: say so rather than pretend.
	for _, c := range restartOnly(d.started, nc) {
		d.log.Warn("reload: "+c+" changes need a restart; keeping the running one", "file", d.file)
	}
	// The old configuration's keys are not wiped here: SAs of removed or
	// changed connections may still point at it until they are gone.
	d.cfg = nc
	d.level.Set(d.logLevel(nc))
	logWarnings(d.log, nc)
	return fmt.Sprintf("configuration reloaded: %d connections; log level %s (%s)",
		len(nc.Connections), d.level.Level(), d.levelSource()), nil
}

// restartOnly names the settings that differ between the configuration
// the daemon started with and nc, and that only a restart applies.
func restartOnly(started, nc *config.Config) []string {
	var out []string
	if nc.Backend.Name != started.Backend.Name || fmt.Sprint(nc.Backend.Params) != fmt.Sprint(started.Backend.Params) {
		out = append(out, "backend")
	}
	if nc.Backend.Cleanup != started.Backend.Cleanup {
		out = append(out, "backend.cleanup")
	}
	if nc.Daemon.Control != started.Daemon.Control {
		out = append(out, "daemon.control")
	}
	return out
}
