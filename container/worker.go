package container

import (
	"context"
	"fmt"
	"io"
	"log/slog"
	"sync"
	"time"

	"github.com/docker/docker/api/types/container"
	"github.com/docker/docker/api/types/events"
	"github.com/docker/docker/api/types/image"
	"github.com/docker/docker/api/types/network"
	"github.com/docker/docker/api/types/system"
	"github.com/docker/docker/client"
	ocispec "github.com/opencontainers/image-spec/specs-go/v1"

	"github.com/edge-secrets/anax-agent/ess"
	"github.com/edge-secrets/anax-agent/protocol"
)

// Docker is the subset of the Docker engine client the worker calls. *client.Client satisfies
// it; tests of small pieces may pass a fake.
type Docker interface {
	Info(ctx context.Context) (system.Info, error)
	ImageInspect(ctx context.Context, ref string, opts ...client.ImageInspectOption) (image.InspectResponse, error)
	ImagePull(ctx context.Context, ref string, opts image.PullOptions) (io.ReadCloser, error)
	ContainerCreate(ctx context.Context, cfg *container.Config, host *container.HostConfig, net *network.NetworkingConfig, platform *ocispec.Platform, name string) (container.CreateResponse, error)
	ContainerStart(ctx context.Context, id string, opts container.StartOptions) error
	ContainerStop(ctx context.Context, id string, opts container.StopOptions) error
	ContainerRestart(ctx context.Context, id string, opts container.StopOptions) error
	ContainerKill(ctx context.Context, id, signal string) error
	ContainerRemove(ctx context.Context, id string, opts container.RemoveOptions) error
	ContainerList(ctx context.Context, opts container.ListOptions) ([]container.Summary, error)
	ContainerInspect(ctx context.Context, id string) (container.InspectResponse, error)
	ContainerLogs(ctx context.Context, id string, opts container.LogsOptions) (io.ReadCloser, error)
	CopyFromContainer(ctx context.Context, id, srcPath string) (io.ReadCloser, container.PathStat, error)
	Events(ctx context.Context, opts events.ListOptions) (<-chan events.Message, <-chan error)
	NetworkCreate(ctx context.Context, name string, opts network.CreateOptions) (network.CreateResponse, error)
	NetworkList(ctx context.Context, opts network.ListOptions) ([]network.Summary, error)
	NetworkRemove(ctx context.Context, id string) error
}

var _ Docker = (*client.Client)(nil)

// Options configure a Worker.
type Options struct {
	// AgentID is written to a label on every container the worker creates, and every lookup
	// filters on it, so several agents sharing one engine never see each other's containers.
	// Required.
	AgentID string
	// StopTimeout is how long a container gets between SIGTERM and SIGKILL on Stop and on a
	// restart. Default 10s.
	StopTimeout time.Duration
	// Logger gets one line per container started, stopped, restarted or signalled (names and
	// ids only). Default slog.Default().
	Logger *slog.Logger
	// RemapUser is the host user whose /etc/subuid and /etc/subgid ranges dockerd uses when it
	// runs with userns-remap. Default "dockremap" (what `"userns-remap": "default"` creates).
	RemapUser string
	// AllowHostUIDs are host uids a container may run as although a host account has them
	// (see ResolveUser). Default none: such a container is refused with ErrPolicy.
	AllowHostUIDs []int
	// ExtraCapabilities are capabilities beyond Docker's default set that a service may add
	// (cap_add). Default none: a service may add back only what Docker would have given it.
	ExtraCapabilities []string
	// RequireImageDigest refuses images not pinned by digest (name@sha256:...) with ErrPolicy.
	RequireImageDigest bool
	// ESS gives containers with secrets anax's ESS secrets API (*ess.Server). Optional.
	ESS ESS
	// ProtectedPaths are host directories no bind may reach (be, be under, or contain): the
	// agent's secrets root, ESS root and state directory. /proc, /sys and the engine's
	// sockets are always protected.
	ProtectedPaths []string
	// AllowDockerSocket lets a service bind the engine's socket (anax services that manage
	// containers). Default false: the socket is root on the host.
	AllowDockerSocket bool
}

// ESS is what the worker needs of the ESS secrets API: the host paths a store's containers
// mount (credentials, CA certificate, socket directory).
type ESS interface {
	Mounts(storeID string) (ess.Mounts, bool)
}

// Worker runs the containers of service instances. Its methods are safe for concurrent use.
// It keeps no state a restart would lose: everything it needs later is in container labels.
type Worker struct {
	api    Docker
	owned  io.Closer // the client NewFromEnv made, closed by Close
	agent  string
	stop   time.Duration
	log    *slog.Logger
	remap  string
	hostFS hostFiles

	allowUIDs     map[int]bool
	extraCaps     map[string]bool
	protected     []string
	dockerSocket  bool
	requireDigest bool
	ess           ESS

	mu       sync.Mutex
	intended map[string]time.Time // container id -> until when a "die" is ours (stop, restart)

	hmu     sync.Mutex
	holders holderTable // see holders.go
}

