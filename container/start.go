package container

import (
	"context"
	"errors"
	"fmt"
	"path"
	"sort"
	"strings"
	"time"

	cerrdefs "github.com/containerd/errdefs"
	"github.com/docker/docker/api/types/container"
	"github.com/docker/docker/api/types/mount"
	"github.com/docker/docker/api/types/network"

	"github.com/edge-secrets/anax-agent/ess"
	"github.com/edge-secrets/anax-agent/protocol"
	"github.com/edge-secrets/anax-agent/secretfs"
)

// DirViewTarget is where every container with secrets sees the store's directory view, the
// path services written for anax read.
const DirViewTarget = "/open-horizon-secrets"

// Service names the service an instance runs.
type Service struct {
	Org     string
	URL     string
	Version string
}

// Secret is one secret a container declares.
type Secret struct {
	// Name is the service's secret name: the file /<Name> and /open-horizon-secrets/<Name>.
	// It must pass protocol.ValidateSecretName.
	Name string
	// OnUpdate is what AfterUpdate does when this secret changed (protocol.ParseOnUpdate
	// made it): none (the file changes under the running process), a signal, or a restart.
	OnUpdate protocol.OnUpdate
}

// Spec is one container of a service instance.
type Spec struct {
	Name    string            // the container's name in the service deployment; [A-Za-z0-9][A-Za-z0-9_.-]*
	Image   string            // must be present locally or pullable
	User    string            // service definition user; "" runs as the image's USER
	Command []string          // replaces the image's CMD when not nil
	Env     map[string]string // from user input only: never a secret
	Secrets []Secret
	// CapAdd are the Linux capabilities the service declares (cap_add); every other one is
	// dropped. Names as protocol.CanonicalCapability takes them.
	CapAdd []string
	// MemoryMB is the deployment's max_memory_mb: the memory limit in MiB, 0 for none.
	MemoryMB int64
	// The other deployment fields, parsed by protocol. Privileged, HostNetwork and Devices
	// run only when the Instance allows privileged services; Binds never reach the
	// protected host paths (see checkBindSource).
	Entrypoint  []string // replaces the image's ENTRYPOINT when not nil
	Privileged  bool
	HostNetwork bool // network "host"
	Devices     []protocol.Device
	Binds       []protocol.Bind
	Tmpfs       map[string]string // target -> options, checked by protocol.ParseTmpfs
	Ports       []protocol.Port
	CPUs        float64 // max_cpus, 0 for no limit
	LogDriver   string  // "" is the engine's default
	// Store holds the files of Secrets, one store per container, owned by the uid:gid
	// ResolveUser returned. Nil only when Secrets is empty.
	Store *Store
}

// Instance is one service instance: the containers an agreement runs.
type Instance struct {
	// InstanceID is the agreement's name on the node (container names, labels):
	// [A-Za-z0-9][A-Za-z0-9_.-]*, at most 128 bytes.
	InstanceID string
	Service    Service
	Containers []Spec
	// Env is set in every container over its Spec.Env: the service's user input and the
	// platform's HZN_* variables. Never a secret: env is visible in docker inspect.
	Env map[string]string
	// AllowPrivileged is the node policy's openhorizon.allowPrivileged: only then may a
	// container be privileged, use the host network or devices, or add any capability.
	AllowPrivileged bool
}

// Container is a container this worker's agent owns, as its labels and the engine describe it.
type Container struct {
	ID         string
	Name       string // engine name: "<instance id>-<spec name>"
	InstanceID string // Instance.InstanceID it was started for
	Service    Service
	Spec       string   // Spec.Name it was created from
	StoreID    string   // "" when it has no secrets
	Secrets    []string // secret names mounted
	State      string   // engine state: created, running, restarting, exited, dead, ...
}

