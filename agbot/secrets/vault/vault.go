package vault

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"log/slog"
	"net/http"
	"slices"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	vault "github.com/hashicorp/vault/api"

	"github.com/edge-secrets/anax-agent/agbot/secrets"
	"github.com/edge-secrets/anax-agent/agbot/secrets/internal/feed"
)

// Defaults for Config.
const (
	DefaultMount        = "openhorizon"
	DefaultPollInterval = 2 * time.Second
	DefaultTimeout      = 10 * time.Second

	pollTimeout = 2 * time.Minute
	// pollDuty: the poll waits at least pollDuty times as long as the last poll took, so a
	// mount with very many secrets (or a slow Vault) is kept busy by the poll at most about
	// 1/pollDuty of the time, at the price of finding direct writes later.
	pollDuty = 10
)

// PollMode says how the poll finds changes made directly in Vault.
type PollMode int

const (
	// PollAuto uses OpenBao's SCAN and falls back to PollWalk (once, logged) on a server that
	// does not know it.
	PollAuto PollMode = iota
	// PollScan: one SCAN of <mount>/detailed-metadata/ per poll (OpenBao 2.1+).
	PollScan
	// PollWalk: a recursive LIST of <mount>/metadata/ and one metadata read per secret
	// (HashiCorp Vault).
	PollWalk
)

func (p PollMode) String() string {
	switch p {
	case PollAuto:
		return "auto"
	case PollScan:
		return "scan"
	case PollWalk:
		return "walk"
	}
	return fmt.Sprintf("PollMode(%d)", int(p))
}

// Config configures a Manager. Addr and Token are required.
type Config struct {
	Addr  string // e.g. https://vault.example:8200
	Token string // the agbot's token; renewed in the background when renewable
	Mount string // KV v2 mount; DefaultMount when empty
	// PollInterval is how often writes made directly in Vault are looked for; DefaultPollInterval
	// when zero. While Vault is unreachable the poll backs off up to max(PollInterval, 10s).
	// The wait stretches to 10 times the last poll's duration when that is longer.
	PollInterval time.Duration
	PollMode     PollMode
	// Timeout bounds one request; DefaultTimeout when zero.
	Timeout time.Duration
	// CACert is a PEM file to verify Vault's TLS certificate with; the system roots when empty.
	CACert string
	// HTTPClient replaces the client's HTTP client (tests count requests with it).
	HTTPClient *http.Client
	Logger     *slog.Logger // slog.Default() when nil
}

// Manager is the Vault/OpenBao KV v2 secrets manager. It implements secrets.Manager.
type Manager struct {
	client *vault.Client
	// poller is client with a longer timeout: one SCAN of a large mount can take seconds.
	poller *vault.Client
	mount  string
	cfg    Config
	log    *slog.Logger
	feed   *feed.Feed

	cancel context.CancelFunc
	wg     sync.WaitGroup
	closed atomic.Bool

	// Poll state: what each path ("org/name") looked like at the last poll or manager write.
	mu        sync.Mutex
	seen      map[string]entry
	baselined bool
	mode      PollMode // PollScan or PollWalk once known
	seq       atomic.Uint64

	pollMu   sync.Mutex   // one pollOnce at a time
	polls    atomic.Int64 // successful polls, for tests
	lastPoll pollStats    // written by pollOnce under mu; read by tests and benchmarks
}

// fingerprint tells one state of a secret from another: a new version, a re-creation after a
// metadata delete (same version, new created time), a soft delete or destroy.
type fingerprint struct {
	version int64
	created time.Time
	deleted bool
}

// equal compares created times to the second: OpenBao's metadata has second resolution, so a
// secret deleted and written again within the same second and the same poll is not told apart.
func (a fingerprint) equal(b fingerprint) bool {
	return a.version == b.version && a.deleted == b.deleted &&
		a.created.Truncate(time.Second).Equal(b.created.Truncate(time.Second))
}

type entry struct {
	fp fingerprint
	// seq is the manager write that set this entry (0: set by a poll). A poll that started
	// before that write saw an older state and must leave the entry alone.
	seq uint64
}

type pollStats struct {
	requests int
	secrets  int
}

var _ secrets.Manager = (*Manager)(nil)

