package protocol

import (
	"crypto/ed25519"
	"crypto/hpke"
	"encoding/binary"
	"encoding/json"
	"errors"
	"fmt"
)

// Header is the envelope's clear-text header: enough to route and to pick keys. Its exact
// bytes are the HPKE AAD and are covered by the signature, so it can not be swapped or edited.
type Header struct {
	Version      int         `json:"v"`
	Type         MessageType `json:"type"`
	From         string      `json:"from"`
	To           string      `json:"to"`
	Agreement    string      `json:"agreement,omitempty"` // KEMAgreement only: whose key sealed it
	SenderKey    string      `json:"senderKey"`           // KeyID of the sender's Ed25519 key
	RecipientKey string      `json:"recipientKey"`        // KeyID of the recipient KEM key used
	KEM          string      `json:"kem"`                 // KEMX25519, KEMMLKEM768X25519, KEMAgreement, or KEMNone (signed only)
	AEAD         string      `json:"aead"`                // AEADChaCha20Poly1305 or AEADAES256GCM; AEADNone with KEMNone
}

// KEMNone and AEADNone mark a signed-only envelope (Sign): the message is in clear, signed,
// and RecipientKey is empty. Only replies (SignedOnly) may travel that way.
const (
	KEMNone  = "none"
	AEADNone = "none"
)

// SignedOnly reports whether messages of type t carry nothing confidential and may travel in
// a signed-only envelope: the replies (proposal_reply, update_reply, cancel_reply), which say
// which message they answer and how it went, never a value. Every other type must be sealed.
func SignedOnly(t MessageType) bool {
	switch t {
	case TypeProposalReply, TypeUpdateReply, TypeCancelReply:
		return true
	}
	return false
}

// AEAD names on the wire. The KDF is always HKDF-SHA256.
const (
	AEADChaCha20Poly1305 = "chacha20poly1305" // default: fast on ARM cores without AES instructions
	AEADAES256GCM        = "aes256gcm"
)

// Envelope is the wire form of a message (JSON): sealed to the recipient's keys (header,
// enc, ct), sealed with the agreement's key (header, ct) or, for a reply, signed only
// (header, body, sig). No other combination of fields opens.
type Envelope struct {
	Header     json.RawMessage `json:"header"`         // the Header, exact bytes
	Enc        []byte          `json:"enc,omitempty"`  // HPKE encapsulated key
	Ciphertext []byte          `json:"ct,omitempty"`   // HPKE ciphertext of signature || message; KEMAgreement: nonce || AEAD ciphertext of message
	Body       []byte          `json:"body,omitempty"` // signed-only: the message bytes
	Sig        []byte          `json:"sig,omitempty"`  // signed-only: Ed25519 over header and body
}

const (
	hpkeInfo   = "anax-agent envelope v1"
	signDomain = "anax-agent signature v1\x00"
)

// KeyRing gives the public keys pinned for a peer id: on the node, the agbot's keys pinned
// at registration; on the agbot, each node's registered keys. It returns an error wrapping
// ErrUnknownSender (or any error) when the id is not known.
type KeyRing interface {
	PeerKeys(id string) (*PublicKeys, error)
}

// StaticKeyRing is a KeyRing held in memory.
type StaticKeyRing map[string]*PublicKeys

// PeerKeys implements KeyRing.
func (r StaticKeyRing) PeerKeys(id string) (*PublicKeys, error) {
	if k, ok := r[id]; ok {
		return k, nil
	}
	return nil, fmt.Errorf("peer %s: %w", quote(id), ErrUnknownSender)
}

// Endpoint is one side of the exchange: it seals what it sends and opens what it receives.
// It is safe for concurrent use if Peers is.
type Endpoint struct {
	ID     string       // this party's id: the agbot id or the node id
	Keys   *PrivateKeys // this party's keys
	Peers  KeyRing      // the peers' pinned public keys
	Limits Limits
	// AEAD used when sealing: "" means AEADChaCha20Poly1305. Open accepts both.
	AEAD string
	// RequireHybrid refuses envelopes sealed with the classic KEM when this party has a
	// hybrid key, whatever the peer registered (no classic peer at all). Without it, a classic
	// envelope is still refused when both sides registered hybrid keys (a downgrade).
	RequireHybrid bool
	// Agreements gives agreement keys (see SealAgreement): the agbot's
	// DerivedAgreementKeys, the agent's agreement state, an AgreementKeyMap. Nil: this party
	// neither seals nor opens with agreement keys.
	Agreements AgreementKeys
}

