package protocol

import (
	"bytes"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"strings"
	"time"
)

// ProtocolVersion is the version every message and envelope names.
const ProtocolVersion = 1

// MessageType names a message on the wire.
type MessageType string

const (
	TypeProposal      MessageType = "proposal"       // agbot → node
	TypeProposalReply MessageType = "proposal_reply" // node → agbot
	TypeUpdate        MessageType = "update"         // agbot → node: changed secrets
	TypeUpdateReply   MessageType = "update_reply"   // node → agbot
	TypeCancel        MessageType = "cancel"         // either way: end the agreement
	TypeCancelReply   MessageType = "cancel_reply"   // the other side acknowledges
	TypeResync        MessageType = "resync"         // node → agbot: send me current values
)

// Message is one of *Proposal, *ProposalReply, *Update, *UpdateReply, *Cancel, *CancelReply,
// *Resync. Receivers type-switch on it.
type Message interface {
	// Head returns the fields every message carries.
	Head() *Meta
	// Validate checks every rule of design §3/§5 for this message under the limits.
	Validate(Limits) error
}

// Meta is carried by every message.
type Meta struct {
	Version int         `json:"version"`
	Type    MessageType `json:"type"`
	// Agreement is the agreement id; the agbot chooses it in the proposal.
	Agreement string `json:"agreementId"`
	From      string `json:"from"` // sender id: agbot id or node id (org/node)
	To        string `json:"to"`   // recipient id
	// Seq orders an agreement's messages. The agbot numbers what it sends, from 1 for the
	// proposal; a reply echoes the Seq of the message it answers; a resync carries the last
	// Seq the node applied; a cancel from the node carries the last Seq it applied (a cancel
	// is never stale: it ends the agreement whatever its Seq).
	Seq uint64 `json:"seq"`
	// Time the message was made (the sender's clock). A proposal expires a while after it.
	Time time.Time `json:"time"`
}

// Head returns m; embedding Meta gives each message its Head method.
func (m *Meta) Head() *Meta { return m }

// Proposal asks a node to run a service with the given secrets.
type Proposal struct {
	Meta
	Service Service `json:"service"`
	// Bindings is the secretBinding that was applied, for display and audit.
	Bindings []SecretBinding `json:"secretBinding,omitempty"`
	// Properties are the deployment policy's properties, which the node's constraints are
	// checked against with the service's built-in ones (anax matches both ways).
	Properties []Property `json:"properties,omitempty"`
	// Secrets are the resolved values by service secret name: exactly the secrets the
	// deployment declares.
	Secrets map[string]SecretValue `json:"secrets"`
	// AgreementKey, for a node that advertises FeatureAgreementKeys, is the key the
	// agreement's later messages may be sealed with (SealAgreement), both ways.
	AgreementKey AgreementKey `json:"agreementKey,omitempty"`
}

// ReplyStatus is the outcome a reply reports.
type ReplyStatus string

const (
	StatusAccepted  ReplyStatus = "accepted"  // proposal_reply
	StatusDeclined  ReplyStatus = "declined"  // proposal_reply
	StatusApplied   ReplyStatus = "applied"   // update_reply, cancel_reply
	StatusDuplicate ReplyStatus = "duplicate" // update_reply, cancel_reply: applied before
	StatusRefused   ReplyStatus = "refused"   // update_reply: invalid, nothing changed
	StatusFailed    ReplyStatus = "failed"    // update_reply: could not apply, nothing changed
)

// ProposalReply accepts or declines a proposal. Seq echoes the proposal's.
type ProposalReply struct {
	Meta
	Status ReplyStatus `json:"status"` // accepted or declined
	Reason string      `json:"reason,omitempty"`
}

// ChangeReason says why a secret in an update changed.
type ChangeReason string

