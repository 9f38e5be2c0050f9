package reliability

import (
	"crypto/ecdh"
	"crypto/ed25519"
	"crypto/hpke"
	"crypto/sha256"
	"encoding/binary"
	"encoding/hex"
	"encoding/json"
	"testing"

	"github.com/edge-secrets/anax-agent/protocol"
)

// A forger builds envelopes the way an attacker who knows the wire format would: any header,
// any body, signed with any key, sealed to any key. It is written from the format (protocol's
// envelope.go), not with the package's sealing code, so that a hostile sender is not limited to
// what protocol.Endpoint.Seal accepts to send. A control case in every suite checks that a
// forged envelope of a valid message opens, so the forger itself is right.

const (
	hpkeInfo   = "anax-agent envelope v1"
	signDomain = "anax-agent signature v1\x00"
)

// party is one side with its private keys as bytes.
type party struct {
	id   string
	keys *protocol.PrivateKeys // nil for a party known only by its public keys
	sign ed25519.PrivateKey
	pub  *protocol.PublicKeys // set when keys is nil
}

func (p *party) public() *protocol.PublicKeys {
	if p.keys == nil {
		return p.pub
	}
	return p.keys.Public()
}

func newParty(t testing.TB, id string) *party {
	t.Helper()
	k, err := protocol.GenerateKeys()
	if err != nil {
		t.Fatal(err)
	}
	raw, err := k.MarshalBinary()
	if err != nil {
		t.Fatal(err)
	}
	var f struct {
		Seed []byte `json:"ed25519Seed"`
	}
	if err := json.Unmarshal(raw, &f); err != nil || len(f.Seed) != ed25519.SeedSize {
		t.Fatalf("key file: %v", err)
	}
	return &party{id: id, keys: k, sign: ed25519.NewKeyFromSeed(f.Seed)}
}

func keyID(pub []byte) string {
	s := sha256.Sum256(pub)
	return hex.EncodeToString(s[:16])
}

// forge describes one envelope. The zero values give a valid envelope of body from `from`
// to `to` (hybrid KEM, ChaCha20-Poly1305).
type forge struct {
	from, to   *party
	body       []byte
	header     *protocol.Header // nil: derived from from, to and the body's type
	signWith   ed25519.PrivateKey
	signedBody []byte // what the signature covers, when it differs from body
	classic    bool   // X25519 KEM instead of the hybrid
	mutate     func(hdr, enc, ct []byte) ([]byte, []byte, []byte)
}

func (f forge) seal(t testing.TB) []byte {
	t.Helper()
	var typ struct {
		Type protocol.MessageType `json:"type"`
	}
	_ = json.Unmarshal(f.body, &typ)
	pub := f.to.public()
	kem, kemPub, kemName := hpke.MLKEM768X25519(), pub.MLKEM768X25519, protocol.KEMMLKEM768X25519
	if f.classic {
		kem, kemPub, kemName = hpke.DHKEM(ecdh.X25519()), pub.X25519, protocol.KEMX25519
	}
	hdr := protocol.Header{Version: protocol.ProtocolVersion, Type: typ.Type, From: f.from.id, To: f.to.id,
		SenderKey: keyID(f.from.sign.Public().(ed25519.PublicKey)), RecipientKey: keyID(kemPub), KEM: kemName,
		AEAD: protocol.AEADChaCha20Poly1305}
	if f.header != nil {
		hdr = *f.header
	}
	hdrBytes, err := json.Marshal(hdr)
	if err != nil {
		t.Fatal(err)
	}
	sign := f.signWith
	if sign == nil {
		sign = f.from.sign
	}
	signed := f.body
	if f.signedBody != nil {
		signed = f.signedBody
	}
	in := append([]byte(signDomain), binary.BigEndian.AppendUint32(nil, uint32(len(hdrBytes)))...)
	in = append(append(in, hdrBytes...), signed...)
	pt := append(ed25519.Sign(sign, in), f.body...)
	pk, err := kem.NewPublicKey(kemPub)
	if err != nil {
		t.Fatal(err)
	}
	enc, sender, err := hpke.NewSender(pk, hpke.HKDFSHA256(), hpke.ChaCha20Poly1305(), []byte(hpkeInfo))
	if err != nil {
		t.Fatal(err)
	}
	ct, err := sender.Seal(hdrBytes, pt)
	if err != nil {
		t.Fatal(err)
	}
	if f.mutate != nil {
		hdrBytes, enc, ct = f.mutate(hdrBytes, enc, ct)
	}
	out, err := json.Marshal(struct {
		Header json.RawMessage `json:"header"`
		Enc    []byte          `json:"enc"`
		CT     []byte          `json:"ct"`
	}{hdrBytes, enc, ct})
	if err != nil {
		t.Fatal(err)
	}
	return out
}

// resealRaw encrypts an arbitrary plaintext under hdr to `to`'s hybrid key: an envelope that
// decrypts but whose content was never signed as the format says.
func resealRaw(t testing.TB, to *party, hdr, pt []byte) ([]byte, []byte, []byte) {
	t.Helper()
	pk, err := hpke.MLKEM768X25519().NewPublicKey(to.public().MLKEM768X25519)
	if err != nil {
		t.Fatal(err)
	}
	enc, sender, err := hpke.NewSender(pk, hpke.HKDFSHA256(), hpke.ChaCha20Poly1305(), []byte(hpkeInfo))
	if err != nil {
		t.Fatal(err)
	}
	ct, err := sender.Seal(hdr, pt)
	if err != nil {
		t.Fatal(err)
	}
	return hdr, enc, ct
}
