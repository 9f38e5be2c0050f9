// Package linux holds the Linux specifics the agent needs: the new mount API (open_tree,
// move_mount with MOVE_MOUNT_BENEATH and MOVE_MOUNT_SET_GROUP, mount_setattr), tmpfs options,
// /proc/*/mountinfo reading (github.com/moby/sys/mountinfo parses it; fromInfo reads the propagation fields), kernel feature probes and the scan of other mount namespaces.
//
// Pure parsing and option building (kernel.go, mountinfo.go, tmpfs.go) carry no build tag and
// are tested anywhere; syscall code lives in *_linux.go files. secretfs, ess, the agent and the
// agbot (its process hardening, Harden) import it; it imports nothing of this module and knows
// nothing about secrets.
package linux
