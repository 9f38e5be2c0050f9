package reliability

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"time"

	"github.com/docker/docker/api/types/container"
	"github.com/docker/docker/client"

	"github.com/edge-secrets/anax-agent/platform/arch"
	"github.com/edge-secrets/anax-agent/protocol"
	"github.com/edge-secrets/anax-agent/test/e2e"
)

// Scenario is one agbot and its agents on loopback, driven the way an operator drives them
// (hzn for the exchange and the secrets, hzn register on each node), for the reliability
// suite and for the end-to-end benchmarks in bench/. It builds on test/e2e's harness; its
// services run the e2e reader image. Not safe for concurrent use.
type Scenario struct {
	Ctx    context.Context
	Dir    string
	Bin    *e2e.Binaries
	Docker *client.Client
	Image  string // the reader, USER 1000:1000
	Agbot  *e2e.Agbot
	Admin  string // "admin:<password>"

	mu     sync.Mutex
	agents []*e2e.Agent
}

// Org is the scenario's organisation.
const Org = "myorg"

// NewScenario initialises and starts an agbot under dir (vault nil: embedded secrets).
func NewScenario(ctx context.Context, bin *e2e.Binaries, cli *client.Client, image, dir string, vault *e2e.Vault) (*Scenario, error) {
	b, err := e2e.NewAgbot(ctx, bin, dir, Org, "admin", "admin-pw", vault)
	if err != nil {
		return nil, err
	}
	if err := b.Start(ctx); err != nil {
		return nil, err
	}
	return &Scenario{Ctx: ctx, Dir: dir, Bin: bin, Docker: cli, Image: image, Agbot: b, Admin: b.Admin}, nil
}

// Close stops every agent and the agbot, removes the agents' containers and unmounts their
// secrets roots. It returns the first unclean stop.
func (s *Scenario) Close() error {
	var errs []error
	// Removing 1,000 containers takes minutes: a generous bound, and several at a time.
	ctx, cancel := context.WithTimeout(context.Background(), 20*time.Minute)
	defer cancel()
	s.mu.Lock()
	agents := s.agents
	s.mu.Unlock()
	for _, a := range agents {
		if a.Proc() != nil {
			if err := a.Stop(); err != nil {
				errs = append(errs, fmt.Errorf("agent %s: %w", a.Name, err))
			}
		}
		if err := removeContainers(ctx, s.Docker, a.ID()); err != nil {
			errs = append(errs, err)
		}
		if err := a.UnmountRoots(); err != nil {
			errs = append(errs, err)
		}
	}
	if s.Agbot.Proc() != nil {
		if err := s.Agbot.Stop(); err != nil {
			errs = append(errs, fmt.Errorf("agbot: %w", err))
		}
	}
	return errors.Join(errs...)
}

// removeContainers force-removes an agent's containers, eight at a time.
func removeContainers(ctx context.Context, cli *client.Client, agentID string) error {
	list, err := e2e.ContainersOf(ctx, cli, agentID)
	if err != nil {
		return err
	}
	var mu sync.Mutex
	var errs []error
	var wg sync.WaitGroup
	sem := make(chan struct{}, 8)
	for _, c := range list {
		wg.Add(1)
		sem <- struct{}{}
		go func() {
			defer func() { <-sem; wg.Done() }()
			if err := cli.ContainerRemove(ctx, c.ID, container.RemoveOptions{Force: true}); err != nil {
				mu.Lock()
				errs = append(errs, err)
				mu.Unlock()
			}
		}()
	}
	wg.Wait()
	if len(errs) > 0 {
		return fmt.Errorf("%d of %d containers not removed, first: %w", len(errs), len(list), errs[0])
	}
	return nil
}

// Agents are the agents started so far.
func (s *Scenario) Agents() []*e2e.Agent {
	s.mu.Lock()
	defer s.mu.Unlock()
	return append([]*e2e.Agent(nil), s.agents...)
}

// Agent lays out and starts an agent (agbotURL "" for the agbot itself, or a proxy); configure
// adjusts its config first (nil for none).
func (s *Scenario) Agent(name, agbotURL string, configure func(*e2e.Agent)) (*e2e.Agent, error) {
	a, err := e2e.NewAgent(s.Bin, s.Dir, name, s.Agbot, agbotURL)
	if err != nil {
		return nil, err
	}
	if configure != nil {
		configure(a)
		if err := a.WriteConfig(); err != nil {
			return nil, err
		}
	}
	s.mu.Lock()
	s.agents = append(s.agents, a)
	s.mu.Unlock()
	return a, a.Start(s.Ctx)
}

// Hzn runs hzn against the agbot as the org admin.
func (s *Scenario) Hzn(args ...string) (string, error) { return s.Agbot.Hzn(s.Ctx, s.Admin, args...) }

// PutSecret stores (or overwrites, -O) a secret with hzn, the value on stdin; node "" for
// the org level.
func (s *Scenario) PutSecret(name, key, value, node string) error {
	args := []string{"sm", "secret", "add", "-O", "--secretKey", key, "-f", "-"}
	if node != "" {
		args = append(args, "-n", node)
	}
	_, err := s.Agbot.HznStdin(s.Ctx, s.Admin, value, append(args, name)...)
	return err
}

// CreateNode creates a node in the exchange.
func (s *Scenario) CreateNode(node, token string) error {
	_, err := s.Hzn("exchange", "node", "create", "-n", node+":"+token)
	return err
}

