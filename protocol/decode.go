package protocol

import (
	"bytes"
	"encoding/json"
	"fmt"
	"io"
	"unicode/utf8"
)

// maxJSONDepth bounds nesting: no message nests deeper than about 8.
const maxJSONDepth = 32

// checkJSON refuses what encoding/json would silently accept: duplicate object keys (the
// last one wins, so two readers could see different values), invalid UTF-8 in strings
// (replaced by U+FFFD) and absurd nesting.
func checkJSON(data []byte) error {
	if !utf8.Valid(data) {
		return fmt.Errorf("%w: JSON is not valid UTF-8", ErrMalformed)
	}
	dec := json.NewDecoder(bytes.NewReader(data))
	type object struct {
		keys     map[string]bool
		wantsKey bool
	}
	var stack []*object // nil entries are arrays
	for {
		tok, err := dec.Token()
		if err == io.EOF {
			if len(stack) > 0 {
				return fmt.Errorf("%w: JSON ends early", ErrMalformed)
			}
			return nil
		}
		if err != nil {
			return fmt.Errorf("%w: %s", ErrMalformed, jsonErr(err))
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
				return fmt.Errorf("%w: duplicate JSON object key %s", ErrMalformed, quote(key))
			}
			top.keys[key] = true
			top.wantsKey = false
			continue
		}
		if top != nil {
			top.wantsKey = true // after this value, the object wants a key again
		}
		switch tok {
		case json.Delim('{'):
			stack = append(stack, &object{keys: map[string]bool{}, wantsKey: true})
		case json.Delim('['):
			stack = append(stack, nil)
		case json.Delim(']'):
			stack = stack[:len(stack)-1]
			if n := len(stack); n > 0 && stack[n-1] != nil {
				stack[n-1].wantsKey = true
			}
			continue
		}
		if len(stack) > maxJSONDepth {
			return fmt.Errorf("%w: JSON nested deeper than %d", ErrMalformed, maxJSONDepth)
		}
	}
}
