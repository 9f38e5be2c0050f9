package protocol

import (
	"crypto/aes"
	"crypto/cipher"
	"crypto/ed25519"
	"crypto/hkdf"
	"crypto/rand"
	"crypto/sha256"
	"encoding/binary"
	"encoding/json"
	"fmt"
	"io"
	"log/slog"
	"sync"

	"golang.org/x/crypto/chacha20poly1305"
)

// Agreement keys. A proposal to a node that advertises FeatureAgreementKeys carries a
// 32-byte key for its agreement, sealed to the node's keys with the hybrid KEM and signed
// like the rest of the proposal. Every later message of that agreement, both ways, may then
// travel sealed with it (SealAgreement): an AEAD under a key for its direction, the header
// as AAD, instead of one hybrid KEM encapsulation, one key parse and one signature per
// message and one signature check per reply. A proposal never travels that way: it is what
// carries the key.
//
// The agbot stores no key: DerivedAgreementKeys derives each from its private keys, the
// node's id and pinned signing key and the agreement id, so every agbot sharing the keys
// derives the same one after a restart or a takeover, and a node's re-keying retires the
// keys of its agreements. The node keeps the key with the agreement's state, beside its own
// private keys.

// KEMAgreement marks an envelope sealed with its agreement's key (header "kem").
const KEMAgreement = "agreement"

// FeatureAgreementKeys, in a party's PublicKeys.Features, says it accepts agreement keys in
// proposals and messages sealed with them.
const FeatureAgreementKeys = "agreement-keys"

// AgreementKeySize is the length of an agreement key.
const AgreementKeySize = 32

const (
	agreementKeyInfo = "anax-agent agreement key v1\x00"
	directionInfo    = "anax-agent agreement envelope v1\x00"
)

// AgreementKey is an agreement's key. It prints and logs as [redacted]; its JSON is base64.
type AgreementKey []byte

// String redacts.
func (AgreementKey) String() string { return "[redacted]" }

// Format redacts, whatever the verb.
func (AgreementKey) Format(f fmt.State, _ rune) { io.WriteString(f, "[redacted]") }

// LogValue redacts.
func (AgreementKey) LogValue() slog.Value { return slog.StringValue("[redacted]") }

// AgreementKeys gives the key of an agreement with a peer, or nil when it has none.
type AgreementKeys interface {
	AgreementKey(peer, agreement string) AgreementKey
}

// DerivedAgreementKeys are the agbot's agreement keys: derived, never stored (see above).
type DerivedAgreementKeys struct {
	ID    string       // the agbot's id
	Keys  *PrivateKeys // the agbot's keys
	Peers KeyRing      // the nodes' pinned keys
}

// AgreementKey implements AgreementKeys: nil when the peer is not known.
func (d DerivedAgreementKeys) AgreementKey(peer, agreement string) AgreementKey {
	p, err := d.Peers.PeerKeys(peer)
	if err != nil {
		return nil
	}
	k, err := hkdf.Expand(sha256.New, d.Keys.agreementKeyPRK(), agreementKeyInfo+lengthPrefixed(d.ID, peer, KeyID(p.Signing), agreement), AgreementKeySize)
	if err != nil {
		return nil
	}
	return k
}

// agreementKeyPRK is HKDF-Extract of the Ed25519 seed under a salt of its own: agreement
// keys are HKDF-Expand of it (one HMAC each), apart from every other use of the seed.
func (k *PrivateKeys) agreementKeyPRK() []byte {
	k.agreementPRK.once.Do(func() {
		k.agreementPRK.b, _ = hkdf.Extract(sha256.New, k.sign.Seed(), []byte(agreementKeyInfo))
	})
	return k.agreementPRK.b
}

// AgreementKeyMap is an in-memory AgreementKeys for a party that keeps no state of its own
// (tests, simulated nodes): Open remembers the key of each proposal it opens.
type AgreementKeyMap struct {
	mu sync.Mutex
	m  map[string]AgreementKey
}

// AgreementKey implements AgreementKeys.
func (k *AgreementKeyMap) AgreementKey(peer, agreement string) AgreementKey {
	k.mu.Lock()
	defer k.mu.Unlock()
	return k.m[lengthPrefixed(peer, agreement)]
}

// learn remembers the key a proposal carries.
func (k *AgreementKeyMap) learn(p *Proposal) {
	if len(p.AgreementKey) == 0 {
		return
	}
	k.mu.Lock()
	defer k.mu.Unlock()
	if k.m == nil {
		k.m = map[string]AgreementKey{}
	}
	k.m[lengthPrefixed(p.From, p.Agreement)] = p.AgreementKey
}

// NewAgreementKey returns a fresh random key (for tests and nodes that make their own).
func NewAgreementKey() AgreementKey {
	k := make(AgreementKey, AgreementKeySize)
	rand.Read(k)
	return k
}