// Seal validates m, signs it with e's Ed25519 key and encrypts it to the peer m.Head().To,
// with the hybrid KEM when both e and the peer have a hybrid key. It returns the envelope
// JSON.
func (e *Endpoint) Seal(m Message) ([]byte, error) {
	l, h, body, err := e.prepare("seal", m)
	if err != nil {
		return nil, err
	}
	peer, err := e.Peers.PeerKeys(h.To)
	if err != nil {
		return nil, fmt.Errorf("seal %s: %w", h.Type, err)
	}

	// Pick the KEM: hybrid when both sides have a hybrid key.
	hdr := Header{Version: ProtocolVersion, Type: h.Type, From: h.From, To: h.To,
		SenderKey: KeyID(e.Keys.sign.Public().(ed25519.PublicKey)), AEAD: e.AEAD}
	if hdr.AEAD == "" {
		hdr.AEAD = AEADChaCha20Poly1305
	}
	aead, err := aeadByName(hdr.AEAD)
	if err != nil {
		return nil, fmt.Errorf("seal: %w", err)
	}
	var pub hpke.PublicKey
	if e.Keys.hybrid != nil && peer.MLKEM768X25519 != nil {
		hdr.KEM, hdr.RecipientKey = KEMMLKEM768X25519, KeyID(peer.MLKEM768X25519)
		pub, err = kemHybrid.NewPublicKey(peer.MLKEM768X25519)
	} else {
		hdr.KEM, hdr.RecipientKey = KEMX25519, KeyID(peer.X25519)
		pub, err = kemX25519.NewPublicKey(peer.X25519)
	}
	if err != nil {
		return nil, fmt.Errorf("seal: peer %s: %w", quote(h.To), invalid("keys", "%s public key does not parse", hdr.KEM))
	}
	out, err := sealRaw(hdr, e.Keys.sign, body, pub, aead)
	if err != nil {
		return nil, err
	}
	if len(out) > l.MaxEnvelope {
		return nil, fmt.Errorf("seal %s: envelope is %d bytes, more than the limit %d: %w", h.Type, len(out), l.MaxEnvelope, ErrTooLarge)
	}
	return out, nil
}

// sealRaw signs and encrypts body under hdr. Tests call it to forge envelopes.
func sealRaw(hdr Header, sign ed25519.PrivateKey, body []byte, pub hpke.PublicKey, aead hpke.AEAD) ([]byte, error) {
	hdrBytes, err := json.Marshal(hdr)
	if err != nil {
		return nil, err
	}
	// 1. Sign header and message: plaintext = signature || message.
	pt := make([]byte, 0, ed25519.SignatureSize+len(body))
	pt = append(pt, ed25519.Sign(sign, signInput(hdrBytes, body))...)
	pt = append(pt, body...)

	// 2. Encrypt with the header as AAD.
	enc, sender, err := hpke.NewSender(pub, hpke.HKDFSHA256(), aead, []byte(hpkeInfo))
	if err != nil {
		return nil, fmt.Errorf("seal: hpke: %w", err)
	}
	ct, err := sender.Seal(hdrBytes, pt)
	if err != nil {
		return nil, fmt.Errorf("seal: hpke: %w", err)
	}
	return json.Marshal(Envelope{Header: hdrBytes, Enc: enc, Ciphertext: ct})
}

// Sign validates a reply (SignedOnly(type)) and wraps it in a signed-only envelope for the
// peer m.Head().To: the message in clear, the Ed25519 signature over header and message. A
// reply says which message it answers and how it went, never a value, so it needs
// authenticity and not confidentiality; verifying it costs the receiver one signature check
// instead of an HPKE decapsulation. Other types are refused: use Seal.
func (e *Endpoint) Sign(m Message) ([]byte, error) {
	if t := m.Head().Type; !SignedOnly(t) {
		return nil, fmt.Errorf("sign %s: %w: only replies travel signed-only, seal it", t, ErrUnsupported)
	}
	l, h, body, err := e.prepare("sign", m)
	if err != nil {
		return nil, err
	}
	if _, err := e.Peers.PeerKeys(h.To); err != nil {
		return nil, fmt.Errorf("sign %s: %w", h.Type, err)
	}
	hdr := Header{Version: ProtocolVersion, Type: h.Type, From: h.From, To: h.To,
		SenderKey: KeyID(e.Keys.sign.Public().(ed25519.PublicKey)), KEM: KEMNone, AEAD: AEADNone}
	out, err := signRaw(hdr, e.Keys.sign, body)
	if err != nil {
		return nil, err
	}
	if len(out) > l.MaxEnvelope {
		return nil, fmt.Errorf("sign %s: envelope is %d bytes, more than the limit %d: %w", h.Type, len(out), l.MaxEnvelope, ErrTooLarge)
	}
	return out, nil
}

