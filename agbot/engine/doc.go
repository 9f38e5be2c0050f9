// Package engine is the agbot's agreement engine: it matches nodes to patterns and deployment
// policies, resolves every bound secret for each node (node-specific first when enabled, then
// the user or org secret, each only as access.Deliver allows: what the policy's or pattern's
// owner may read now, user-level ones only for nodes that user owns), holds an agreement
// whose secrets are missing and proposes it when they appear, and turns every change into
// protocol messages queued per node: persisted before they are offered, offered to the
// node's long-poll, resent with backoff until acknowledged, never expired while the
// agreement lives.
//
// Imported by agbot/api and agbot (the wiring).
package engine
