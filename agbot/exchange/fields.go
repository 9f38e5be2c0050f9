package exchange

import (
	"bytes"
	"encoding/json"
	"fmt"
	"reflect"
	"sort"
	"strconv"
	"strings"

	"github.com/edge-secrets/anax-agent/protocol"
)

// CheckFields refuses a JSON document with a field that v's type (one of this package's
// records) does not have, naming the field's path, e.g.
// `service.nodeHealth.missing_heartbeat_intervall`. Field names match as encoding/json
// matches them (case-insensitively). A deployment given as a string is checked inside.
// Other problems (types, syntax) are left to the decoder.
func CheckFields(data []byte, v any) error {
	dec := json.NewDecoder(bytes.NewReader(data))
	dec.UseNumber()
	var doc any
	if err := dec.Decode(&doc); err != nil {
		return nil // the decoder reports it
	}
	return walk("", doc, reflect.TypeOf(v))
}

var (
	rawType         = reflect.TypeOf(json.RawMessage{})
	deploymentType  = reflect.TypeOf(Deployment{})
	containerType   = reflect.TypeOf(Container{})
	unmarshalerType = reflect.TypeOf((*json.Unmarshaler)(nil)).Elem()
)

// renamed are misspellings anax users meet, with the field's right name.
var renamed = map[string]string{
	"allowNodeLevelSecrets": "enableNodeLevelSecrets",
}

func walk(path string, doc any, t reflect.Type) error {
	for t.Kind() == reflect.Pointer {
		t = t.Elem()
	}
	switch {
	case t == rawType || t.Kind() == reflect.Interface:
		return nil
	case t == deploymentType:
		if s, ok := doc.(string); ok {
			if strings.TrimSpace(s) == "" {
				return nil
			}
			dec := json.NewDecoder(strings.NewReader(s))
			dec.UseNumber()
			var inner any
			if err := dec.Decode(&inner); err != nil {
				return nil
			}
			doc = inner
		}
	case t == containerType:
		t = reflect.TypeOf(protocol.Container{})
	case reflect.PointerTo(t).Implements(unmarshalerType):
		return nil // its own decoder is strict (e.g. protocol.BoundSecret)
	}
	switch t.Kind() {
	case reflect.Struct:
		obj, ok := doc.(map[string]any)
		if !ok {
			return nil
		}
		return walkStruct(path, obj, t)
	case reflect.Map:
		obj, ok := doc.(map[string]any)
		if !ok {
			return nil
		}
		for _, k := range sortedKeys(obj) {
			if err := walk(fmt.Sprintf("%s[%q]", path, k), obj[k], t.Elem()); err != nil {
				return err
			}
		}
	case reflect.Slice, reflect.Array:
		list, ok := doc.([]any)
		if !ok || t == rawType {
			return nil
		}
		for i, e := range list {
			if err := walk(path+"["+strconv.Itoa(i)+"]", e, t.Elem()); err != nil {
				return err
			}
		}
	}
	return nil
}

func walkStruct(path string, obj map[string]any, t reflect.Type) error {
	fields := map[string]reflect.Type{}
	for i := 0; i < t.NumField(); i++ {
		if name := jsonName(t.Field(i)); name != "" {
			fields[strings.ToLower(name)] = t.Field(i).Type
		}
	}
	keys := make([]string, 0, len(obj))
	for k := range obj {
		keys = append(keys, k)
	}
	sort.Strings(keys)
	for _, k := range keys {
		p := k
		if path != "" {
			p = path + "." + k
		}
		ft, ok := fields[strings.ToLower(k)]
		if !ok {
			if right, known := renamed[k]; known && fields[strings.ToLower(right)] != nil {
				return &protocol.ValidationError{Field: p, Rule: fmt.Sprintf("is not a field: the flag is spelled %s", right)}
			}
			if why, bad := unsupportedDeployment[k]; bad && t == reflect.TypeOf(protocol.Container{}) {
				return &protocol.ValidationError{Field: p, Rule: "not supported: " + why}
			}
			return &protocol.ValidationError{Field: p, Rule: "is not a field of " + t.Name()}
		}
		if err := walk(p, obj[k], ft); err != nil {
			return err
		}
	}
	return nil
}

// jsonName is the JSON name of a struct field, "" for fields JSON skips.
func jsonName(f reflect.StructField) string {
	if !f.IsExported() {
		return ""
	}
	tag := f.Tag.Get("json")
	if tag == "-" {
		return ""
	}
	name, _, _ := strings.Cut(tag, ",")
	if name == "" {
		name = f.Name
	}
	return name
}