// prepare checks that m is this endpoint's and valid, and encodes it within the envelope
// limit; op names the caller in errors.
func (e *Endpoint) prepare(op string, m Message) (Limits, *Meta, []byte, error) {
	l := e.Limits.withDefaults()
	h := m.Head()
	if h.From != e.ID {
		return l, h, nil, fmt.Errorf("%s %s: %w", op, h.Type, invalid("from", "must be this endpoint's id %s, got %s", quote(e.ID), quote(h.From)))
	}
	if err := m.Validate(l); err != nil {
		return l, h, nil, fmt.Errorf("%s %s: %w", op, h.Type, err)
	}
	body, err := Encode(m)
	if err != nil {
		return l, h, nil, err
	}
	if len(body) > l.MaxEnvelope {
		return l, h, nil, fmt.Errorf("%s %s: message is %d bytes, more than the envelope limit %d: %w", op, h.Type, len(body), l.MaxEnvelope, ErrTooLarge)
	}
	return l, h, body, nil
}

// Wrap is how a node sends m: sealed with its agreement's key when it has one
// (SealAgreement), else Sign for a reply and Seal for everything else.
func (e *Endpoint) Wrap(m Message) ([]byte, error) {
	if h := m.Head(); h.Type != TypeProposal && e.agreementKey(h.To, h.Agreement) != nil {
		return e.SealAgreement(m)
	}
	if SignedOnly(m.Head().Type) {
		return e.Sign(m)
	}
	return e.Seal(m)
}

// signRaw signs body under hdr. Tests call it to forge envelopes.
func signRaw(hdr Header, sign ed25519.PrivateKey, body []byte) ([]byte, error) {
	hdrBytes, err := json.Marshal(hdr)
	if err != nil {
		return nil, err
	}
	sig := ed25519.Sign(sign, signInput(hdrBytes, body))
	return json.Marshal(Envelope{Header: hdrBytes, Body: body, Sig: sig})
}

// Open checks, decrypts, verifies, decodes and validates an envelope addressed to e. Each
// refusal wraps one sentinel: ErrTooLarge, ErrMalformed, ErrUnsupported, ErrWrongRecipient,
// ErrUnknownSender, ErrDecrypt, ErrBadSignature, ErrHeaderMismatch or ErrInvalid. It does
// not check replay or order: that is the receiver's Tracker.
func (e *Endpoint) Open(data []byte) (Message, error) {
	l := e.Limits.withDefaults()
	if len(data) > l.MaxEnvelope { // size before anything else
		return nil, fmt.Errorf("open: envelope is %d bytes, more than the limit %d: %w", len(data), l.MaxEnvelope, ErrTooLarge)
	}
	env, hdr, err := parseEnvelope(data)
	if err != nil {
		return nil, fmt.Errorf("open: %w", err)
	}
	if hdr.Version != ProtocolVersion {
		return nil, fmt.Errorf("open: header version %d, this build speaks %d: %w", hdr.Version, ProtocolVersion, ErrUnsupported)
	}
	switch hdr.KEM {
	case KEMNone:
		return e.openSigned(env, hdr, l)
	case KEMAgreement:
		return e.openAgreement(env, hdr, l)
	}
	if env.Enc == nil || env.Body != nil || env.Sig != nil {
		return nil, fmt.Errorf("open: %w: a sealed envelope (kem %s) has the fields header, enc and ct", ErrMalformed, quote(hdr.KEM))
	}
	priv, aead, err := e.recipientKey(hdr)
	if err != nil {
		return nil, err
	}
	peer, err := e.senderKeys(hdr)
	if err != nil {
		return nil, err
	}
	body, err := openBody(env, hdr, priv, aead, peer)
	if err != nil {
		return nil, err
	}
	m, err := decodeAgainstHeader(body, hdr, l)
	if p, ok := m.(*Proposal); ok && err == nil {
		if km, ok := e.Agreements.(*AgreementKeyMap); ok {
			km.learn(p)
		}
	}
	return m, err
}