// PublishService publishes a service of one container "main" running the reader and
// declaring secrets (name -> format: "" or "value_only").
func (s *Scenario) PublishService(url string, secrets map[string]string) error {
	decl := map[string]any{}
	for name, format := range secrets {
		d := map[string]any{"description": name}
		if format != "" {
			d["format"] = format
		}
		decl[name] = d
	}
	svc := map[string]any{"org": Org, "url": url, "version": "1.0.0", "arch": arch.Node(),
		"deployment": map[string]any{"services": map[string]any{"main": map[string]any{"image": s.Image, "secrets": decl}}}}
	f, err := s.writeJSON("service-"+url+".json", svc)
	if err != nil {
		return err
	}
	_, err = s.Hzn("exchange", "service", "publish", "-f", f)
	return err
}

// AddPolicy binds a service's secrets (service secret -> manager name) on nodes with
// zone == reliability.
func (s *Scenario) AddPolicy(name, url string, bindings map[string]string, nodeLevel bool) error {
	var list []any
	for svc, mgr := range bindings {
		list = append(list, map[string]string{svc: mgr})
	}
	pol := map[string]any{
		"service":     map[string]any{"name": url, "org": Org, "arch": "*", "serviceVersions": []any{map[string]any{"version": "1.0.0"}}},
		"constraints": []string{"zone == reliability"},
		"secretBinding": []any{map[string]any{
			"serviceOrgid": Org, "serviceUrl": url, "serviceArch": "*", "serviceVersionRange": "[0.0.0,INFINITY)",
			"enableNodeLevelSecrets": nodeLevel, "secrets": list,
		}},
	}
	f, err := s.writeJSON("policy-"+name+".json", pol)
	if err != nil {
		return err
	}
	_, err = s.Hzn("exchange", "deployment", "addpolicy", "-f", f, name)
	return err
}

// RemovePolicy removes a deployment policy (its agreements are cancelled).
func (s *Scenario) RemovePolicy(name string) error {
	_, err := s.Hzn("exchange", "deployment", "removepolicy", "-f", name)
	return err
}

// Register registers an agent's node (zone reliability) with its token.
func (s *Scenario) Register(a *e2e.Agent, node, token string) error {
	pol, err := s.writeJSON("node-policy-"+node+".json", map[string]any{
		"properties": []any{map[string]any{"name": "zone", "value": "reliability"}}, "constraints": []string{}})
	if err != nil {
		return err
	}
	_, err = a.Hzn(s.Ctx, "register", "-n", node+":"+token, "--policy", pol)
	return err
}

func (s *Scenario) writeJSON(name string, v any) (string, error) {
	p := filepath.Join(s.Dir, name)
	b, err := json.MarshalIndent(v, "", "  ")
	if err != nil {
		return "", err
	}
	return p, os.WriteFile(p, b, 0o600)
}

// Single sets up the common case: node1 (agent "node1") running service "reader" that
// declares db_password (JSON) and api_token (value_only), bound to the org secrets db and
// token with the given values. It returns the agent and the container id.
func (s *Scenario) Single(db, token string, configure func(*e2e.Agent)) (*e2e.Agent, string, error) {
	steps := []func() error{
		func() error { return s.CreateNode("node1", "tok1") },
		func() error { return s.PutSecret("db", "dbkey", db, "") },
		func() error { return s.PutSecret("token", "tokkey", token, "") },
		func() error {
			return s.PublishService("reader", map[string]string{"db_password": "", "api_token": protocol.FormatValueOnly})
		},
		func() error {
			return s.AddPolicy("readers", "reader", map[string]string{"db_password": "db", "api_token": "token"}, true)
		},
	}
	for _, f := range steps {
		if err := f(); err != nil {
			return nil, "", err
		}
	}
	a, err := s.Agent("node1", "", configure)
	if err != nil {
		return nil, "", err
	}
	if err := s.Register(a, "node1", "tok1"); err != nil {
		return a, "", err
	}
	in, err := a.ActiveAgreement(s.Ctx, "reader", 2*time.Minute)
	if err != nil {
		return a, "", err
	}
	return a, in.Containers[0].ContainerID, nil
}

// File is the content of a secret file: anax's JSON {"key","value"}, or the raw value.
func File(key, value, format string) string {
	return string(protocol.SecretValue{Key: key, Value: value}.FileContent(protocol.SecretDecl{Format: format}))
}

// RSS returns a process's resident set in KiB.
func RSS(pid int) (int64, error) {
	raw, err := os.ReadFile(fmt.Sprintf("/proc/%d/status", pid))
	if err != nil {
		return 0, err
	}
	for _, line := range strings.Split(string(raw), "\n") {
		if v, ok := strings.CutPrefix(line, "VmRSS:"); ok {
			var kb int64
			_, err := fmt.Sscan(strings.TrimSpace(strings.TrimSuffix(strings.TrimSpace(v), "kB")), &kb)
			return kb, err
		}
	}
	return 0, fmt.Errorf("no VmRSS for process %d", pid)
}

// BuildBinaries builds agbot, anax-agent, hzn and the reader into dir, or uses binDir's
// programs (make build) when binDir is set.
func BuildBinaries(ctx context.Context, binDir, dir string) (*e2e.Binaries, error) {
	if binDir != "" {
		return e2e.Prebuilt(ctx, binDir, dir)
	}
	return e2e.Build(ctx, dir)
}
