package protocol

import "time"

// The bodies of the agbot's node endpoints (agbot/doc.go lists the routes), one definition for
// the agbot that serves them and the agent that calls them.

// AgbotInfo is the agbot's identity (GET /agbot, and the answer to a registration): the node
// pins PublicKeys.
type AgbotInfo struct {
	ID          string      `json:"agbotId"`
	PublicKeys  *PublicKeys `json:"publicKeys"`
	Fingerprint string      `json:"fingerprint"`
}

// Registration is what a node sends to register (PUT .../registration, node auth).
type Registration struct {
	PublicKeys *PublicKeys `json:"publicKeys"`
	Arch       string      `json:"arch"`
	Properties []Property  `json:"properties,omitempty"`
	// Constraints are the node policy's effective constraints: the agbot checks them against a
	// deployment policy's properties before it proposes (the node checks them again).
	Constraints []string `json:"constraints,omitempty"`
	Pattern     string   `json:"pattern,omitempty"` // "[org/]name"
}

// KeyRelease is DELETE .../registration: the node gives up its registered keys (hzn
// unregister), proving it holds them. Signature is SignKeyRelease's.
type KeyRelease struct {
	Time      time.Time `json:"time"`
	Signature []byte    `json:"signature"`
}

// PolledMessage is one sealed message of a long-poll answer (GET .../messages).
type PolledMessage struct {
	ID        uint64 `json:"id"`
	Agreement string `json:"agreementId"`
	Type      string `json:"type"`
	Seq       uint64 `json:"seq"`
	Envelope  []byte `json:"envelope"` // the protocol envelope JSON (base64 on the wire)
}
