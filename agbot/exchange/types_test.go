package exchange

import (
	"encoding/json"
	"reflect"
	"testing"

	"github.com/edge-secrets/anax-agent/protocol"
)

// TestNodeAccessIsPartOfNode keeps NodeAccess a projection of Node (store.Part decodes a
// stored Node into it): each of its fields is a Node field of the same JSON name and type,
// and a stored node decodes into what Access gives.
func TestNodeAccessIsPartOfNode(t *testing.T) {
	node := reflect.TypeFor[Node]()
	byName := map[string]reflect.StructField{}
	for f := range node.Fields() {
		byName[jsonName(f)] = f
	}
	for f := range reflect.TypeFor[NodeAccess]().Fields() {
		t.Run(f.Name, func(t *testing.T) {
			nf, ok := byName[jsonName(f)]
			if !ok || nf.Type != f.Type {
				t.Fatalf("NodeAccess.%s (json %q, %s) is not a field of Node", f.Name, jsonName(f), f.Type)
			}
		})
	}
	n := Node{Org: "o", ID: "n1", Owner: "alice", TokenHash: "h", Pattern: "p",
		PublicKeys: &protocol.PublicKeys{Signing: make([]byte, 32)}, SecretsAtCreation: map[string]int64{"node/n1/a": 3}}
	raw, err := json.Marshal(n)
	if err != nil {
		t.Fatal(err)
	}
	var got NodeAccess
	if err := json.Unmarshal(raw, &got); err != nil {
		t.Fatal(err)
	}
	if !reflect.DeepEqual(got, n.Access()) {
		t.Fatalf("stored node decodes to %+v, Access gives %+v", got, n.Access())
	}
}
