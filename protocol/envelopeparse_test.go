package protocol

import (
	"bytes"
	"encoding/base64"
	"encoding/json"
	"errors"
	"reflect"
	"strings"
	"testing"
)

// parseEnvelopeReference is how envelopes were read before readEnvelope: through
// encoding/json, strictly. readEnvelope must never accept what it refuses, and must read the
// same values from what both accept.
func parseEnvelopeReference(data []byte) (*Envelope, *Header, error) {
	if err := checkJSON(data); err != nil {
		return nil, nil, err
	}
	var fields map[string]json.RawMessage
	if err := json.Unmarshal(data, &fields); err != nil {
		return nil, nil, err
	}
	env := &Envelope{Header: fields["header"]}
	for name, dst := range map[string]*[]byte{"enc": &env.Enc, "ct": &env.Ciphertext, "body": &env.Body, "sig": &env.Sig} {
		if fields[name] == nil {
			continue
		}
		var s string
		if err := json.Unmarshal(fields[name], &s); err != nil {
			return nil, nil, err
		}
		b, err := base64.StdEncoding.Strict().DecodeString(s)
		if err != nil {
			return nil, nil, err
		}
		*dst = b
	}
	switch {
	case len(fields) == 3 && env.Header != nil && env.Enc != nil && env.Ciphertext != nil:
	case len(fields) == 3 && env.Header != nil && env.Body != nil && env.Sig != nil:
	case len(fields) == 2 && env.Header != nil && env.Ciphertext != nil:
	default:
		return nil, nil, errors.New("fields")
	}
	if env.Header[0] != '{' {
		return nil, nil, errors.New("header not an object")
	}
	var hdr Header
	if err := strictUnmarshal(env.Header, &hdr); err != nil {
		return nil, nil, err
	}
	return env, &hdr, nil
}

func TestReadEnvelope(t *testing.T) {
	const hdr = `{"v":1,"type":"update","from":"agbot","to":"o/n","agreement":"a1","senderKey":"sk","recipientKey":"","kem":"agreement","aead":"chacha20poly1305"}`
	want := Header{Version: 1, Type: TypeUpdate, From: "agbot", To: "o/n", Agreement: "a1", SenderKey: "sk", KEM: KEMAgreement, AEAD: AEADChaCha20Poly1305}
	tests := []struct {
		name  string
		env   string
		wantS string // "" accepted
	}{
		{"sealed with the agreement key", `{"header":` + hdr + `,"ct":"AAEC"}`, ""},
		{"sealed", `{"header":` + hdr + `,"enc":"AAEC","ct":"AAEC"}`, ""},
		{"signed only", `{"body":"e30=","sig":"AAEC","header":` + hdr + `}`, ""},
		{"white space everywhere", " {\n \"header\" :\t" + strings.ReplaceAll(hdr, ",", " ,\r\n ") + " , \"ct\" : \"AAEC\" }\n", ""},
		{"escaped header string", `{"header":` + strings.Replace(hdr, `"o/n"`, `"o\/n"`, 1) + `,"ct":"AAEC"}`, ""},
		{"not an object", `["header"]`, "must be a JSON object"},
		{"an extra field", `{"header":` + hdr + `,"ct":"AAEC","x":null}`, "must have exactly the fields"},
		{"field name case changed", `{"Header":` + hdr + `,"ct":"AAEC"}`, "must have exactly the fields"},
		{"base64 with an escape", `{"header":` + hdr + `,"ct":"AA\u0045C"}`, "ct is not strict base64"},
		{"base64 a number", `{"header":` + hdr + `,"ct":12}`, "ct must be a base64 string"},
		{"base64 padding bits", `{"header":` + hdr + `,"ct":"AB=="}`, "ct is not strict base64"},
		{"header a string", `{"header":"x","ct":"AAEC"}`, "header must be a JSON object"},
		{"header field unknown", `{"header":{"v":1,"x":{"y":[1,"}"]}},"ct":"AAEC"}`, `unknown field "x"`},
		{"header field case changed", `{"header":{"V":1},"ct":"AAEC"}`, `unknown field "V"`},
		{"header version a float", `{"header":{"v":1.0},"ct":"AAEC"}`, "field v: must be an integer"},
		{"header version a string", `{"header":{"v":"1"},"ct":"AAEC"}`, "field v: must be an integer"},
		{"header string null", `{"header":{"from":null},"ct":"AAEC"}`, "field from: must be a string"},
		{"header string an object", `{"header":{"to":{}},"ct":"AAEC"}`, "field to: must be a string"},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			env, h, err := parseEnvelope([]byte(tc.env))
			if tc.wantS != "" {
				if !errors.Is(err, ErrMalformed) || !strings.Contains(err.Error(), tc.wantS) {
					t.Fatalf("parseEnvelope = %v, want ErrMalformed with %q", err, tc.wantS)
				}
				return
			}
			if err != nil {
				t.Fatal(err)
			}
			if *h != want || !bytes.Equal(env.Ciphertext, []byte{0, 1, 2}) && !bytes.Equal(env.Sig, []byte{0, 1, 2}) {
				t.Fatalf("parseEnvelope = %+v, %+v", env, h)
			}
			if !json.Valid(env.Header) || env.Header[0] != '{' || env.Header[len(env.Header)-1] != '}' {
				t.Fatalf("header bytes %q are not the header object", env.Header)
			}
		})
	}
}

// FuzzReadEnvelope compares readEnvelope with encoding/json's strict reading: nothing it
// refuses is accepted, and what both accept reads the same.
func FuzzReadEnvelope(f *testing.F) {
	p := fuzzSetup(f)
	for _, m := range allMessages() {
		if m.Head().From == agbotID {
			env, err := p.agbot.Seal(m)
			if err != nil {
				f.Fatal(err)
			}
			f.Add(env)
		}
	}
	f.Add([]byte(`{"header":{"v":1,"type":"x"},"body":"","sig":""}`))
	f.Add([]byte(`{"header":{"v":1,"to":"a\"b"},"ct":"AAAA"}`))
	f.Add([]byte(` {"ct" : "AAAA" , "header" : { "v" : -0 } } `))
	f.Fuzz(func(t *testing.T, data []byte) {
		env, h, err := parseEnvelope(data)
		renv, rh, rerr := parseEnvelopeReference(data)
		if err != nil {
			if !errors.Is(err, ErrMalformed) {
				t.Fatalf("refused without ErrMalformed: %v", err)
			}
			return
		}
		if rerr != nil {
			t.Fatalf("accepted what encoding/json refuses (%v): %+v %+v", rerr, env, h)
		}
		if !reflect.DeepEqual(env, renv) || *h != *rh {
			t.Fatalf("read %+v %+v, encoding/json reads %+v %+v", env, h, renv, rh)
		}
	})
}
