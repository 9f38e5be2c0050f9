package embedded

import (
	"crypto/aes"
	"crypto/cipher"
	"crypto/rand"
	"encoding/binary"
	"errors"
	"fmt"
	"time"

	"github.com/edge-secrets/anax-agent/agbot/secrets"
)

// ErrTampered: a sealed record failed authentication: it was altered, moved to another name or
// version, or sealed under another key.
var ErrTampered = errors.New("sealed secret failed authentication")

// Record layout, big endian: format(1) | version(8) | updated unix nanoseconds(8) | nonce(12) |
// AES-256-GCM(key length uvarint | key | value) with its 16-byte tag.
const (
	recordFormat = 1
	headerLen    = 1 + 8 + 8
	aadLabel     = "anax-agent/agbot/secrets/embedded/v1\x00"
)

type sealer struct{ aead cipher.AEAD }

func newSealer(key []byte) (*sealer, error) {
	block, err := aes.NewCipher(key)
	if err != nil {
		return nil, err
	}
	aead, err := cipher.NewGCM(block)
	if err != nil {
		return nil, err
	}
	return &sealer{aead: aead}, nil
}

// aad binds a record to its place and header (format, version, time): org and name can not
// hold NUL (ParseName), so the encoding is unambiguous.
func aad(org, name string, hdr []byte) []byte {
	b := make([]byte, 0, len(aadLabel)+len(org)+len(name)+2+headerLen)
	b = append(b, aadLabel...)
	b = append(b, org...)
	b = append(b, 0)
	b = append(b, name...)
	b = append(b, 0)
	return append(b, hdr[:headerLen]...)
}

type record struct {
	version uint64
	updated time.Time
}

func (s *sealer) seal(org, name string, r record, sec secrets.Secret) ([]byte, error) {
	clearText := make([]byte, 0, binary.MaxVarintLen64+len(sec.Key)+len(sec.Value))
	defer func() { clear(clearText[:cap(clearText)]) }()
	clearText = binary.AppendUvarint(clearText, uint64(len(sec.Key)))
	clearText = append(clearText, sec.Key...)
	clearText = append(clearText, sec.Value...)

	ns := s.aead.NonceSize()
	out := make([]byte, headerLen+ns, headerLen+ns+len(clearText)+s.aead.Overhead())
	out[0] = recordFormat
	binary.BigEndian.PutUint64(out[1:], r.version)
	binary.BigEndian.PutUint64(out[9:], uint64(r.updated.UnixNano()))
	nonce := out[headerLen:]
	if _, err := rand.Read(nonce); err != nil {
		return nil, err
	}
	return s.aead.Seal(out, nonce, clearText, aad(org, name, out)), nil
}

// header reads a record's version and time without opening it.
func header(b []byte) (record, error) {
	if len(b) < headerLen || b[0] != recordFormat {
		return record{}, fmt.Errorf("%w: unknown record format", ErrTampered)
	}
	return record{
		version: binary.BigEndian.Uint64(b[1:]),
		updated: time.Unix(0, int64(binary.BigEndian.Uint64(b[9:]))),
	}, nil
}

func (s *sealer) open(org, name string, b []byte) (record, secrets.Secret, error) {
	r, err := header(b)
	if err != nil {
		return record{}, secrets.Secret{}, err
	}
	ns := s.aead.NonceSize()
	if len(b) < headerLen+ns+s.aead.Overhead() {
		return record{}, secrets.Secret{}, fmt.Errorf("%w: record too short", ErrTampered)
	}
	nonce, box := b[headerLen:headerLen+ns], b[headerLen+ns:]
	clearText, err := s.aead.Open(nil, nonce, box, aad(org, name, b))
	if err != nil {
		return record{}, secrets.Secret{}, ErrTampered
	}
	defer clear(clearText)
	n, k := binary.Uvarint(clearText)
	if k <= 0 || n > uint64(len(clearText)-k) {
		return record{}, secrets.Secret{}, fmt.Errorf("%w: bad key length", ErrTampered)
	}
	rest := clearText[k:]
	return r, secrets.Secret{Key: string(rest[:n]), Value: string(rest[n:])}, nil
}
