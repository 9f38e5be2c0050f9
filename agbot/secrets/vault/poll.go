package vault

import (
	"context"
	"fmt"
	"strings"
	"time"

	vault "github.com/hashicorp/vault/api"

	"github.com/edge-secrets/anax-agent/agbot/secrets"
)

// pollLoop looks for writes made directly in Vault every PollInterval. Its cost depends on the
// number of secrets in the mount and never on the number of agreements: it knows none.
func (m *Manager) pollLoop(ctx context.Context) {
	interval := m.cfg.PollInterval
	maxBackoff := max(interval, 10*time.Second)
	wait := time.Duration(0) // the first poll, which takes the baseline, runs at once
	failing, stretched := false, false
	for {
		select {
		case <-ctx.Done():
			return
		case <-time.After(wait):
		}
		start := time.Now()
		err := m.pollOnce(ctx)
		took := time.Since(start)
		switch {
		case ctx.Err() != nil:
			return
		case err != nil:
			// Log the first failure and the recovery, not every retry.
			if !failing {
				m.log.Warn("vault: poll failed; retrying with backoff", "err", err)
				failing = true
				wait = interval
			}
			wait = min(2*wait, maxBackoff)
		default:
			if failing {
				m.log.Info("vault: poll recovered")
				failing = false
			}
			wait = interval
			if d := pollDuty * took; d > wait {
				if !stretched {
					m.log.Warn("vault: poll is slow; polling less often", "took", took.String(), "every", d.String())
				}
				wait, stretched = d, true
			} else {
				stretched = false
			}
		}
	}
}

// pollOnce reads the state of every secret in the mount (one request on OpenBao) and announces
// what changed since the last poll or manager write. The first successful poll only records.
func (m *Manager) pollOnce(ctx context.Context) error {
	m.pollMu.Lock()
	defer m.pollMu.Unlock()
	startSeq := m.seq.Load()
	observed, stats, err := m.observe(ctx)
	m.mu.Lock()
	m.lastPoll = stats
	m.mu.Unlock()
	if err != nil {
		return err
	}

	var changes []secrets.Change
	m.mu.Lock()
	for path, fp := range observed {
		old, known := m.seen[path]
		switch {
		case known && old.seq > startSeq:
			// The manager wrote it while this poll ran: its entry is newer than fp.
			continue
		case !m.baselined:
		case !known && !fp.deleted, known && !old.fp.equal(fp) && !(old.fp.deleted && fp.deleted):
			changes = append(changes, change(path, fp))
		}
		m.seen[path] = entry{fp: fp}
	}
	for path, old := range m.seen {
		if _, ok := observed[path]; ok || old.seq > startSeq {
			continue
		}
		if m.baselined && !old.fp.deleted {
			changes = append(changes, change(path, fingerprint{deleted: true}))
		}
		delete(m.seen, path)
	}
	m.baselined = true
	m.mu.Unlock()
	m.polls.Add(1)

	for _, c := range changes {
		m.log.Info("vault: secret changed outside the agbot", "org", c.Org, "name", c.Name,
			"change", c.Kind.String(), "version", c.Version)
		m.feed.Publish(c)
	}
	return nil
}

func change(path string, fp fingerprint) secrets.Change {
	org, name, _ := strings.Cut(path, "/")
	if fp.deleted {
		return secrets.Change{Org: org, Name: name, Kind: secrets.Deleted}
	}
	return secrets.Change{Org: org, Name: name, Kind: secrets.Updated, Version: fp.version}
}

// observe returns the fingerprint of every secret in the mount that the agbot can address.
func (m *Manager) observe(ctx context.Context) (map[string]fingerprint, pollStats, error) {
	switch m.currentMode() {
	case PollWalk:
		return m.walk(ctx)
	case PollScan:
		return m.scan(ctx)
	}
	obs, stats, err := m.scan(ctx)
	if !isUnsupported(err) {
		return obs, stats, err
	}
	m.setMode(PollWalk, err)
	return m.walk(ctx)
}

// scan is one OpenBao SCAN of <mount>/detailed-metadata/: every secret's metadata, recursively.
func (m *Manager) scan(ctx context.Context) (map[string]fingerprint, pollStats, error) {
	stats := pollStats{requests: 1}
	resp, err := m.poller.Logical().ReadRawWithDataWithContext(ctx, m.mount+"/detailed-metadata/",
		map[string][]string{"scan": {"true"}})
	if resp != nil {
		defer resp.Body.Close()
	}
	if err != nil {
		return nil, stats, pollError(err)
	}
	sec, err := vault.ParseSecret(resp.Body)
	if err != nil {
		return nil, stats, fmt.Errorf("vault: poll: %w", err)
	}
	obs := map[string]fingerprint{}
	if sec == nil || sec.Data == nil {
		return obs, stats, nil
	}
	infos, _ := sec.Data["key_info"].(map[string]any)
	for path, info := range infos {
		m.addObserved(obs, path, info)
	}
	stats.secrets = len(obs)
	return obs, stats, nil
}

// walk is the HashiCorp Vault way: LIST every directory, read every secret's metadata.
func (m *Manager) walk(ctx context.Context) (map[string]fingerprint, pollStats, error) {
	var stats pollStats
	obs := map[string]fingerprint{}
	dirs := []string{""}
	for len(dirs) > 0 {
		dir := dirs[len(dirs)-1]
		dirs = dirs[:len(dirs)-1]
		stats.requests++
		keys, _, err := m.list(ctx, dir, false)
		if err != nil {
			return nil, stats, pollError(err)
		}
		for _, k := range keys {
			if strings.HasSuffix(k, "/") {
				dirs = append(dirs, dir+k)
				continue
			}
			path := dir + k
			if !addressable(path) {
				continue
			}
			stats.requests++
			resp, err := m.poller.Logical().ReadWithContext(ctx, m.mount+"/metadata/"+path)
			if err != nil {
				return nil, stats, pollError(err)
			}
			if resp != nil {
				m.addObserved(obs, path, resp.Data)
			}
		}
	}
	stats.secrets = len(obs)
	return obs, stats, nil
}

func (m *Manager) addObserved(obs map[string]fingerprint, path string, info any) {
	if !addressable(path) {
		return
	}
	fp, err := parseMetadata(info)
	if err != nil {
		m.log.Debug("vault: poll: unreadable metadata", "path", path, "err", err)
		return
	}
	obs[path] = fp
}

// addressable: "org/name" with a valid org and manager name. Anything else in the mount was
// put there by hand and is none of the agbot's business.
func addressable(path string) bool {
	org, name, ok := strings.Cut(path, "/")
	if !ok {
		return false
	}
	_, err := secrets.Check(org, name)
	return err == nil
}

func pollError(err error) error {
	if isUnsupported(err) {
		return fmt.Errorf("vault: poll: %w", err) // observe's fallback looks for this
	}
	return fmt.Errorf("vault: poll: %w", classify(err))
}
