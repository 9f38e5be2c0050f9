package protocol

import (
	"bytes"
	"encoding/json"
	"fmt"
	"unicode/utf8"
)

// maxJSONDepth bounds nesting: no message nests deeper than about 8.
const maxJSONDepth = 32

// checkJSON refuses what encoding/json would silently accept: duplicate object keys (the
// last one wins, so two readers could see different values), invalid UTF-8 (replaced by
// U+FFFD) and absurd nesting. It also refuses anything but one JSON value.
func checkJSON(data []byte) error {
	if !utf8.Valid(data) {
		return fmt.Errorf("%w: JSON is not valid UTF-8", ErrMalformed)
	}
	if !json.Valid(data) {
		var v any
		dec := json.NewDecoder(bytes.NewReader(data))
		err := dec.Decode(&v)
		if err == nil {
			_, err = dec.Token() // a second value: json.Valid wants exactly one
			if err == nil {
				return fmt.Errorf("%w: more than one JSON value", ErrMalformed)
			}
		}
		return fmt.Errorf("%w: %s", ErrMalformed, jsonErr(err))
	}
	return checkKeys(data)
}

// checkKeys walks JSON that json.Valid accepted, refusing duplicate keys and deep nesting.
// A hand-written walk: json.Decoder.Token allocates an error per scalar and tripled the
// cost of opening a message.
func checkKeys(data []byte) error {
	type object map[string]struct{}
	var stack []object // nil entries are arrays
	wantKey := false   // the next string is a key of the innermost object
	for i := 0; i < len(data); i++ {
		switch c := data[i]; c {
		case '{':
			stack = append(stack, object{})
			wantKey = true
		case '[':
			stack = append(stack, nil)
			wantKey = false
		case '}', ']':
			stack = stack[:len(stack)-1]
			wantKey = false
		case ',':
			wantKey = len(stack) > 0 && stack[len(stack)-1] != nil
		case '"':
			start := i
			escaped := false
			for i++; data[i] != '"'; i++ {
				if data[i] == '\\' {
					escaped = true
					i++
				}
			}
			if !wantKey {
				continue
			}
			wantKey = false
			key := string(data[start+1 : i])
			if escaped {
				// Valid JSON: the quoted key always unquotes.
				json.Unmarshal(data[start:i+1], &key)
			}
			obj := stack[len(stack)-1]
			if _, dup := obj[key]; dup {
				return fmt.Errorf("%w: duplicate JSON object key %s", ErrMalformed, quote(key))
			}
			obj[key] = struct{}{}
		}
		if len(stack) > maxJSONDepth {
			return fmt.Errorf("%w: JSON nested deeper than %d", ErrMalformed, maxJSONDepth)
		}
	}
	return nil
}
