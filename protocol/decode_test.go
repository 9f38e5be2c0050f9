package protocol

import (
	"bytes"
	"encoding/json"
	"errors"
	"io"
	"strings"
	"testing"
	"unicode/utf8"
)

// refCheckKeys is the obvious duplicate-key check on json.Decoder tokens: the oracle for
// checkKeys. It reports whether data (valid JSON) has a duplicate key and its maximum depth.
func refCheckKeys(data []byte) (dup bool, depth int) {
	dec := json.NewDecoder(bytes.NewReader(data))
	type object struct {
		keys     map[string]bool
		wantsKey bool
	}
	var stack []*object
	for {
		tok, err := dec.Token()
		if err == io.EOF || err != nil {
			return dup, depth
		}
		var top *object
		if n := len(stack); n > 0 {
			top = stack[n-1]
		}
		if top != nil && top.wantsKey {
			if d, ok := tok.(json.Delim); ok && d == '}' {
				stack = stack[:len(stack)-1]
				continue
			}
			key := tok.(string)
			if top.keys[key] {
				dup = true
			}
			top.keys[key] = true
			top.wantsKey = false
			continue
		}
		if top != nil {
			top.wantsKey = true
		}
		switch tok {
		case json.Delim('{'):
			stack = append(stack, &object{keys: map[string]bool{}, wantsKey: true})
		case json.Delim('['):
			stack = append(stack, nil)
		case json.Delim(']'):
			stack = stack[:len(stack)-1]
			continue
		}
		depth = max(depth, len(stack))
	}
}

func TestCheckJSON(t *testing.T) {
	tests := []struct {
		name, in, wantErr string
	}{
		{"object", `{"a":1,"b":{"a":2},"c":[{"a":3},{"a":4}]}`, ""},
		{"keys in arrays are values", `{"a":["a","a"],"b":"a"}`, ""},
		{"string with quote and brace", `{"a":"x\"}{,\"a\":","b":1}`, ""},
		{"duplicate", `{"a":1,"a":2}`, `malformed: duplicate JSON object key "a"`},
		{"duplicate nested", `{"x":{"a":1,"b":2,"a":3}}`, `malformed: duplicate JSON object key "a"`},
		{"duplicate in array element", `[{"a":1},{"a":1,"a":1}]`, `malformed: duplicate JSON object key "a"`},
		{"duplicate after array value", `{"a":[1,2],"a":3}`, `malformed: duplicate JSON object key "a"`},
		{"duplicate by escape", `{"a":1,"\u0061":2}`, `malformed: duplicate JSON object key "a"`},
		{"case differs", `{"a":1,"A":2}`, ""},
		{"deep", strings.Repeat("[", 33) + strings.Repeat("]", 33), "malformed: JSON nested deeper than 32"},
		{"deep enough", strings.Repeat("[", 32) + strings.Repeat("]", 32), ""},
		{"syntax", `{"a":}`, "malformed: JSON syntax error at byte 6"},
		{"truncated", `{"a":1`, "malformed: JSON ends early"},
		{"two values", `{} {}`, "malformed: more than one JSON value"},
		{"empty", ``, "malformed: JSON ends early"},
		{"not UTF-8", "{\"a\":\"\xc3\x28\"}", "malformed: JSON is not valid UTF-8"},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			err := checkJSON([]byte(tc.in))
			if tc.wantErr == "" {
				if err != nil {
					t.Fatalf("checkJSON = %v, want nil", err)
				}
				return
			}
			if err == nil || err.Error() != tc.wantErr || !errors.Is(err, ErrMalformed) {
				t.Fatalf("checkJSON = %v, want %q", err, tc.wantErr)
			}
		})
	}
}

// FuzzCheckJSON compares checkKeys with the token-based oracle on valid JSON.
func FuzzCheckJSON(f *testing.F) {
	for _, s := range []string{`{"a":1,"a":2}`, `{"a":{"b":[{"c":1,"c":2}]}}`, `["a","a"]`, `{"a\"":1,"a\u0022":2}`, `{"x":"}","x":1}`} {
		f.Add([]byte(s))
	}
	for _, m := range allMessages() {
		f.Add(mustEncodeF(f, m))
	}
	f.Fuzz(func(t *testing.T, data []byte) {
		if !json.Valid(data) || !utf8.Valid(data) {
			if checkJSON(data) == nil {
				t.Fatalf("checkJSON accepted invalid JSON %q", data)
			}
			return
		}
		dup, depth := refCheckKeys(data)
		err := checkKeys(data)
		switch {
		case depth > maxJSONDepth:
			if err == nil {
				t.Fatalf("depth %d accepted", depth)
			}
		case dup != (err != nil):
			t.Fatalf("oracle says duplicate=%v, checkKeys says %v, for %q", dup, err, data)
		}
	})
}
