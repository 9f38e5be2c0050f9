// Package secrets is the agbot's view of a secrets manager: the Manager interface, the secret-name
// rules of the manager (design §3, §6) and the sentinel errors the secure API turns into HTTP codes.
//
// Implementations live in the sub-packages embedded (bbolt, values sealed with AES-256-GCM) and
// vault (Vault or OpenBao KV v2); secretstest is the conformance suite every implementation
// passes. Only the agbot (agbot/, cmd/agbot) and tests import these packages.
package secrets
