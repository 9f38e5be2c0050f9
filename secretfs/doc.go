// Package secretfs keeps the secrets of each service instance in a private, bounded tmpfs
// (a store) and publishes each secret as a host path that a container bind-mounts read-only at
// /<name>; Update swaps new values in atomically, all-or-nothing, while the container runs.
//
// How a live swap reaches a container: a single-file bind mount pins the mount it was given,
// so secretfs never rewrites or renames a published file. Each version of a secret is a new,
// complete file; publish points are mounts that are slaves of one shared bind of the store (the
// feed), so every container's copy is a slave of that bind too, whatever version it started
// with. Update mounts the new version beneath the current one and removes the old one (mount
// stack two deep), at the publish point and, through the feed, on the version each running
// container started with. Which versions containers started with is found by reading the
// mounts of each store's running containers, by the PIDs Options.Holders gives (the agent asks
// Docker), or of every process when there is no Holders (Linux only; see reconcile_linux.go).
// A version is zeroed or released only after a complete scan proved nobody uses it: a scan that
// could not read a container keeps everything, warns once and is retried; a scan that began
// before another one already applied is dropped (it can not know of containers that started
// in between). A replaced version keeps its content for a grace (1 s) for readers that opened
// it just before the swap, after a restart too: what recovery finds replaced counts as
// replaced at recovery. Open recovers the stores a
// previous run left; after a kill in the middle of a swap it detaches the hidden layers left at
// publish and feed points and makes every point show the same (old or new) version of each
// secret (repair_linux.go).
//
// Modes (probed by Open, logged once, see Mode): mount-swap (MOVE_MOUNT_BENEATH and
// MOVE_MOUNT_SET_GROUP), mount-stack (new mount API only: each update is stacked on top, the
// stack grows until the container restarts), restart (no mount privilege: plain files in a
// root-only directory; the caller restarts the container after Update).
//
// The container worker and the agreement manager import this package; it imports only
// platform/linux and protocol (for the one secret-name rule).
package secretfs
