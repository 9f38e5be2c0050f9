// Package protocol is the one definition of what crosses the wire between the agbot and the
// agent: message types, the signed and encrypted envelope, replay and order rules, and the
// validation rules both sides share (secret names, bindings, sizes).
//
// It imports only the standard library and golang.org/x/crypto, so the agbot, the agent and
// the CLI may all import it without pulling in Linux or Docker code.
package protocol