// New returns a Manager and starts its poll and token renewal. It does not contact Vault first:
// the agbot starts (and answers 503) while Vault is down.
func New(cfg Config) (*Manager, error) {
	if cfg.Addr == "" {
		return nil, errors.New("vault: no address")
	}
	if cfg.Token == "" {
		return nil, errors.New("vault: no token")
	}
	if cfg.Mount == "" {
		cfg.Mount = DefaultMount
	}
	cfg.Mount = strings.Trim(cfg.Mount, "/")
	if cfg.PollInterval <= 0 {
		cfg.PollInterval = DefaultPollInterval
	}
	if cfg.Timeout <= 0 {
		cfg.Timeout = DefaultTimeout
	}
	if cfg.Logger == nil {
		cfg.Logger = slog.Default()
	}
	vc := vault.DefaultConfig()
	if cfg.HTTPClient != nil {
		vc.HttpClient = cfg.HTTPClient
	}
	vc.Address = cfg.Addr
	vc.Timeout = cfg.Timeout
	// One quick retry: an API caller gets its 503 in well under a second; the poll retries on
	// its own schedule.
	vc.MaxRetries = 1
	vc.MinRetryWait = 100 * time.Millisecond
	vc.MaxRetryWait = 400 * time.Millisecond
	if cfg.CACert != "" {
		if err := vc.ConfigureTLS(&vault.TLSConfig{CACert: cfg.CACert}); err != nil {
			return nil, fmt.Errorf("vault: TLS: %w", err)
		}
	}
	client, err := vault.NewClient(vc)
	if err != nil {
		return nil, fmt.Errorf("vault: %w", err)
	}
	client.SetToken(cfg.Token)
	poller, err := client.Clone()
	if err != nil {
		return nil, fmt.Errorf("vault: %w", err)
	}
	poller.SetToken(cfg.Token)
	poller.SetClientTimeout(max(cfg.Timeout, pollTimeout))
	ctx, cancel := context.WithCancel(context.Background())
	m := &Manager{
		client: client,
		poller: poller,
		mount:  cfg.Mount,
		cfg:    cfg,
		log:    cfg.Logger.With("component", "secrets/vault", "mount", cfg.Mount),
		feed:   feed.New(),
		cancel: cancel,
		seen:   map[string]entry{},
		mode:   cfg.PollMode,
	}
	m.wg.Add(2)
	go func() { defer m.wg.Done(); m.pollLoop(ctx) }()
	go func() { defer m.wg.Done(); m.renewLoop(ctx) }()
	return m, nil
}

// Close stops the poll and the token renewal and closes every watch channel.
func (m *Manager) Close() error {
	if m.closed.Swap(true) {
		return nil
	}
	m.cancel()
	m.wg.Wait()
	m.feed.Close()
	return nil
}

// Watch returns the changes from now on: the manager's own writes at once, direct writes in
// Vault within about a poll interval.
func (m *Manager) Watch(ctx context.Context) <-chan secrets.Change { return m.feed.Watch(ctx) }

func (m *Manager) begin(ctx context.Context) error {
	if err := ctx.Err(); err != nil {
		return err
	}
	if m.closed.Load() {
		return secrets.ErrClosed
	}
	return nil
}

// Put creates or overwrites a secret.
func (m *Manager) Put(ctx context.Context, org, name string, s secrets.Secret) (int64, error) {
	return m.write(ctx, org, name, s, false)
}

// Create stores a secret only if none exists under that name (check-and-set 0).
func (m *Manager) Create(ctx context.Context, org, name string, s secrets.Secret) (int64, error) {
	return m.write(ctx, org, name, s, true)
}