// Start creates and starts the containers of inst, each with its secrets bind-mounted
// read-only at /<name> (rslave, so secretfs swaps propagate; plain in restart mode) and the
// store's directory view read-only at /open-horizon-secrets. Restart policy is unless-stopped:
// the engine restarts a container that dies and after a reboot, and a container whose store
// was lost (tmpfs after a reboot) fails to start until the agent restores it.
// Every check runs before the engine is asked for anything; on any failure every container
// already created is removed.
func (w *Worker) Start(ctx context.Context, inst Instance) ([]Container, error) {
	plans, err := w.plan(inst)
	if err != nil {
		return nil, err
	}
	for _, p := range plans {
		if _, err := w.ensureImage(ctx, p.cfg.Image); err != nil {
			return nil, fmt.Errorf("agreement %q container %q: %w", inst.InstanceID, p.spec, err)
		}
	}

	var started []Container
	madeNet := false
	rollback := func(cause error) ([]Container, error) {
		rctx, cancel := context.WithTimeout(context.WithoutCancel(ctx), w.stop+30*time.Second)
		defer cancel()
		errs := []error{cause}
		for _, c := range started {
			w.markIntended(c.ID)
			if err := w.api.ContainerRemove(rctx, c.ID, container.RemoveOptions{Force: true}); err != nil && !cerrdefs.IsNotFound(err) {
				errs = append(errs, fmt.Errorf("rollback: remove %s: %w", c.Name, err))
			}
		}
		if madeNet {
			if err := w.removeNetworks(rctx, inst.InstanceID); err != nil {
				errs = append(errs, fmt.Errorf("rollback: %w", err))
			}
		}
		return nil, errors.Join(errs...)
	}
	// Containers that talk to each other (several in the agreement, e.g. a service and its
	// required services) share a network of their own. A lone container stays on the
	// engine's default network: each network takes an address pool, of which an engine has
	// about 30 by default.
	shared := 0
	for _, p := range plans {
		if !p.host.NetworkMode.IsHost() {
			shared++
		}
	}
	if shared > 1 {
		if madeNet, err = w.ensureNetwork(ctx, inst.InstanceID); err != nil {
			return rollback(fmt.Errorf("agreement %q: %w", inst.InstanceID, err))
		}
	}
	for _, p := range plans {
		var netCfg *network.NetworkingConfig
		if shared > 1 && !p.host.NetworkMode.IsHost() {
			p.host.NetworkMode = container.NetworkMode(NetworkName(inst.InstanceID))
			netCfg = &network.NetworkingConfig{EndpointsConfig: map[string]*network.EndpointSettings{
				NetworkName(inst.InstanceID): {Aliases: []string{p.spec}}}}
		}
		created, err := w.api.ContainerCreate(ctx, p.cfg, p.host, netCfg, nil, p.name)
		if err != nil {
			return rollback(fmt.Errorf("agreement %q: create container %q: %w", inst.InstanceID, p.name, err))
		}
		c := p.container(created.ID)
		started = append(started, c)
		if p.storeID != "" {
			w.holdUnknown(created.ID, p.storeID) // its namespace binds the store from now on
		}
		err = w.api.ContainerStart(ctx, created.ID, container.StartOptions{})
		w.refreshHolder(ctx, created.ID)
		if err != nil {
			return rollback(fmt.Errorf("agreement %q: start container %q: %w", inst.InstanceID, p.name, err))
		}
		started[len(started)-1].State = "running"
		w.log.Info("started container", "agreement", inst.InstanceID, "container", p.name,
			"id", created.ID, "image", p.cfg.Image, "secrets", len(c.Secrets))
	}
	return started, nil
}

type plan struct {
	name, spec string
	inst       *Instance
	secrets    []string
	storeID    string
	cfg        *container.Config
	host       *container.HostConfig
}

func (p plan) container(id string) Container {
	return Container{ID: id, Name: p.name, InstanceID: p.inst.InstanceID, Service: p.inst.Service,
		Spec: p.spec, StoreID: p.storeID, Secrets: p.secrets, State: "created"}
}

// plan checks inst and turns it into engine requests, without calling the engine.
func (w *Worker) plan(inst Instance) ([]plan, error) {
	bad := func(format string, args ...any) error {
		return fmt.Errorf("agreement %q: "+format+": %w", append(append([]any{inst.InstanceID}, args...), ErrInvalid)...)
	}
	if err := checkName("agreement id", inst.InstanceID); err != nil {
		return nil, err
	}
	for field, v := range map[string]string{"service org": inst.Service.Org, "service url": inst.Service.URL, "service version": inst.Service.Version} {
		if strings.ContainsAny(v, "\x00\n\r") || len(v) > 1024 {
			return nil, bad("%s: at most 1024 bytes, no NUL or newline", field)
		}
	}
	if inst.Service.Org == "" || inst.Service.URL == "" {
		return nil, bad("service org and url are required")
	}
	if len(inst.Containers) == 0 {
		return nil, bad("no containers")
	}
	seen := map[string]bool{}
	plans := make([]plan, 0, len(inst.Containers))
	for _, spec := range inst.Containers {
		if err := checkName("container name", spec.Name); err != nil {
			return nil, fmt.Errorf("agreement %q: %w", inst.InstanceID, err)
		}
		if seen[spec.Name] {
			return nil, bad("container %q declared twice", spec.Name)
		}
		seen[spec.Name] = true
		p, err := w.planOne(&inst, spec)
		if err != nil {
			return nil, fmt.Errorf("agreement %q container %q: %w", inst.InstanceID, spec.Name, err)
		}
		plans = append(plans, p)
	}
	return plans, nil
}