// hostFiles are the host files userns-remap and the host-account check read; tests point them
// elsewhere.
type hostFiles struct{ passwd, subuid, subgid string }

// New returns a worker that talks to the engine through api.
func New(api Docker, opts Options) (*Worker, error) {
	if api == nil {
		return nil, fmt.Errorf("container: nil Docker client: %w", ErrInvalid)
	}
	if err := checkAgentID(opts.AgentID); err != nil {
		return nil, err
	}
	w := &Worker{
		api:      api,
		agent:    opts.AgentID,
		stop:     opts.StopTimeout,
		log:      opts.Logger,
		remap:    opts.RemapUser,
		hostFS:   hostFiles{passwd: "/etc/passwd", subuid: "/etc/subuid", subgid: "/etc/subgid"},
		intended: map[string]time.Time{},
		holders:  holderTable{byID: map[string]*holder{}, byStore: map[string]map[string]bool{}},

		allowUIDs:     map[int]bool{},
		extraCaps:     map[string]bool{},
		requireDigest: opts.RequireImageDigest,
		ess:           opts.ESS,
		dockerSocket:  opts.AllowDockerSocket,
	}
	for _, p := range opts.ProtectedPaths {
		if !isCleanAbs(p) || p == "/" {
			return nil, fmt.Errorf("container: protected path %q: must be a clean absolute path other than /: %w", p, ErrInvalid)
		}
		w.protected = append(w.protected, p)
	}
	for _, uid := range opts.AllowHostUIDs {
		if uid < 0 || uid > maxID {
			return nil, fmt.Errorf("container: allowed host uid %d is outside 0..%d: %w", uid, maxID, ErrInvalid)
		}
		w.allowUIDs[uid] = true
	}
	for _, name := range opts.ExtraCapabilities {
		c, err := protocol.CanonicalCapability(name)
		if err != nil {
			return nil, fmt.Errorf("container: extra capabilities: %w: %w", err, ErrInvalid)
		}
		w.extraCaps[c] = true
	}
	if w.stop <= 0 {
		w.stop = 10 * time.Second
	}
	if w.log == nil {
		w.log = slog.Default()
	}
	if w.remap == "" {
		w.remap = "dockremap"
	}
	return w, nil
}

// NewFromEnv connects to the engine named by the environment (DOCKER_HOST etc., default the
// local socket) with API version negotiation, so older engines (API 1.41) and newer work.
func NewFromEnv(opts Options) (*Worker, error) {
	cli, err := client.NewClientWithOpts(client.FromEnv, client.WithAPIVersionNegotiation())
	if err != nil {
		return nil, fmt.Errorf("container: docker client: %w", err)
	}
	negotiate(cli)
	w, err := New(cli, opts)
	if err != nil {
		cli.Close()
		return nil, err
	}
	w.owned = cli
	return w, nil
}

// negotiate agrees the API version with the engine before the worker's goroutines share the
// client: the docker client (v28) reads the version unguarded in Events while another
// goroutine's first request may still write it (moby/moby#43729, #50448; found with -race).
// An engine that does not answer yet leaves it to the first request, as before.
func negotiate(cli *client.Client) {
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	cli.NegotiateAPIVersion(ctx)
}

// Close releases the client NewFromEnv made. Containers keep running.
func (w *Worker) Close() error {
	if w.owned != nil {
		return w.owned.Close()
	}
	return nil
}

func checkAgentID(id string) error {
	if id == "" || len(id) > 256 {
		return fmt.Errorf("container: agent id must be 1..256 bytes: %w", ErrInvalid)
	}
	for i := 0; i < len(id); i++ {
		if id[i] <= ' ' || id[i] >= 0x7f || id[i] == ',' {
			return fmt.Errorf("container: agent id byte %d must be printable ASCII, no space or ',': %w", i, ErrInvalid)
		}
	}
	return nil
}

// markIntended records that the worker itself is about to stop or restart id, so Watch does not
// report the "die" that follows.
func (w *Worker) markIntended(id string) {
	w.mu.Lock()
	defer w.mu.Unlock()
	now := time.Now()
	for k, until := range w.intended {
		if now.After(until) {
			delete(w.intended, k)
		}
	}
	w.intended[id] = now.Add(w.stop + time.Minute)
}

// takeIntended reports (once) whether a die of id was caused by the worker.
func (w *Worker) takeIntended(id string) bool {
	w.mu.Lock()
	defer w.mu.Unlock()
	until, ok := w.intended[id]
	delete(w.intended, id)
	return ok && time.Now().Before(until)
}

func (w *Worker) stopOptions() container.StopOptions {
	secs := int((w.stop + time.Second - 1) / time.Second)
	return container.StopOptions{Timeout: &secs}
}