const (
	ReasonValueUpdated ChangeReason = "value_updated" // the bound secret's value changed
	ReasonNodeAdded    ChangeReason = "node_added"    // a node-specific secret now overrides
	ReasonNodeRemoved  ChangeReason = "node_removed"  // the node-specific one went; fell back
	ReasonResync       ChangeReason = "resync"        // current value, sent after a resync
)

// ChangedSecret is one secret's new value in an update.
type ChangedSecret struct {
	SecretValue
	Reason ChangeReason `json:"reason"`
	// Source is the manager name the value now comes from, for audit: it is not a secret.
	Source string `json:"source,omitempty"`
}

// Format redacts, like SecretValue.
func (c ChangedSecret) Format(f fmt.State, verb rune) {
	fmt.Fprintf(f, "{%s reason:%s source:%q}", c.SecretValue.String(), c.Reason, c.Source)
}

// Update carries changed secret values of a running agreement. The agent applies all of
// them or none.
//
// A higher sequence supersedes: once update n is applied, a late update below n is refused
// as stale. So the agbot either waits for the ack of update n before sending n+1, or puts
// into n+1 every secret changed since the last acknowledged update (the latest value each).
type Update struct {
	Meta
	Secrets map[string]ChangedSecret `json:"secrets"`
	// Full marks the complete set (an answer to a resync): names not listed are unchanged
	// either way; Full only tells the agent it may rebuild an emptied store from it.
	Full bool `json:"full,omitempty"`
}

// UpdateReply acknowledges an update. Seq echoes the update's.
type UpdateReply struct {
	Meta
	Status ReplyStatus `json:"status"` // applied, duplicate, refused or failed
	Reason string      `json:"reason,omitempty"`
}

// Cancel ends an agreement.
type Cancel struct {
	Meta
	Reason string `json:"reason,omitempty"`
}

// CancelReply acknowledges a cancel. Seq echoes the cancel's.
type CancelReply struct {
	Meta
	Status ReplyStatus `json:"status"` // applied or duplicate
}

// Resync asks the agbot for the current values of an agreement, e.g. after a reboot emptied
// the node's tmpfs. Seq is the last sequence the node applied.
type Resync struct {
	Meta
	Reason string `json:"reason,omitempty"`
}

// newMessage returns an empty message of type t.
func newMessage(t MessageType) (Message, error) {
	switch t {
	case TypeProposal:
		return &Proposal{}, nil
	case TypeProposalReply:
		return &ProposalReply{}, nil
	case TypeUpdate:
		return &Update{}, nil
	case TypeUpdateReply:
		return &UpdateReply{}, nil
	case TypeCancel:
		return &Cancel{}, nil
	case TypeCancelReply:
		return &CancelReply{}, nil
	case TypeResync:
		return &Resync{}, nil
	}
	return nil, fmt.Errorf("%w: message type %s is not known", ErrMalformed, quote(string(t)))
}

// Encode writes a message as compact JSON, the bytes that are signed and encrypted.
func Encode(m Message) ([]byte, error) {
	var buf bytes.Buffer
	enc := json.NewEncoder(&buf)
	if err := enc.Encode(m); err != nil {
		return nil, fmt.Errorf("encode %s: %w", m.Head().Type, err)
	}
	return bytes.TrimSuffix(buf.Bytes(), []byte("\n")), nil
}

// Decode reads a message strictly: one JSON object, no unknown or duplicate fields, of a
// known type. It does not validate: call Validate (Open does both).
func Decode(data []byte) (Message, error) {
	if err := checkJSON(data); err != nil {
		return nil, fmt.Errorf("message: %w", err)
	}
	var probe struct {
		Type MessageType `json:"type"`
	}
	if err := json.Unmarshal(data, &probe); err != nil {
		return nil, fmt.Errorf("%w: message: %s", ErrMalformed, jsonErr(err))
	}
	return decodeAs(data, probe.Type)
}