func (w *Worker) planOne(inst *Instance, spec Spec) (plan, error) {
	bad := func(format string, args ...any) error {
		return fmt.Errorf(format+": %w", append(args, ErrInvalid)...)
	}
	if spec.Image == "" || strings.ContainsAny(spec.Image, " \x00\n") {
		return plan{}, bad("image %q: must be a non-empty reference", spec.Image)
	}
	if err := w.checkImagePolicy(spec.Image); err != nil {
		return plan{}, err
	}
	if strings.ContainsAny(spec.User, "\x00\n") {
		return plan{}, bad("user %q: no NUL or newline", spec.User)
	}
	env, err := envList(overlay(spec.Env, inst.Env))
	if err != nil {
		return plan{}, err
	}
	names, actions, err := secretNames(spec.Secrets)
	if err != nil {
		return plan{}, err
	}
	labels := map[string]string{
		labelAgent:      w.agent,
		labelRole:       roleService,
		labelAgreement:  inst.InstanceID,
		labelServiceOrg: inst.Service.Org,
		labelServiceURL: inst.Service.URL,
		labelServiceVer: inst.Service.Version,
		labelSpecName:   spec.Name,
	}
	var mounts []mount.Mount
	storeID := ""
	if len(names) > 0 {
		if spec.Store == nil {
			return plan{}, bad("%d secrets but no store", len(names))
		}
		storeID = spec.Store.ID
		if mounts, env, err = w.secretMounts(spec.Store, names, actions, env, labels); err != nil {
			return plan{}, err
		}
	}
	cfg := &container.Config{Image: spec.Image, User: spec.User, Env: env, Labels: labels}
	if spec.Command != nil {
		cfg.Cmd = append([]string(nil), spec.Command...)
	}
	host, err := w.hostConfig(spec, mounts, inst.AllowPrivileged)
	if err != nil {
		return plan{}, err
	}
	if err := w.applyDeployment(inst, spec, names, cfg, host); err != nil {
		return plan{}, err
	}
	return plan{name: inst.InstanceID + "-" + spec.Name, spec: spec.Name, inst: inst,
		secrets: names, storeID: storeID, cfg: cfg, host: host}, nil
}

// secretNames checks a container's secrets (the mount target comes only from a validated
// name) and returns their names, sorted, and onUpdate actions.
func secretNames(secrets []Secret) ([]string, map[string]string, error) {
	names := make([]string, 0, len(secrets))
	actions := map[string]string{}
	for _, s := range secrets {
		if err := protocol.ValidateSecretName(s.Name); err != nil {
			return nil, nil, fmt.Errorf("%w: %w", err, ErrInvalid)
		}
		if _, dup := actions[s.Name]; dup {
			return nil, nil, fmt.Errorf("secret %q declared twice: %w", s.Name, ErrInvalid)
		}
		a, err := onUpdateLabel(s.OnUpdate)
		if err != nil {
			return nil, nil, fmt.Errorf("secret %q: %w", s.Name, err)
		}
		actions[s.Name] = a
		names = append(names, s.Name)
	}
	sort.Strings(names)
	return names, actions, nil
}

// secretMounts are a container's mounts of its store (each secret at /<name>, the directory
// view, the ESS API's files) and its store labels; env gains the HZN_ESS_* variables.
func (w *Worker) secretMounts(st *Store, names []string, actions map[string]string, env []string, labels map[string]string) ([]mount.Mount, []string, error) {
	if err := checkStore(st, names); err != nil {
		return nil, nil, err
	}
	// rslave lets a swap under the publish point reach the container; it needs a shared
	// source mount, which restart mode (plain directory) does not have and does not need.
	var bind *mount.BindOptions
	if st.Mode != modeRestart {
		bind = &mount.BindOptions{Propagation: mount.PropagationRSlave}
	}
	var mounts []mount.Mount
	for _, name := range names {
		mounts = append(mounts, mount.Mount{Type: mount.TypeBind, Source: st.Files[name],
			Target: "/" + name, ReadOnly: true, BindOptions: bind})
	}
	mounts = append(mounts, mount.Mount{Type: mount.TypeBind, Source: st.DirView,
		Target: DirViewTarget, ReadOnly: true})
	if m, ok := w.essMounts(st.ID); ok {
		mounts = append(mounts, m...)
		env = essEnv(env)
	}
	labels[labelStore] = st.ID
	labels[labelStoreMode] = string(st.Mode)
	labels[labelSecrets] = strings.Join(names, listSep)
	if ou := joinOnUpdate(actions); ou != "" {
		labels[labelOnUpdate] = ou
	}
	return mounts, env, nil
}

