// Package container is the agent's Docker worker: it runs the containers of a service instance
// with their secrets bind-mounted read-only at /<secretName> and at
// /open-horizon-secrets/<secretName>, resolves the user whose ids own the secret files, reacts to
// secret updates, stops containers, and finds its containers again after an agent restart.
//
// The agreement manager (package agreement) and the agent import it; it imports the Docker
// client, secretfs types, ess (the mounts of the ESS secrets API) and protocol's secret-name
// rule (test/deptest enforces it). It never sees a secret value: it mounts files that
// secretfs wrote and labels containers with names only.
//
// Public surface:
//
//	New(api Docker, Options) (*Worker, error); NewFromEnv(Options) (*Worker, error); (*Worker).Close() error
//	(*Worker).ResolveUser(ctx, image, user string) (uid, gid int, err error)
//	(*Worker).Start(ctx, Instance) ([]Container, error)
//	(*Worker).AfterUpdate(ctx, agreementID string, changed []string) error
//	(*Worker).Restart(ctx, agreementID string) error
//	(*Worker).Stop(ctx, agreementID string) error
//	(*Worker).List(ctx) ([]Container, error)
//	(*Worker).Watch(ctx, func(Death)) error
//	types Docker, Options, Instance, Service, Spec, Secret, Container, Death; Store = secretfs.Store
//	ErrInvalid, ErrImageNotFound, ErrUserNotFound, ErrPolicy, ErrNotFound; DirViewTarget, DefaultPidsLimit
//	NetworkName(agreementID) string; VolumeName(Service, name) string
//
// Every service container drops all capabilities but Spec.CapAdd, runs with
// no-new-privileges, DefaultPidsLimit and Spec.MemoryMB. The other anax deployment fields
// come typed (protocol parsed them): binds never reach Options.ProtectedPaths, /proc, /sys, the
// engine's socket (unless Options.AllowDockerSocket) or, unless Instance.AllowPrivileged, the
// host's system directories; privileged, host network, devices and host ports below 1024 need
// Instance.AllowPrivileged (else ErrPolicy). Instance.Env (the platform's HZN_* variables) is
// set over each Spec.Env. An agreement's containers, when there are several, share the network
// NetworkName(agreement), each reachable by its Spec.Name; named volumes are the service's own (VolumeName). ResolveUser refuses (ErrPolicy) a uid
// an account in the host's /etc/passwd has, unless Options.AllowHostUIDs lists it; with
// Options.RequireImageDigest, images not pinned by digest are refused (ErrPolicy).
//
// One secretfs store per container, because containers of one service may run as different
// users:
//
//	uid, gid, err := w.ResolveUser(ctx, spec.Image, spec.User)
//	store, err := fs.Create(secretfs.Spec{ID: ..., UID: uid, GID: gid, Secrets: ...})
//	spec.Store = store // for each container, then
//	w.Start(ctx, container.Instance{InstanceID: ..., Service: ..., Containers: specs})
//
// After secretfs applied an update: w.AfterUpdate(ctx, agreementID, changedNames). At the end:
// w.Stop, then secretfs Wipe. Everything the worker needs later lives in container labels
// (prefix org.edge-secrets.anax-agent.), so a new Worker with the same AgentID picks up where
// the last one left off.
package container