func (m *Manager) write(ctx context.Context, org, name string, s secrets.Secret, onlyNew bool) (int64, error) {
	if err := secrets.CheckWrite(org, name, s); err != nil {
		return 0, err
	}
	if err := m.begin(ctx); err != nil {
		return 0, err
	}
	path := org + "/" + name
	body := map[string]any{"data": map[string]any{"key": s.Key, "value": s.Value}}
	if onlyNew {
		body["options"] = map[string]any{"cas": 0}
	}
	resp, err := m.client.Logical().WriteWithContext(ctx, m.mount+"/data/"+path, body)
	if onlyNew && isCASMismatch(err) {
		// Check-and-set 0 also fails on a secret deleted directly in Vault with `kv delete`,
		// whose metadata stays. Get calls that not found, so Create must be able to fill it.
		var fp fingerprint
		var found bool
		fp, found, err = m.readMetadata(ctx, path)
		if err == nil {
			if !found || !fp.deleted {
				return 0, fmt.Errorf("creating secret %q in org %q: %w", name, org, secrets.ErrExists)
			}
			body["options"] = map[string]any{"cas": fp.version}
			resp, err = m.client.Logical().WriteWithContext(ctx, m.mount+"/data/"+path, body)
			if isCASMismatch(err) {
				return 0, fmt.Errorf("creating secret %q in org %q: %w", name, org, secrets.ErrExists)
			}
		}
	}
	if err != nil {
		return 0, m.wrap(ctx, "writing", org, name, err)
	}
	if resp == nil {
		return 0, fmt.Errorf("writing secret %q in org %q: empty response from vault", name, org)
	}
	version, created, err := versionInfo(resp.Data)
	if err != nil {
		return 0, fmt.Errorf("writing secret %q in org %q: %w", name, org, err)
	}
	m.noteWrite(path, fingerprint{version: version, created: created})
	m.feed.Publish(secrets.Change{Org: org, Name: name, Kind: secrets.Updated, Version: version})
	return version, nil
}

// Get returns the current secret and its version.
func (m *Manager) Get(ctx context.Context, org, name string) (secrets.Secret, int64, error) {
	if _, err := secrets.Check(org, name); err != nil {
		return secrets.Secret{}, 0, err
	}
	if err := m.begin(ctx); err != nil {
		return secrets.Secret{}, 0, err
	}
	resp, err := m.client.Logical().ReadWithContext(ctx, m.mount+"/data/"+org+"/"+name)
	if err != nil {
		return secrets.Secret{}, 0, m.wrap(ctx, "reading", org, name, err)
	}
	// No response: never written or metadata deleted. No data: the current version was
	// deleted or destroyed (vault/api returns those 404s with their metadata).
	if resp == nil || resp.Data == nil || resp.Data["data"] == nil {
		return secrets.Secret{}, 0, fmt.Errorf("reading secret %q in org %q: %w", name, org, secrets.ErrNotFound)
	}
	data, ok := resp.Data["data"].(map[string]any)
	key, okK := data["key"].(string)
	val, okV := data["value"].(string)
	if !ok || !okK || !okV {
		// Written by something else than an agbot or anax: say so without echoing the data.
		return secrets.Secret{}, 0, fmt.Errorf("reading secret %q in org %q: vault data is not {\"key\": string, \"value\": string}", name, org)
	}
	meta, _ := resp.Data["metadata"].(map[string]any)
	version, _, err := versionInfo(meta)
	if err != nil {
		return secrets.Secret{}, 0, fmt.Errorf("reading secret %q in org %q: %w", name, org, err)
	}
	return secrets.Secret{Key: key, Value: val}, version, nil
}

// Delete removes a secret with all its versions (its metadata).
func (m *Manager) Delete(ctx context.Context, org, name string) error {
	if _, err := secrets.Check(org, name); err != nil {
		return err
	}
	if err := m.begin(ctx); err != nil {
		return err
	}
	path := org + "/" + name
	fp, found, err := m.readMetadata(ctx, path)
	if err != nil {
		return m.wrap(ctx, "deleting", org, name, err)
	}
	if !found || fp.deleted {
		return fmt.Errorf("deleting secret %q in org %q: %w", name, org, secrets.ErrNotFound)
	}
	if _, err := m.client.Logical().DeleteWithContext(ctx, m.mount+"/metadata/"+path); err != nil {
		return m.wrap(ctx, "deleting", org, name, err)
	}
	m.noteWrite(path, fingerprint{deleted: true})
	m.feed.Publish(secrets.Change{Org: org, Name: name, Kind: secrets.Deleted})
	return nil
}