// checkStore requires a file for every declared secret and nothing else, and absolute paths.
func checkStore(st *Store, names []string) error {
	bad := func(format string, args ...any) error {
		return fmt.Errorf("store %q: "+format+": %w", append(append([]any{st.ID}, args...), ErrInvalid)...)
	}
	if err := secretfs.ValidateID(st.ID); err != nil {
		return fmt.Errorf("%w: %w", err, ErrInvalid)
	}
	if !isCleanAbs(st.DirView) {
		return bad("directory view %q must be a clean absolute path", st.DirView)
	}
	declared := map[string]bool{}
	for _, name := range names {
		declared[name] = true
		src, ok := st.Files[name]
		if !ok {
			return bad("no file for secret %q", name)
		}
		if !isCleanAbs(src) {
			return bad("file of secret %q: %q must be a clean absolute path", name, src)
		}
	}
	for name := range st.Files {
		if !declared[name] {
			return bad("file for undeclared secret %q", name)
		}
	}
	return nil
}

func isCleanAbs(p string) bool {
	return path.IsAbs(p) && path.Clean(p) == p && !strings.ContainsRune(p, 0)
}

// checkName allows what the engine accepts in a container name, short enough to combine.
func checkName(field, s string) error {
	if s == "" || len(s) > 128 {
		return fmt.Errorf("%s %q: must be 1..128 bytes: %w", field, s, ErrInvalid)
	}
	for i := 0; i < len(s); i++ {
		c := s[i]
		ok := c >= 'a' && c <= 'z' || c >= 'A' && c <= 'Z' || c >= '0' && c <= '9' ||
			i > 0 && (c == '_' || c == '.' || c == '-')
		if !ok {
			return fmt.Errorf("%s %q: byte %d: want [A-Za-z0-9][A-Za-z0-9_.-]*: %w", field, s, i, ErrInvalid)
		}
	}
	return nil
}

// overlay is base with top's entries over it.
func overlay(base, top map[string]string) map[string]string {
	out := make(map[string]string, len(base)+len(top))
	for k, v := range base {
		out[k] = v
	}
	for k, v := range top {
		out[k] = v
	}
	return out
}

// envList turns user-supplied variables into KEY=VALUE, sorted by key.
func envList(env map[string]string) ([]string, error) {
	keys := make([]string, 0, len(env))
	for k, v := range env {
		if k == "" || strings.ContainsAny(k, "=\x00") {
			return nil, fmt.Errorf("env key %q: must be non-empty without '=' or NUL: %w", k, ErrInvalid)
		}
		if strings.ContainsRune(v, 0) {
			return nil, fmt.Errorf("env %q: value must not contain NUL: %w", k, ErrInvalid)
		}
		keys = append(keys, k)
	}
	sort.Strings(keys)
	list := make([]string, len(keys))
	for i, k := range keys {
		list[i] = k + "=" + env[k]
	}
	return list, nil
}

// essMounts are the ESS secrets API's mounts for a store's container (ess package), if any.
func (w *Worker) essMounts(storeID string) ([]mount.Mount, bool) {
	if w.ess == nil {
		return nil, false
	}
	m, ok := w.ess.Mounts(storeID)
	if !ok {
		return nil, false
	}
	return []mount.Mount{
		{Type: mount.TypeBind, Source: m.AuthFile, Target: ess.AuthTarget, ReadOnly: true},
		{Type: mount.TypeBind, Source: m.CertFile, Target: ess.CertTarget, ReadOnly: true},
		{Type: mount.TypeBind, Source: m.SocketDir, Target: ess.SocketDir, ReadOnly: true},
	}, true
}

// essEnv sets anax's HZN_ESS_* variables, replacing any the deployment gave.
func essEnv(env []string) []string {
	vars := ess.Env()
	out := make([]string, 0, len(env)+len(vars))
	for _, e := range env {
		if k, _, _ := strings.Cut(e, "="); vars[k] == "" {
			out = append(out, e)
		}
	}
	for _, k := range sortedKeys(vars) {
		out = append(out, k+"="+vars[k])
	}
	return out
}

func sortedKeys(m map[string]string) []string {
	out := make([]string, 0, len(m))
	for k := range m {
		out = append(out, k)
	}
	sort.Strings(out)
	return out
}
