package protocol

import (
	"encoding/base64"
	"encoding/json"
	"fmt"
	"strconv"
)

// The envelope and its header are read by hand, not with encoding/json: every message a
// party opens starts here, and decoding them through a map and a json.Decoder was 6% of
// the agbot's CPU in a fan-out. The rules are encoding/json's strict reading and more:
// field names exactly as written (encoding/json matches them case-insensitively), no
// unknown header field, a header field of the wrong JSON type or null refused, base64 only
// as written (no escapes in it, no ignored padding bits). Both functions run on JSON that
// checkJSON accepted (valid, UTF-8, no duplicate keys), which keeps the scanning simple.

// envelopeRaw holds the raw values of an envelope's fields (nil: absent) and how many
// fields it has, these and any other.
type envelopeRaw struct {
	header, enc, ct, body, sig []byte
	n                          int
}

// readEnvelope decodes data, which checkJSON accepted, as an envelope.
func readEnvelope(data []byte) (*Envelope, *Header, error) {
	i := skipSpace(data, 0)
	if i >= len(data) || data[i] != '{' {
		return nil, nil, fmt.Errorf("envelope: %w: must be a JSON object", ErrMalformed)
	}
	var f envelopeRaw
	eachMember(data[i:], func(key string, val []byte) {
		f.n++
		switch key {
		case "header":
			f.header = val
		case "enc":
			f.enc = val
		case "ct":
			f.ct = val
		case "body":
			f.body = val
		case "sig":
			f.sig = val
		}
	})
	env := &Envelope{}
	type field struct {
		name string
		val  []byte
		dst  *[]byte
	}
	var want []field
	switch {
	case f.n == 3 && f.header != nil && f.enc != nil && f.ct != nil:
		want = []field{{"enc", f.enc, &env.Enc}, {"ct", f.ct, &env.Ciphertext}}
	case f.n == 3 && f.header != nil && f.body != nil && f.sig != nil:
		want = []field{{"body", f.body, &env.Body}, {"sig", f.sig, &env.Sig}}
	case f.n == 2 && f.header != nil && f.ct != nil:
		want = []field{{"ct", f.ct, &env.Ciphertext}}
	default:
		return nil, nil, fmt.Errorf("envelope: %w: must have exactly the fields header, enc and ct (sealed), header and ct (sealed with the agreement key) or header, body and sig (signed only)", ErrMalformed)
	}
	for _, w := range want {
		b, err := strictBase64(w.val)
		if err != nil {
			return nil, nil, fmt.Errorf("envelope: %w: %s %s", ErrMalformed, w.name, err)
		}
		*w.dst = b
	}
	if f.header[0] != '{' {
		return nil, nil, fmt.Errorf("envelope: %w: header must be a JSON object", ErrMalformed)
	}
	env.Header = json.RawMessage(f.header)
	hdr, err := readHeader(f.header)
	if err != nil {
		return nil, nil, fmt.Errorf("header: %w", err)
	}
	return env, hdr, nil
}

// strictBase64 decodes a JSON string value holding strict standard base64, no escapes.
func strictBase64(val []byte) ([]byte, error) {
	if len(val) < 2 || val[0] != '"' {
		return nil, fmt.Errorf("must be a base64 string")
	}
	s := val[1 : len(val)-1]
	out := make([]byte, base64.StdEncoding.DecodedLen(len(s)))
	n, err := base64.StdEncoding.Strict().Decode(out, s)
	if err != nil {
		return nil, fmt.Errorf("is not strict base64")
	}
	return out[:n], nil
}

// readHeader decodes a header object, which checkJSON accepted as part of its envelope.
func readHeader(data []byte) (*Header, error) {
	var h Header
	var err error
	eachMember(data, func(key string, val []byte) {
		if err != nil {
			return
		}
		if key == "v" {
			if h.Version, err = strconv.Atoi(string(val)); err != nil {
				err = fmt.Errorf("%w: field v: must be an integer", ErrMalformed)
			}
			return
		}
		dst := h.stringField(key)
		if dst == nil {
			err = fmt.Errorf("%w: unknown field %s", ErrMalformed, quote(key))
			return
		}
		if *dst, err = jsonString(val); err != nil {
			err = fmt.Errorf("%w: field %s: must be a string", ErrMalformed, key)
		}
	})
	return &h, err
}

// stringField is the string field of h named key in JSON, nil if there is none.
func (h *Header) stringField(key string) *string {
	switch key {
	case "type":
		return (*string)(&h.Type)
	case "from":
		return &h.From
	case "to":
		return &h.To
	case "agreement":
		return &h.Agreement
	case "senderKey":
		return &h.SenderKey
	case "recipientKey":
		return &h.RecipientKey
	case "kem":
		return &h.KEM
	case "aead":
		return &h.AEAD
	}
	return nil
}

// jsonString unquotes a valid JSON string value; anything else is an error.
func jsonString(val []byte) (string, error) {
	if len(val) < 2 || val[0] != '"' {
		return "", fmt.Errorf("not a string")
	}
	inner := val[1 : len(val)-1]
	for _, c := range inner {
		if c == '\\' {
			var s string
			err := json.Unmarshal(val, &s)
			return s, err
		}
	}
	return string(inner), nil
}

// eachMember calls fn with each member of the JSON object that starts data (valid JSON):
// its key, unquoted, and its value's bytes.
func eachMember(data []byte, fn func(key string, val []byte)) {
	i := skipSpace(data, 1)
	for i < len(data) && data[i] != '}' {
		end := skipValue(data, i)
		key, _ := jsonString(data[i:end])
		i = skipSpace(data, end)
		i = skipSpace(data, i+1) // the colon
		end = skipValue(data, i)
		fn(key, data[i:end])
		i = skipSpace(data, end)
		if i < len(data) && data[i] == ',' {
			i = skipSpace(data, i+1)
		}
	}
}

// skipValue is the index just after the JSON value that starts at data[i] (valid JSON).
func skipValue(data []byte, i int) int {
	depth := 0
	for ; i < len(data); i++ {
		switch data[i] {
		case '"':
			for i++; data[i] != '"'; i++ {
				if data[i] == '\\' {
					i++
				}
			}
			if depth == 0 {
				return i + 1
			}
		case '{', '[':
			depth++
		case '}', ']':
			depth--
			if depth == 0 {
				return i + 1
			}
			if depth < 0 { // the end of the enclosing object: a literal ended here
				return i
			}
		case ',', ' ', '\t', '\r', '\n', ':':
			if depth == 0 {
				return i
			}
		}
	}
	return i
}

func skipSpace(data []byte, i int) int {
	for i < len(data) && (data[i] == ' ' || data[i] == '\t' || data[i] == '\r' || data[i] == '\n') {
		i++
	}
	return i
}