// openSigned verifies a signed-only envelope: a reply type, addressed to e with no recipient
// key or AEAD, signed by the sender's pinned key.
func (e *Endpoint) openSigned(env *Envelope, hdr *Header, l Limits) (Message, error) {
	if env.Body == nil || env.Sig == nil {
		return nil, fmt.Errorf("open: %w: a signed-only envelope (kem %s) has the fields header, body and sig", ErrMalformed, KEMNone)
	}
	if !SignedOnly(hdr.Type) {
		return nil, fmt.Errorf("open: a %s must be sealed, it came signed only: %w", quote(string(hdr.Type)), ErrUnsupported)
	}
	if hdr.To != e.ID {
		return nil, fmt.Errorf("open: addressed to %s, this is %s: %w", quote(hdr.To), quote(e.ID), ErrWrongRecipient)
	}
	if hdr.RecipientKey != "" || hdr.AEAD != AEADNone {
		return nil, fmt.Errorf("open: %w", invalid("header", "a signed-only envelope has recipientKey %q and aead %q", "", AEADNone))
	}
	peer, err := e.senderKeys(hdr)
	if err != nil {
		return nil, err
	}
	if len(env.Sig) != ed25519.SignatureSize || !ed25519.Verify(peer.Signing, signInput(env.Header, env.Body), env.Sig) {
		return nil, fmt.Errorf("open: from %s: %w", quote(hdr.From), ErrBadSignature)
	}
	return decodeAgainstHeader(env.Body, hdr, l)
}

// recipientKey checks that hdr is addressed to this party and to one of its keys under an
// allowed KEM, and returns that private key and the header's AEAD.
func (e *Endpoint) recipientKey(hdr *Header) (hpke.PrivateKey, hpke.AEAD, error) {
	if hdr.To != e.ID {
		return nil, nil, fmt.Errorf("open: addressed to %s, this is %s: %w", quote(hdr.To), quote(e.ID), ErrWrongRecipient)
	}
	var priv hpke.PrivateKey
	switch hdr.KEM {
	case KEMMLKEM768X25519:
		if e.Keys.hybrid == nil {
			return nil, nil, fmt.Errorf("open: KEM %s not enabled here: %w", hdr.KEM, ErrUnsupported)
		}
		priv = e.Keys.hybrid
	case KEMX25519:
		if e.RequireHybrid && e.Keys.hybrid != nil {
			return nil, nil, fmt.Errorf("open: KEM %s refused, %s is required: %w", hdr.KEM, KEMMLKEM768X25519, ErrUnsupported)
		}
		priv = e.Keys.x25519
	default:
		return nil, nil, fmt.Errorf("open: KEM %s: %w", quote(hdr.KEM), ErrUnsupported)
	}
	if hdr.RecipientKey != KeyID(priv.PublicKey().Bytes()) {
		return nil, nil, fmt.Errorf("open: sealed to key %s, not this party's %s key: %w", quote(hdr.RecipientKey), hdr.KEM, ErrWrongRecipient)
	}
	aead, err := aeadByName(hdr.AEAD)
	if err != nil {
		return nil, nil, fmt.Errorf("open: %w", err)
	}
	return priv, aead, nil
}

// senderKeys looks up hdr's sender, checks its pinned signing key and refuses a KEM downgrade.
func (e *Endpoint) senderKeys(hdr *Header) (*PublicKeys, error) {
	peer, err := e.Peers.PeerKeys(hdr.From)
	if err != nil {
		if !errors.Is(err, ErrUnknownSender) {
			err = fmt.Errorf("%w: %w", ErrUnknownSender, err)
		}
		return nil, fmt.Errorf("open: sender %s: %w", quote(hdr.From), err)
	}
	if hdr.SenderKey != KeyID(peer.Signing) {
		return nil, fmt.Errorf("open: sender %s signed with key %s, not its pinned key: %w", quote(hdr.From), quote(hdr.SenderKey), ErrUnknownSender)
	}
	// Seal uses the hybrid KEM whenever both sides registered a hybrid key: a classic envelope
	// between two such parties is a downgrade.
	if hdr.KEM == KEMX25519 && e.Keys.hybrid != nil && peer.MLKEM768X25519 != nil {
		return nil, fmt.Errorf("open: KEM %s refused: %s and this party both registered %s keys: %w",
			hdr.KEM, quote(hdr.From), KEMMLKEM768X25519, ErrUnsupported)
	}
	return peer, nil
}

