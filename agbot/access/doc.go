// Package access decides who may do what on the agbot: password and token hashing
// (argon2id, a bounded number of runs at a time) with a cache that only confirms the exact
// credential last verified, login throttling (Limiter: failures per key, doubling waits),
// and the secure API's authorisation matrix
// for secret-manager names (design §6). Pure decisions; the HTTP layer maps the sentinels
// to 401 and 403.
//
// Imported by agbot/api, agbot/engine and the agbot wiring; it imports nothing of this module
// (test/deptest enforces it).
package access
