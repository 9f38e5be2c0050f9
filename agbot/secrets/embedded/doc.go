// Package embedded is the agbot's default secrets manager: a bbolt file in the data dir whose
// values are sealed with AES-256-GCM under a 32-byte key file (mode 0600) beside it, so the
// database never holds a value in clear. Each sealed record is bound (GCM additional data) to its
// org, name and version, so records can not be swapped or rolled onto another name unnoticed.
// Changes are announced to watchers as soon as the write commits.
//
// Only the agbot (agbot/, cmd/agbot) and tests import it.
package embedded
