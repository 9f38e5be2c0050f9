// Package exchange holds the agbot's records in anax's JSON shapes (users, nodes, services,
// deployment policies, patterns, secret bindings) and the publishing rules that check them
// before they are stored. It is pure: no I/O, no HTTP, no secret values.
//
// Imported by the other agbot packages; it imports only protocol (test/deptest enforces it).
package exchange
