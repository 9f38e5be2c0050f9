// Package protocol is the one definition of what crosses the wire between the agbot and the
// agent: message types, the signed and encrypted envelope, replay and order rules, and the
// validation rules both sides share (secret names, bindings, sizes).
//
// It imports only the standard library and golang.org/x/crypto, so the agbot, the agent and
// the CLI may all import it without pulling in Linux or Docker code.
//
// # Messages
//
// [Proposal], [ProposalReply], [Update], [UpdateReply], [Cancel], [CancelReply] and [Resync]
// all embed [Meta] (protocol version, type, agreement id, from, to, sequence, time) and
// satisfy [Message]. A proposal carries the [Service] (with its [Deployment] of [Container]s
// and their [SecretDecl]s, its user input [InputVar]s and its required services), the
// applied [SecretBinding]s, the deployment policy's [Property]s and the resolved
// [SecretValue]s by service secret name. Deployment fields are parsed once here
// ([ParseBind], [ParseDevice], [PortBinding.Parse], [ParseTmpfs], [ParseOnUpdate]); user
// input is converted as anax converts it ([InputEnv], [ResolveInputs]); an update carries [ChangedSecret]s. [SecretValue] prints and logs
// redacted. [Encode] and [Decode] give the exact JSON; golden files in testdata/ pin it.
//
// # Keys and envelope
//
// [GenerateKeys], [SaveKeys], [LoadKeys] and [LoadOrCreateKeys] manage a party's
// [PrivateKeys] (Ed25519 for signing, HPKE X25519 and ML-KEM-768+X25519 for receiving);
// [PrivateKeys.Public] gives the [PublicKeys] a peer registers and pins, with
// [PublicKeys.Fingerprint] for humans. An [Endpoint] (own id, own keys, a [KeyRing] of pinned
// peer keys, [Limits]) seals with [Endpoint.Seal] and opens with [Endpoint.Open]: Ed25519
// over the header and the exact message bytes, then HPKE (HKDF-SHA256, ChaCha20-Poly1305 or
// AES-256-GCM) to the recipient with the [Header] as AAD, using the hybrid KEM when both
// sides have a hybrid key.
//
// Replies (proposal_reply, update_reply, cancel_reply: [SignedOnly]) carry nothing
// confidential, so [Endpoint.Sign] sends them signed only: header (kem and aead "none", no
// recipient key), message and Ed25519 signature, which the receiver checks with one signature
// verification instead of an HPKE decapsulation. [Endpoint.Wrap] picks Sign or Seal by type.
// Compatibility: Open accepts both forms of a reply and only the sealed form of every other
// type (a proposal or update in clear is ErrUnsupported). An agbot of this version opens
// replies from older agents; an older agbot refuses a signed-only reply, so agbots are
// upgraded before their agents. Whether a reply acknowledges anything, and only once, is the
// receiver's check (agbot/engine), as for sealed replies.
//
// Agreement keys: a party that advertises [FeatureAgreementKeys] in its [PublicKeys] gets,
// in each proposal, a key for the agreement ([Proposal.AgreementKey]); the agreement's other
// messages may then travel sealed with it ([Endpoint.SealAgreement]; header kem
// [KEMAgreement] naming the agreement, fields header and ct): an AEAD under a key per
// direction derived from it, the header as AAD, instead of a KEM encapsulation and a
// signature per message. [Endpoint.Agreements] supplies the keys: [DerivedAgreementKeys] on
// the agbot (derived, never stored), the agent's agreement state, or an [AgreementKeyMap]
// that remembers each opened proposal's key. [Endpoint.Wrap] uses the agreement key when
// there is one.
//
// # Replay and order
//
// A receiver keeps a [Tracker]: [Tracker.Check] before applying a message and
// [Tracker.Commit] after. A lower sequence is [ErrStale], the same one [ErrDuplicate]
// (acknowledge again, do nothing), a proposal for a known agreement [ErrKnownAgreement], a
// proposal older than its time to live (default 10 minutes) [ErrExpired]; updates do not
// expire.
//
// # Validation
//
// [ValidateSecretName] (the one secret-name validator, design §3), [ParseManagerName],
// [ValidateBindings], [ParseVersionRange], [ParseOnUpdate] and each message's Validate.
// Every refusal wraps a sentinel (ErrInvalid, ErrTooLarge, ErrBadSignature, ...) for
// errors.Is; a [*ValidationError] names the field and the rule and never quotes a secret
// value.
package protocol
