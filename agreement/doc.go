// Package agreement is the agent's agreement manager: it accepts proposals, applies secret
// updates as one transaction per agreement, cancels agreements, and reconciles its state with
// the node (secret stores, containers) after a restart.
//
// It receives protocol messages that the daemon has already opened (verified and decrypted)
// and returns the replies the daemon sends. It depends on the secret stores and the container
// worker only through the small interfaces SecretStore and Runner (deps.go), which
// *secretfs.FS and *container.Worker satisfy as they are, so its state machine is tested with
// fakes and with the real secretfs and dockerd alike.
//
// State lives in a bbolt file under the state directory (mode 0700): agreements, their
// containers and stores, the last applied sequence and, per secret, the sequence that set it
// and an HMAC-SHA256 digest of what the container reads, under a per-node key (digest.key,
// 0600). Never a value.
//
// Life cycle:
//
//   - Propose: validate, check the node runs the service (arch, node policy), resolve each
//     container's user, persist "accepting", create one tmpfs store per container, start the
//     containers, persist "active", reply accepted. Any failure undoes it all and declines
//     with a reason a person can act on. A proposal for an agreement the node runs, from its
//     agbot for its service, is accepted again whatever its seq (the accept was lost) and
//     changes nothing; any other for a known or ended id is refused as a replay.
//   - Update: a secret takes an update's value only if the update is newer than what set it;
//     every store is swapped all-or-nothing (a later store failing puts the earlier ones
//     back), onUpdate actions run, then the sequence and digests are persisted in one fsynced
//     transaction and the reply says applied. A repeat is acknowledged as a duplicate, a
//     replay refused as stale; a failure replies failed with every old value in place.
//   - Cancel (or End, on the node's initiative): persist "cancelling", stop the containers,
//     wipe the stores, delete the state leaving a tombstone against replayed proposals.
//   - Recover, at start-up: intact agreements are left running; each secret file is checked
//     against its digest and whatever differs (an update the agent died in) is resynced;
//     stores lost to a reboot stop the containers until a full update (the agbot's answer to
//     a resync) rebuilds them; interrupted proposals are undone, interrupted cancels finished,
//     orphan stores and containers removed.
//
// Only the agent (package agent) imports this package; it imports container, secretfs,
// protocol and platform/arch. test/deptest enforces both.
package agreement
