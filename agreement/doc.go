// Package agreement is the agent's agreement manager: it accepts proposals, applies secret
// updates as one transaction per agreement, cancels agreements, and reconciles its state with
// the node (secret stores, containers) after a restart.
//
// It receives protocol messages that the daemon has already opened (verified and decrypted)
// and returns the replies the daemon sends. It depends on the secret stores and the container
// worker only through the small interfaces declared in deps.go, so its state machine is tested
// with fakes and with the real secretfs and dockerd alike.
//
// State lives in a bbolt file under the state directory (mode 0700). It holds agreements,
// their containers, the last applied sequence and, per secret, an HMAC-SHA256 digest of the
// value under a per-node key: never a value.
//
// Only cmd/anax-agent (the daemon) imports this package.
package agreement
