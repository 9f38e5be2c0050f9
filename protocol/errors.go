package protocol

import (
	"errors"
	"fmt"
)

// Sentinel errors. Every error this package returns wraps exactly one of these (plus, for
// validation, ErrInvalid), so callers branch with errors.Is and turn them into replies, HTTP
// codes or CLI messages at their edge. The messages never contain a secret value.
var (
	// ErrInvalid: a message, declaration or binding broke a validation rule. The error is a
	// *ValidationError naming the field and the rule.
	ErrInvalid = errors.New("invalid")
	// ErrMalformed: bytes that do not decode: not JSON, wrong shape, unknown or duplicate field.
	ErrMalformed = errors.New("malformed")
	// ErrTooLarge: an envelope or a value over its size limit.
	ErrTooLarge = errors.New("too large")
	// ErrUnsupported: a protocol version, KEM or AEAD this build does not speak or does not allow.
	ErrUnsupported = errors.New("unsupported")
	// ErrWrongRecipient: the envelope is addressed to another party or another key.
	ErrWrongRecipient = errors.New("wrong recipient")
	// ErrUnknownSender: the sender is not known, or its key is not the pinned one.
	ErrUnknownSender = errors.New("unknown sender or sender key")
	// ErrDecrypt: HPKE decryption failed: the ciphertext, the encapsulated key or the header
	// (bound into HPKE info and AAD) was altered, or the envelope was not sealed to this key.
	ErrDecrypt = errors.New("decryption failed (ciphertext or header altered)")
	// ErrBadSignature: the Ed25519 signature does not verify with the sender's pinned key.
	ErrBadSignature = errors.New("bad signature")
	// ErrHeaderMismatch: the signed message names another type, sender or recipient than the
	// envelope header it came in.
	ErrHeaderMismatch = errors.New("message does not match its envelope header")

	// ErrReplay is the parent of ErrKnownAgreement and ErrStale: a message seen before.
	ErrReplay = errors.New("replay")
	// ErrKnownAgreement: a proposal for an agreement id already known (or recently ended).
	ErrKnownAgreement = fmt.Errorf("proposal for a known agreement: %w", ErrReplay)
	// ErrStale: a sequence number lower than the last one applied for the agreement.
	ErrStale = fmt.Errorf("stale sequence number: %w", ErrReplay)
	// ErrDuplicate: the same sequence number as the last one applied. Not a refusal: the
	// receiver acknowledges again and does nothing.
	ErrDuplicate = errors.New("duplicate: already applied")
	// ErrUnknownAgreement: an update, cancel, reply or resync for an agreement not known.
	ErrUnknownAgreement = errors.New("unknown agreement")
	// ErrExpired: a proposal older than its time to live, or dated too far in the future.
	ErrExpired = errors.New("expired")
)

// ValidationError says which field broke which rule. Field is a path such as
// `service.deployment.services["web"].secrets["db"].format`. It never carries a secret value.
type ValidationError struct {
	Field string
	Rule  string
	Err   error // optional cause, e.g. a *NameError
}

func (e *ValidationError) Error() string {
	if e.Field == "" {
		return e.Rule
	}
	return "field " + e.Field + ": " + e.Rule
}

// Unwrap lets errors.Is find ErrInvalid and the cause (e.g. ErrInvalidSecretName).
func (e *ValidationError) Unwrap() []error {
	if e.Err != nil {
		return []error{ErrInvalid, e.Err}
	}
	return []error{ErrInvalid}
}

func invalid(field, rule string, args ...any) error {
	if len(args) > 0 {
		rule = fmt.Sprintf(rule, args...)
	}
	return &ValidationError{Field: field, Rule: rule}
}

// invalidCause wraps a cause (e.g. a *NameError) whose text becomes the rule.
func invalidCause(field string, cause error) error {
	return &ValidationError{Field: field, Rule: cause.Error(), Err: cause}
}

// quote shortens and quotes hostile, non-secret input for an error message.
func quote(s string) string {
	if len(s) > 64 {
		s = s[:64] + "..."
	}
	return fmt.Sprintf("%q", s)
}