// List returns the full names of the secrets directly in scope, sorted. On OpenBao, secrets
// whose current version was deleted directly in Vault are left out; on Vault they are listed.
func (m *Manager) List(ctx context.Context, org, scope string) ([]string, error) {
	if err := secrets.ValidateOrg(org); err != nil {
		return nil, err
	}
	if _, err := secrets.ParseScope(scope); err != nil {
		return nil, err
	}
	if err := m.begin(ctx); err != nil {
		return nil, err
	}
	dir := org + "/"
	if scope != "" {
		dir += scope + "/"
	}
	names := []string{}
	// Nested names ("test/password1") are in subdirectories: walk them, except the
	// directories of other scopes (user/ and node/ under the org, node/ under a user).
	dirs := []string{dir}
	for len(dirs) > 0 {
		d := dirs[len(dirs)-1]
		dirs = dirs[:len(dirs)-1]
		keys, infos, err := m.list(ctx, d, m.currentMode() != PollWalk)
		if err != nil {
			return nil, m.wrap(ctx, "listing", org, scope, err)
		}
		for _, k := range keys {
			full := strings.TrimPrefix(d+k, org+"/")
			if strings.HasSuffix(k, "/") {
				if d != dir || !otherScope(scope, k) {
					dirs = append(dirs, d+k)
				}
				continue
			}
			if info, ok := infos[k]; ok {
				if fp, err := parseMetadata(info); err == nil && fp.deleted {
					continue
				}
			}
			if n, err := secrets.ParseName(full); err != nil || n.Scope() != scope {
				continue // put there by hand under a name the agbot can not address
			}
			names = append(names, full)
		}
	}
	slices.Sort(names)
	return names, nil
}

// otherScope tells the subdirectories of a scope's directory that hold other scopes.
func otherScope(scope, sub string) bool {
	switch {
	case scope == "":
		return sub == "user/" || sub == "node/"
	case strings.HasPrefix(scope, "user/") && !strings.Contains(scope, "/node/"):
		return sub == "node/"
	}
	return false
}

// list LISTs one directory, with each entry's metadata when detailed (OpenBao). A missing
// directory is an empty list.
func (m *Manager) list(ctx context.Context, dir string, detailed bool) ([]string, map[string]any, error) {
	endpoint := "/metadata/"
	if detailed {
		endpoint = "/detailed-metadata/"
	}
	resp, err := m.client.Logical().ListWithContext(ctx, m.mount+endpoint+dir)
	if detailed && isUnsupported(err) {
		m.setMode(PollWalk, err)
		return m.list(ctx, dir, false)
	}
	if err != nil || resp == nil {
		return nil, nil, err
	}
	keys, err := stringList(resp.Data["keys"])
	if err != nil {
		return nil, nil, err
	}
	infos, _ := resp.Data["key_info"].(map[string]any)
	return keys, infos, nil
}

// readMetadata reads one secret's metadata; found is false when it has none.
func (m *Manager) readMetadata(ctx context.Context, path string) (fingerprint, bool, error) {
	resp, err := m.client.Logical().ReadWithContext(ctx, m.mount+"/metadata/"+path)
	if err != nil {
		return fingerprint{}, false, err
	}
	if resp == nil || resp.Data == nil {
		return fingerprint{}, false, nil
	}
	fp, err := parseMetadata(resp.Data)
	return fp, err == nil, err
}

// noteWrite records the manager's own write, so the poll neither announces it again nor
// mistakes an older observation for a change.
func (m *Manager) noteWrite(path string, fp fingerprint) {
	m.mu.Lock()
	defer m.mu.Unlock()
	m.seen[path] = entry{fp: fp, seq: m.seq.Add(1)}
}

// wrap turns a vault/api error into the package's sentinels with context.
func (m *Manager) wrap(ctx context.Context, op, org, name string, err error) error {
	what := fmt.Sprintf("%s secret %q in org %q", op, name, org)
	if op == "listing" {
		what = fmt.Sprintf("listing secrets in org %q scope %q", org, name)
	}
	if ctx.Err() != nil {
		return fmt.Errorf("%s: %w", what, ctx.Err())
	}
	return fmt.Errorf("%s: %w", what, classify(err))
}

// classify maps an error from vault/api to ErrUnavailable (unreachable, sealed, overloaded,
// token refused) or keeps it.
func classify(err error) error {
	var re *vault.ResponseError
	if !errors.As(err, &re) {
		// No HTTP answer at all: connection refused, timeout, TLS failure.
		return fmt.Errorf("%w: %w", secrets.ErrUnavailable, err)
	}
	switch {
	case re.StatusCode == http.StatusNotFound:
		// Reads and lists turn a missing secret into a nil response before this; a 404 here
		// is a missing mount or a path the mount does not serve: the agbot can not work.
		return fmt.Errorf("%w: is the KV v2 mount enabled? %w", secrets.ErrUnavailable, err)
	case re.StatusCode == http.StatusUnauthorized, re.StatusCode == http.StatusForbidden:
		return fmt.Errorf("%w: vault refused the agbot's token: %w", secrets.ErrUnavailable, err)
	case re.StatusCode == http.StatusTooManyRequests, re.StatusCode >= 500:
		return fmt.Errorf("%w: %w", secrets.ErrUnavailable, err)
	}
	return err
}

