package protocol

import (
	"encoding/json"
	"errors"
	"fmt"
	"strconv"
	"strings"
)

// User input, as anax has it: a service declares variables (name, type, default); a
// deployment policy or pattern and the node's own input (`hzn register -f`) set them, for the
// services they name. Precedence: node, then policy or pattern, then the service's default.
// Every variable becomes an environment variable of the service's containers, converted as
// anax converts it. User input is configuration, never a secret: env is visible.

// InputBlock sets variables of the services it names (anax's policy.UserInput). Arch "" or
// "*" is any; an empty version range is any version.
type InputBlock struct {
	ServiceOrgid        string       `json:"serviceOrgid"`
	ServiceURL          string       `json:"serviceUrl"`
	ServiceArch         string       `json:"serviceArch"`
	ServiceVersionRange string       `json:"serviceVersionRange"`
	Inputs              []InputValue `json:"inputs"`
}

// InputValue is one variable's value: a string, number, boolean or list of strings.
type InputValue struct {
	Name  string `json:"name"`
	Value any    `json:"value"`
}

// InputVar is a variable of a proposed service: its declared type and the value the agbot
// resolved (policy or pattern, else the service's default), already converted to its
// environment form. Set is false when neither gave one: the node's input must.
type InputVar struct {
	Name  string `json:"name"`
	Type  string `json:"type,omitempty"`
	Value string `json:"value,omitempty"`
	Set   bool   `json:"set,omitempty"`
}

// ErrInputMissing: a variable the service declares has no value anywhere.
var ErrInputMissing = errors.New("user input has no value")

// Matches reports whether the block names the service.
func (b *InputBlock) Matches(org, url, arch, version string) bool {
	if b.ServiceOrgid != org || b.ServiceURL != url {
		return false
	}
	if b.ServiceArch != "" && b.ServiceArch != "*" && b.ServiceArch != arch {
		return false
	}
	if b.ServiceVersionRange == "" {
		return true
	}
	r, err := ParseVersionRange(b.ServiceVersionRange)
	v, verr := ParseVersion(version)
	return err == nil && verr == nil && r.Contains(v)
}

// InputTypes are the variable types anax declares; "" is string, "bool" is boolean.
var InputTypes = map[string]bool{"": true, "string": true, "int": true, "float": true,
	"boolean": true, "bool": true, "list of strings": true}

// InputEnv converts a value of declared type typ to its environment form, as anax does:
// a boolean "true"/"false", an int in decimal, a float as written (or with six decimals when
// it came as a float64), a list of strings joined by spaces. A value of another type than
// typ is refused.
func InputEnv(typ string, v any) (string, error) {
	if !InputTypes[typ] {
		return "", fmt.Errorf("type %s is not string, int, float, boolean or list of strings", quote(typ))
	}
	s, kind, err := inputString(v)
	if err != nil {
		return "", err
	}
	want := typ
	switch typ {
	case "", "string":
		want = "string"
	case "bool":
		want = "boolean"
	case "float":
		if kind == "int" {
			kind = "float"
		}
	}
	if kind != want {
		return "", fmt.Errorf("value is a %s, the variable is a %s", kind, want)
	}
	return s, nil
}

// InputString converts a value whose type is not declared (policy input for a service that
// does not declare it, which anax ignores) to its environment form.
func InputString(v any) (string, error) {
	s, _, err := inputString(v)
	return s, err
}

func inputString(v any) (s, kind string, err error) {
	switch x := v.(type) {
	case string:
		return x, "string", nil
	case bool:
		return strconv.FormatBool(x), "boolean", nil
	case json.Number:
		if _, err := x.Int64(); err == nil {
			return x.String(), "int", nil
		}
		if _, err := x.Float64(); err != nil {
			return "", "", fmt.Errorf("number %s does not parse", quote(x.String()))
		}
		return x.String(), "float", nil
	case float64:
		if x == float64(int64(x)) {
			return strconv.FormatInt(int64(x), 10), "int", nil
		}
		return strconv.FormatFloat(x, 'f', 6, 64), "float", nil
	case []any:
		parts := make([]string, 0, len(x))
		for _, e := range x {
			es, ok := e.(string)
			if !ok {
				return "", "", errors.New("a list must hold strings only")
			}
			parts = append(parts, es)
		}
		return strings.Join(parts, " "), "list of strings", nil
	case []string:
		return strings.Join(x, " "), "list of strings", nil
	}
	return "", "", fmt.Errorf("value of JSON type %T: want a string, number, boolean or list of strings", v)
}