// openBody decrypts env (the header is the AAD) and verifies the sender's signature over
// header and message, returning the signed message bytes.
func openBody(env *Envelope, hdr *Header, priv hpke.PrivateKey, aead hpke.AEAD, peer *PublicKeys) ([]byte, error) {
	r, err := hpke.NewRecipient(env.Enc, priv, hpke.HKDFSHA256(), aead, []byte(hpkeInfo))
	if err != nil {
		return nil, fmt.Errorf("open: encapsulated key: %w", ErrDecrypt)
	}
	pt, err := r.Open(env.Header, env.Ciphertext)
	if err != nil {
		return nil, fmt.Errorf("open: %w", ErrDecrypt)
	}
	if len(pt) < ed25519.SignatureSize {
		return nil, fmt.Errorf("open: plaintext shorter than a signature: %w", ErrBadSignature)
	}
	sig, body := pt[:ed25519.SignatureSize], pt[ed25519.SignatureSize:]
	if !ed25519.Verify(peer.Signing, signInput(env.Header, body), sig) {
		return nil, fmt.Errorf("open: from %s: %w", quote(hdr.From), ErrBadSignature)
	}
	return body, nil
}

// decodeAgainstHeader decodes the signed message, checks it agrees with its header and
// validates it against l.
func decodeAgainstHeader(body []byte, hdr *Header, l Limits) (Message, error) {
	if err := checkJSON(body); err != nil {
		return nil, fmt.Errorf("open: message: %w", err)
	}
	// The header names the type: no probe decoding. When that fails, Decode finds the
	// message's own type, so that a message of another type than its header is told apart
	// from a malformed one (the check below). A reply the hand reader refused stays refused
	// when encoding/json reads it as the header's type (it is more lenient).
	m, byHand, err := readReply(body, hdr.Type)
	if !byHand {
		m, err = decodeAs(body, hdr.Type)
	}
	if err != nil {
		other, derr := Decode(body)
		switch {
		case derr == nil && (!byHand || other.Head().Type != hdr.Type):
			m = other
		case byHand:
			return nil, fmt.Errorf("open: %w", err)
		default:
			return nil, fmt.Errorf("open: %w", derr)
		}
	}
	mh := m.Head()
	if mh.Type != hdr.Type || mh.From != hdr.From || mh.To != hdr.To || (hdr.Agreement != "" && mh.Agreement != hdr.Agreement) {
		return nil, fmt.Errorf("open: message %s from %s to %s in header %s from %s to %s: %w",
			quote(string(mh.Type)), quote(mh.From), quote(mh.To), quote(string(hdr.Type)), quote(hdr.From), quote(hdr.To), ErrHeaderMismatch)
	}
	if err := m.Validate(l); err != nil {
		return nil, fmt.Errorf("open: %s %s: %w", mh.Type, quote(mh.Agreement), err)
	}
	return m, nil
}

// PeekHeader decodes an envelope's header without opening it, e.g. to route or log. Nothing
// in it is authenticated until Open succeeds.
func PeekHeader(data []byte) (*Header, error) {
	_, hdr, err := parseEnvelope(data)
	return hdr, err
}

// parseEnvelope decodes the envelope exactly: the three field names as written (encoding/json
// would match them case-insensitively), no duplicates, strict base64 (no ignored padding
// bits), so that no byte of an envelope can change without the envelope being refused.
func parseEnvelope(data []byte) (*Envelope, *Header, error) {
	if err := checkJSON(data); err != nil {
		return nil, nil, fmt.Errorf("envelope: %w", err)
	}
	return readEnvelope(data)
}

func signInput(hdr, body []byte) []byte {
	b := make([]byte, 0, len(signDomain)+4+len(hdr)+len(body))
	b = append(b, signDomain...)
	b = binary.BigEndian.AppendUint32(b, uint32(len(hdr)))
	b = append(b, hdr...)
	return append(b, body...)
}

func aeadByName(name string) (hpke.AEAD, error) {
	switch name {
	case AEADChaCha20Poly1305:
		return hpke.ChaCha20Poly1305(), nil
	case AEADAES256GCM:
		return hpke.AES256GCM(), nil
	}
	return nil, fmt.Errorf("AEAD %s: %w", quote(name), ErrUnsupported)
}
