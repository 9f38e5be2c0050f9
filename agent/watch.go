package agent

import (
	"context"
	"path/filepath"
	"strconv"
	"time"

	"github.com/fsnotify/fsnotify"

	"github.com/edge-secrets/anax-agent/container"
)

// Reload reads the configuration again (the file, then the command-line flags over it) and
// applies what can change while the agent runs: log level, poll wait, backoff cap. A change to
// anything else is logged as needing a restart. An invalid file changes nothing.
func (a *Agent) Reload() error {
	if a.opts.Reparse == nil {
		return nil
	}
	cfg, err := a.opts.Reparse()
	if err != nil {
		a.log.Error("configuration not reloaded; the running one stays", "file", a.opts.ConfigFile, "err", err)
		a.metrics.Failures.WithLabelValues("reload").Inc()
		return err
	}
	lvl, _ := ParseLevel(cfg.LogLevel)
	before := a.level.Level()
	a.level.Set(lvl)
	a.pollWait.Store(int64(cfg.PollWait))
	a.backoffMax.Store(int64(cfg.BackoffMax))
	var restart []string
	for _, f := range []struct {
		name      string
		old, next string
	}{
		{"agbot_url", a.cfg.AgbotURL, cfg.AgbotURL}, {"agbot_ca", a.cfg.AgbotCA, cfg.AgbotCA},
		{"agbot_fingerprint", a.cfg.AgbotFingerprint, cfg.AgbotFingerprint}, {"org", a.cfg.Org, cfg.Org},
		{"state_dir", a.cfg.StateDir, cfg.StateDir}, {"secrets_root", a.cfg.SecretsRoot, cfg.SecretsRoot},
		{"ess_root", a.cfg.ESSRoot, cfg.ESSRoot},
		{"api_socket", a.cfg.APISocket, cfg.APISocket}, {"metrics_listen", a.cfg.MetricsListen, cfg.MetricsListen},
		{"allow_host_uids", a.cfg.AllowHostUIDs, cfg.AllowHostUIDs}, {"allow_capabilities", a.cfg.AllowCapabilities, cfg.AllowCapabilities},
		{"require_image_digest", strconv.FormatBool(a.cfg.RequireImageDigest), strconv.FormatBool(cfg.RequireImageDigest)},
		{"debug_pprof", strconv.FormatBool(a.cfg.DebugPprof), strconv.FormatBool(cfg.DebugPprof)},
	} {
		if f.old != f.next {
			restart = append(restart, f.name)
		}
	}
	a.log.Info("configuration reloaded", "log_level", lvl.String(), "log_level_was", before.String(),
		"poll_wait", time.Duration(cfg.PollWait).String(), "backoff_max", time.Duration(cfg.BackoffMax).String())
	if len(restart) > 0 {
		a.log.Warn("configuration changes that take effect after a restart", "fields", restart)
	}
	return nil
}

// watchConfig reloads the configuration when its file changes. It watches the directory, so
// editors that write a new file and rename it over the old one are seen too.
func (a *Agent) watchConfig(ctx context.Context) {
	w, err := fsnotify.NewWatcher()
	if err != nil {
		a.log.Error("config watch: fsnotify; reload with SIGHUP", "err", err)
		return
	}
	defer w.Close()
	file := filepath.Clean(a.opts.ConfigFile)
	if err := w.Add(filepath.Dir(file)); err != nil {
		a.log.Error("config watch; reload with SIGHUP", "dir", filepath.Dir(file), "err", err)
		return
	}
	var quiet *time.Timer
	var quietC <-chan time.Time
	for {
		select {
		case <-ctx.Done():
			return
		case ev, ok := <-w.Events:
			if !ok {
				return
			}
			if filepath.Clean(ev.Name) != file || !ev.Has(fsnotify.Write) && !ev.Has(fsnotify.Create) {
				continue
			}
			// An editor writes in several steps: read once they are done.
			if quiet == nil {
				quiet = time.NewTimer(200 * time.Millisecond)
			} else {
				quiet.Reset(200 * time.Millisecond)
			}
			quietC = quiet.C
		case err, ok := <-w.Errors:
			if !ok {
				return
			}
			a.log.Warn("config watch", "err", err)
		case <-quietC:
			quietC = nil
			a.log.Info("configuration file changed", "file", file)
			_ = a.Reload()
		}
	}
}

// watchDeaths logs containers of this agent that die on their own (the engine restarts them,
// restart policy unless-stopped) and counts them; it follows the engine's event stream again
// after an error.
func (a *Agent) watchDeaths(ctx context.Context) {
	for ctx.Err() == nil {
		err := a.worker.Watch(ctx, func(d container.Death) {
			a.metrics.Failures.WithLabelValues("container").Inc()
			a.log.Warn("a service container exited; the engine restarts it", "container", d.Name,
				"agreement", d.InstanceID, "exit_code", d.ExitCode)
		})
		if ctx.Err() != nil {
			return
		}
		a.log.Warn("docker event stream ended; following it again", "err", err)
		sleep(ctx, 2*time.Second)
	}
}