// decodeAs decodes data, already checked by checkJSON, strictly as a message of type t (a
// message of another type fails, or decodes with that other type in its Meta).
func decodeAs(data []byte, t MessageType) (Message, error) {
	m, err := newMessage(t)
	if err != nil {
		return nil, err
	}
	if err := strictUnmarshal(data, m); err != nil {
		return nil, fmt.Errorf("%s: %w", t, err)
	}
	return m, nil
}

// strictUnmarshal decodes one JSON value into v, refusing unknown fields and trailing data.
func strictUnmarshal(data []byte, v any) error {
	dec := json.NewDecoder(bytes.NewReader(data))
	dec.DisallowUnknownFields()
	if err := dec.Decode(v); err != nil {
		if errors.Is(err, ErrMalformed) {
			return err
		}
		return fmt.Errorf("%w: %s", ErrMalformed, jsonErr(err))
	}
	if _, err := dec.Token(); err != io.EOF {
		return fmt.Errorf("%w: trailing data after the JSON object", ErrMalformed)
	}
	return nil
}

// jsonErr describes a decoding error without echoing input: encoding/json's messages name
// types, fields and offsets, but a syntax error can quote a byte of the input, and the
// input may be a secret, so only the kind and offset are kept.
func jsonErr(err error) string {
	var syn *json.SyntaxError
	var typ *json.UnmarshalTypeError
	switch {
	case errors.As(err, &syn):
		return fmt.Sprintf("JSON syntax error at byte %d", syn.Offset)
	case errors.As(err, &typ):
		f := typ.Field
		if f == "" {
			f = "(top level)"
		}
		return fmt.Sprintf("field %s: JSON %s where %s is expected", f, typ.Value, typ.Type)
	case errors.Is(err, io.EOF), errors.Is(err, io.ErrUnexpectedEOF):
		return "JSON ends early"
	}
	if msg := err.Error(); strings.HasPrefix(msg, "json: unknown field") || strings.HasPrefix(msg, "parsing time") {
		return msg // names a field or a timestamp, never a secret
	}
	return "JSON does not have the message's shape"
}

// LogValue logs the header fields only, so log/slog never serialises a message whole (its
// JSON handler would otherwise marshal secret values).
func (m Meta) LogValue() slog.Value {
	return slog.GroupValue(
		slog.String("type", string(m.Type)), slog.String("agreement", m.Agreement),
		slog.String("from", m.From), slog.String("to", m.To), slog.Uint64("seq", m.Seq))
}

// LogValue logs the header, the service and the secret names with their sizes.
func (p Proposal) LogValue() slog.Value {
	return slog.GroupValue(
		slog.Any("meta", p.Meta),
		slog.String("service", p.Service.Org+"/"+p.Service.URL+" "+p.Service.Version+" "+p.Service.Arch),
		slog.Any("secrets", secretSizes(p.Secrets)))
}

// LogValue logs the header and the changed secret names with their sizes.
func (u Update) LogValue() slog.Value {
	return slog.GroupValue(
		slog.Any("meta", u.Meta),
		slog.Any("secrets", secretSizes(u.Secrets)))
}

// secretSizes logs each secret's name with its size in bytes, never its content.
func secretSizes[V interface{ Size() int }](m map[string]V) slog.Value {
	attrs := make([]slog.Attr, 0, len(m))
	for _, name := range sortedKeys(m) {
		attrs = append(attrs, slog.Int(name, m[name].Size()))
	}
	return slog.GroupValue(attrs...)
}

// NewMeta fills the common fields of a message made now.
func NewMeta(t MessageType, agreement, from, to string, seq uint64) Meta {
	return Meta{Version: ProtocolVersion, Type: t, Agreement: agreement, From: from, To: to,
		Seq: seq, Time: time.Now().UTC().Truncate(time.Millisecond)}
}

// ReplyMeta is the Meta of a reply of type t to m: same agreement and sequence, sender and
// recipient swapped, made now.
func (m *Meta) ReplyMeta(t MessageType) Meta {
	return NewMeta(t, m.Agreement, m.To, m.From, m.Seq)
}
