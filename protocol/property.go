package protocol

import (
	"encoding/json"
	"fmt"
)

// Property is an anax policy property: a name and a string, number or boolean value (Type
// is anax's optional type hint, e.g. "version" or "list of strings").
type Property struct {
	Name  string `json:"name"`
	Value any    `json:"value"`
	Type  string `json:"type,omitempty"`
}

const maxProperties = 256

// validateProperties checks a property list: named, unique, plain values.
func validateProperties(f string, props []Property) error {
	if len(props) > maxProperties {
		return invalid(f, "has %d properties, more than %d", len(props), maxProperties)
	}
	seen := map[string]bool{}
	for i, p := range props {
		pf := fmt.Sprintf("%s[%d]", f, i)
		if p.Name == "" {
			return invalid(pf+".name", "must not be empty")
		}
		if err := validateText(pf+".name", p.Name, 256, true); err != nil {
			return err
		}
		if seen[p.Name] {
			return invalid(pf+".name", "%s is listed twice", quote(p.Name))
		}
		seen[p.Name] = true
		if err := validateText(pf+".type", p.Type, 64, true); err != nil {
			return err
		}
		switch v := p.Value.(type) {
		case bool, float64, json.Number:
		case string:
			if err := validateText(pf+".value", v, maxTextLen, true); err != nil {
				return err
			}
		default:
			return invalid(pf+".value", "must be a string, number or boolean")
		}
	}
	return nil
}
