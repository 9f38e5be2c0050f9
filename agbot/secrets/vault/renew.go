package vault

import (
	"context"
	"time"

	vault "github.com/hashicorp/vault/api"
)

// renewLoop keeps a renewable token alive with vault/api's LifetimeWatcher. A token that is
// not renewable (a root token, a batch token) is left alone. Errors are retried with backoff:
// Vault being down must not stop renewal once it is back.
func (m *Manager) renewLoop(ctx context.Context) {
	const maxBackoff = 30 * time.Second
	backoff := time.Second
	sleep := func(d time.Duration) bool {
		select {
		case <-ctx.Done():
			return false
		case <-time.After(d):
			return true
		}
	}
	for {
		self, err := m.client.Auth().Token().LookupSelfWithContext(ctx)
		if err != nil {
			if ctx.Err() != nil {
				return
			}
			m.log.Debug("vault: token lookup failed; retrying", "err", err)
			if !sleep(backoff) {
				return
			}
			backoff = min(2*backoff, maxBackoff)
			continue
		}
		backoff = time.Second
		renewable, _ := self.TokenIsRenewable()
		ttl, _ := self.TokenTTL()
		if !renewable || ttl <= 0 {
			m.log.Info("vault: token is not renewable; not renewing it", "ttl", ttl.String())
			return
		}
		w, err := m.client.NewLifetimeWatcher(&vault.LifetimeWatcherInput{
			Secret: &vault.Secret{Auth: &vault.SecretAuth{
				ClientToken:   m.client.Token(),
				Renewable:     true,
				LeaseDuration: int(ttl.Seconds()),
			}},
		})
		if err != nil {
			m.log.Warn("vault: token renewal not started", "err", err)
			return
		}
		m.log.Info("vault: renewing token", "ttl", ttl.String())
		go w.Start()
		if !m.watch(ctx, w) {
			return
		}
		// The watcher stopped: the token reached its max TTL or renewal kept failing until the
		// lease ran out. Look again after a pause: it may have been extended meanwhile.
		if !sleep(maxBackoff) {
			return
		}
	}
}

// watch reports renewals until the watcher stops (true) or ctx ends (false).
func (m *Manager) watch(ctx context.Context, w *vault.LifetimeWatcher) bool {
	defer w.Stop()
	for {
		select {
		case <-ctx.Done():
			return false
		case err := <-w.DoneCh():
			if err != nil {
				m.log.Warn("vault: token renewal stopped", "err", err)
			} else {
				m.log.Warn("vault: token can not be renewed further; it will expire")
			}
			return true
		case r := <-w.RenewCh():
			ttl := 0
			if r != nil && r.Secret != nil && r.Secret.Auth != nil {
				ttl = r.Secret.Auth.LeaseDuration
			}
			m.log.Debug("vault: token renewed", "ttl_seconds", ttl)
		}
	}
}