func isCASMismatch(err error) bool {
	var re *vault.ResponseError
	if !errors.As(err, &re) || re.StatusCode != http.StatusBadRequest {
		return false
	}
	for _, e := range re.Errors {
		if strings.Contains(e, "check-and-set") {
			return true
		}
	}
	return false
}

// isUnsupported: the server does not know detailed-metadata (HashiCorp Vault answers 404 with
// a warning and no error, or 405). A missing mount is a 404 with an error: not this.
func isUnsupported(err error) bool {
	var re *vault.ResponseError
	if !errors.As(err, &re) {
		return false
	}
	return re.StatusCode == http.StatusMethodNotAllowed ||
		re.StatusCode == http.StatusNotFound && len(re.Errors) == 0
}

func (m *Manager) currentMode() PollMode {
	m.mu.Lock()
	defer m.mu.Unlock()
	return m.mode
}

func (m *Manager) setMode(mode PollMode, why error) {
	m.mu.Lock()
	defer m.mu.Unlock()
	if m.mode == PollAuto {
		m.log.Info("vault: no OpenBao SCAN; polling by LIST walk and one metadata read per secret", "reason", why)
		m.mode = mode
	}
}

// versionInfo reads "version" and "created_time" from a write response or a read's metadata.
func versionInfo(meta map[string]any) (int64, time.Time, error) {
	v, err := toInt(meta["version"])
	if err != nil || v <= 0 {
		return 0, time.Time{}, fmt.Errorf("vault response without a version")
	}
	created, _ := time.Parse(time.RFC3339Nano, str(meta["created_time"]))
	return v, created, nil
}

// parseMetadata reads a KV v2 metadata record (a metadata read or a detailed-metadata entry).
func parseMetadata(raw any) (fingerprint, error) {
	meta, ok := raw.(map[string]any)
	if !ok {
		return fingerprint{}, errors.New("vault metadata is not an object")
	}
	if len(meta) == 0 {
		return fingerprint{}, errors.New("no metadata (a directory)")
	}
	cur, err := toInt(meta["current_version"])
	if err != nil {
		return fingerprint{}, fmt.Errorf("vault metadata current_version: %w", err)
	}
	fp := fingerprint{version: cur, deleted: cur == 0}
	versions, _ := meta["versions"].(map[string]any)
	v, _ := versions[fmt.Sprint(cur)].(map[string]any)
	if v == nil {
		fp.deleted = true // no record of the current version: pruned or destroyed
		return fp, nil
	}
	fp.created, _ = time.Parse(time.RFC3339Nano, str(v["created_time"]))
	if d, _ := v["destroyed"].(bool); d {
		fp.deleted = true
	}
	if del := str(v["deletion_time"]); del != "" {
		// A deletion_time in the future is a scheduled delete (delete_version_after): not yet.
		if t, err := time.Parse(time.RFC3339Nano, del); err != nil || !t.After(time.Now()) {
			fp.deleted = true
		}
	}
	return fp, nil
}

func toInt(v any) (int64, error) {
	switch n := v.(type) {
	case json.Number:
		return n.Int64()
	case float64:
		return int64(n), nil
	case int64:
		return n, nil
	case int:
		return int64(n), nil
	}
	return 0, fmt.Errorf("not a number: %T", v)
}

func str(v any) string {
	s, _ := v.(string)
	return s
}

func stringList(v any) ([]string, error) {
	if v == nil {
		return nil, nil
	}
	list, ok := v.([]any)
	if !ok {
		return nil, fmt.Errorf("vault keys: not a list (%T)", v)
	}
	out := make([]string, 0, len(list))
	for _, k := range list {
		s, ok := k.(string)
		if !ok {
			return nil, fmt.Errorf("vault keys: %T in the list", k)
		}
		out = append(out, s)
	}
	return out, nil
}

// Backend names the Vault/OpenBao server and mount, for the check that the agbots of one
// fleet share one secrets manager.
func (m *Manager) Backend() string { return "vault " + m.client.Address() + " mount " + m.mount }