// SealAgreement validates m and seals it with the key of its agreement (e.Agreements) for
// the peer m.Head().To. A proposal is refused (ErrUnsupported): it carries the key, so it is
// sealed to the node's keys (Seal). So is a message whose agreement has no key.
func (e *Endpoint) SealAgreement(m Message) ([]byte, error) {
	l, h, body, err := e.prepare("seal", m)
	if err != nil {
		return nil, err
	}
	if h.Type == TypeProposal {
		return nil, fmt.Errorf("seal %s: %w: a proposal carries the agreement key, seal it to the node's keys", h.Type, ErrUnsupported)
	}
	key := e.agreementKey(h.To, h.Agreement)
	if key == nil {
		return nil, fmt.Errorf("seal %s: agreement %s with %s has no key: %w", h.Type, quote(h.Agreement), quote(h.To), ErrUnsupported)
	}
	hdr := Header{Version: ProtocolVersion, Type: h.Type, From: h.From, To: h.To, Agreement: h.Agreement,
		SenderKey: KeyID(e.Keys.sign.Public().(ed25519.PublicKey)), KEM: KEMAgreement, AEAD: e.AEAD}
	if hdr.AEAD == "" {
		hdr.AEAD = AEADChaCha20Poly1305
	}
	out, err := sealAgreementRaw(hdr, key, body)
	if err != nil {
		return nil, fmt.Errorf("seal %s: %w", h.Type, err)
	}
	if len(out) > l.MaxEnvelope {
		return nil, fmt.Errorf("seal %s: envelope is %d bytes, more than the limit %d: %w", h.Type, len(out), l.MaxEnvelope, ErrTooLarge)
	}
	return out, nil
}

// sealAgreementRaw encrypts body under hdr with key: ct is the random nonce followed by the
// AEAD's output, the header bytes its additional data. Tests call it to forge envelopes.
func sealAgreementRaw(hdr Header, key AgreementKey, body []byte) ([]byte, error) {
	hdrBytes, err := json.Marshal(hdr)
	if err != nil {
		return nil, err
	}
	aead, err := directionAEAD(key, &hdr)
	if err != nil {
		return nil, err
	}
	ct := make([]byte, aead.NonceSize(), aead.NonceSize()+len(body)+aead.Overhead())
	rand.Read(ct)
	ct = aead.Seal(ct, ct, body, hdrBytes)
	return json.Marshal(Envelope{Header: hdrBytes, Ciphertext: ct})
}

// openAgreement opens an envelope sealed with its agreement's key.
func (e *Endpoint) openAgreement(env *Envelope, hdr *Header, l Limits) (Message, error) {
	if env.Ciphertext == nil || env.Enc != nil || env.Body != nil || env.Sig != nil {
		return nil, fmt.Errorf("open: %w: an envelope sealed with its agreement key (kem %s) has the fields header and ct", ErrMalformed, KEMAgreement)
	}
	if hdr.To != e.ID {
		return nil, fmt.Errorf("open: addressed to %s, this is %s: %w", quote(hdr.To), quote(e.ID), ErrWrongRecipient)
	}
	if hdr.Type == TypeProposal || hdr.Agreement == "" || hdr.RecipientKey != "" {
		return nil, fmt.Errorf("open: %w", invalid("header", "an envelope sealed with its agreement key names the agreement, no recipient key, and is not a proposal"))
	}
	if _, err := e.senderKeys(hdr); err != nil {
		return nil, err
	}
	key := e.agreementKey(hdr.From, hdr.Agreement)
	if key == nil {
		return nil, fmt.Errorf("open: agreement %s with %s has no key here: %w", quote(hdr.Agreement), quote(hdr.From), ErrDecrypt)
	}
	aead, err := directionAEAD(key, hdr)
	if err != nil {
		return nil, fmt.Errorf("open: %w", err)
	}
	if len(env.Ciphertext) < aead.NonceSize()+aead.Overhead() {
		return nil, fmt.Errorf("open: ciphertext too short: %w", ErrDecrypt)
	}
	nonce, ct := env.Ciphertext[:aead.NonceSize()], env.Ciphertext[aead.NonceSize():]
	body, err := aead.Open(nil, nonce, ct, env.Header)
	if err != nil {
		return nil, fmt.Errorf("open: %w", ErrDecrypt)
	}
	return decodeAgainstHeader(body, hdr, l)
}

func (e *Endpoint) agreementKey(peer, agreement string) AgreementKey {
	if e.Agreements == nil {
		return nil
	}
	k := e.Agreements.AgreementKey(peer, agreement)
	if len(k) != AgreementKeySize {
		return nil
	}
	return k
}

// directionAEAD is the AEAD of one direction of an agreement: its key derived from the
// agreement key, the sender, the recipient and the agreement id, so a message can not be
// reflected back to its sender or moved to another agreement.
func directionAEAD(key AgreementKey, hdr *Header) (cipher.AEAD, error) {
	// The agreement key is uniformly random: HKDF-Expand alone (one HMAC) derives from it.
	k, err := hkdf.Expand(sha256.New, key, directionInfo+lengthPrefixed(hdr.From, hdr.To, hdr.Agreement), 32)
	if err != nil {
		return nil, err
	}
	switch hdr.AEAD {
	case AEADChaCha20Poly1305:
		return chacha20poly1305.New(k)
	case AEADAES256GCM:
		b, err := aes.NewCipher(k)
		if err != nil {
			return nil, err
		}
		return cipher.NewGCM(b)
	}
	return nil, fmt.Errorf("AEAD %s: %w", quote(hdr.AEAD), ErrUnsupported)
}

// lengthPrefixed joins strings unambiguously.
func lengthPrefixed(parts ...string) string {
	var b []byte
	for _, p := range parts {
		b = binary.BigEndian.AppendUint32(b, uint32(len(p)))
		b = append(b, p...)
	}
	return string(b)
}