// CheckInputName refuses a variable name that is not an environment variable name, or one
// of the platform's (HZN_ prefix).
func CheckInputName(field, name string) error {
	if !envName(name) || len(name) > 256 {
		return invalid(field, "variable name %s must match [A-Za-z_][A-Za-z0-9_]* (at most 256 bytes)", quote(name))
	}
	if platformVars[name] {
		return invalid(field, "variable %s is set by the agent (platform variable)", name)
	}
	return nil
}

// platformVars are the HZN_ variables the agent sets in every container; user input can not
// replace them.
var platformVars = map[string]bool{"HZN_ORGANIZATION": true, "HZN_DEVICE_ID": true, "HZN_PATTERN": true,
	"HZN_ARCH": true, "HZN_CPUS": true, "HZN_RAM": true, "HZN_HOST_IPS": true, "HZN_EXCHANGE_URL": true,
	"HZN_AGREEMENTID": true, "HZN_ESS_API_PROTOCOL": true, "HZN_ESS_API_ADDRESS": true,
	"HZN_ESS_API_PORT": true, "HZN_ESS_AUTH": true, "HZN_ESS_CERT": true}

// IsPlatformVar reports whether the agent sets the variable name itself.
func IsPlatformVar(name string) bool { return platformVars[name] }

// ResolveInputs merges a service's variables with the node's input blocks (which take
// precedence) into NAME -> value. A variable with no value anywhere is ErrInputMissing,
// naming it; a node value of the wrong type is refused. Node inputs for variables the service
// does not declare are ignored, as anax ignores them.
func ResolveInputs(s *Service, node []InputBlock) (map[string]string, error) {
	out := map[string]string{}
	declared := map[string]InputVar{}
	for _, v := range s.UserInput {
		declared[v.Name] = v
		if v.Set {
			out[v.Name] = v.Value
		}
	}
	for i := range node {
		b := &node[i]
		if !b.Matches(s.Org, s.URL, s.Arch, s.Version) {
			continue
		}
		for _, in := range b.Inputs {
			d, ok := declared[in.Name]
			if !ok {
				continue
			}
			v, err := InputEnv(d.Type, in.Value)
			if err != nil {
				return nil, fmt.Errorf("node user input %s of service %s/%s: %w", in.Name, s.Org, s.URL, err)
			}
			out[in.Name] = v
		}
	}
	for _, v := range s.UserInput {
		if _, ok := out[v.Name]; !ok {
			return nil, fmt.Errorf("variable %s of service %s/%s %s: %w: set it in the deployment policy or pattern (userInput), or in the node's user input (hzn register -f)",
				v.Name, s.Org, s.URL, s.Version, ErrInputMissing)
		}
	}
	return out, nil
}

// validateInputs checks the service's variables as a proposal carries them.
func (s *Service) validateInputs(f string) error {
	if len(s.UserInput) > maxArgs {
		return invalid(f, "has %d variables, more than %d", len(s.UserInput), maxArgs)
	}
	seen := map[string]bool{}
	for i, v := range s.UserInput {
		vf := fmt.Sprintf("%s[%d]", f, i)
		if err := CheckInputName(vf+".name", v.Name); err != nil {
			return err
		}
		if seen[v.Name] {
			return invalid(vf+".name", "%s is listed twice", v.Name)
		}
		seen[v.Name] = true
		if !InputTypes[v.Type] {
			return invalid(vf+".type", "must be string, int, float, boolean or list of strings, got %s", quote(v.Type))
		}
		if err := validateText(vf+".value", v.Value, maxArgLen, true); err != nil {
			return err
		}
	}
	return nil
}

// DefaultEnv converts a service's defaultValue. anax stores defaults as strings ("10",
// "0.5", "true"), so a string default of a typed variable must parse as that type; a list
// of strings default string is used as written. "" or nil is no default (ok false).
func DefaultEnv(typ string, v any) (env string, ok bool, err error) {
	s, isString := v.(string)
	switch {
	case v == nil || isString && s == "":
		return "", false, nil
	case !isString:
		env, err = InputEnv(typ, v)
		return env, err == nil, err
	}
	switch typ {
	case "int":
		_, err = strconv.ParseInt(s, 10, 64)
	case "float":
		_, err = strconv.ParseFloat(s, 64)
	case "boolean", "bool":
		_, err = strconv.ParseBool(s)
	default:
		if !InputTypes[typ] {
			err = fmt.Errorf("type %s is not string, int, float, boolean or list of strings", quote(typ))
		}
	}
	if err != nil {
		return "", false, fmt.Errorf("default %s is not a %s", quote(s), typ)
	}
	return s, true, nil
}
