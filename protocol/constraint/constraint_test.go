package constraint

import (
	"errors"
	"testing"
)

func TestEval(t *testing.T) {
	props := map[string]any{
		"purpose": "edge", "location": "lab", "cores": float64(4), "gpu": false,
		"zones": []any{"a", "b"},
	}
	tests := []struct {
		name string
		expr string
		want bool
	}{
		{"equal", `purpose == edge`, true},
		{"equal quoted", `purpose == "edge"`, true},
		{"single equals", `purpose = edge`, true},
		{"not equal", `purpose != edge`, false},
		{"not equal other", `purpose != cloud`, true},
		{"in", `location in "lab,factory"`, true},
		{"in spaces", `location in "factory, lab"`, true},
		{"not in", `location in "factory,home"`, false},
		{"number equal", `cores == 4`, true},
		{"number compare", `cores >= 2 && cores < 8`, true},
		{"bool", `gpu == false`, true},
		{"and", `purpose == edge && location == lab`, true},
		{"and false", `purpose == edge && location == home`, false},
		{"or", `purpose == cloud || location == lab`, true},
		{"AND word", `purpose == edge AND location == lab`, true},
		{"OR word", `purpose == cloud OR location == home`, false},
		{"precedence", `purpose == cloud || purpose == edge && location == lab`, true},
		{"parens", `(purpose == cloud || purpose == edge) && location == home`, false},
		{"missing property", `owner == bob`, false},
		{"missing property not equal", `owner != bob`, false},
		{"list property", `zones == b`, true},
		{"list property in", `zones in "c,a"`, true},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			e, err := Parse(tc.expr)
			if err != nil {
				t.Fatalf("Parse(%q): %v", tc.expr, err)
			}
			if got := e.Eval(props); got != tc.want {
				t.Errorf("Eval(%q) = %v, want %v (parsed %s)", tc.expr, got, tc.want, e)
			}
		})
	}
}

func TestParseErrors(t *testing.T) {
	for _, s := range []string{``, `purpose`, `purpose ==`, `== edge`, `(a == b`, `a == b &&`, `a == "b`, `a ~ b`, `a == b c`} {
		t.Run(s, func(t *testing.T) {
			if _, err := Parse(s); !errors.Is(err, ErrSyntax) {
				t.Errorf("Parse(%q) = %v, want ErrSyntax", s, err)
			}
		})
	}
}

func TestParseAll(t *testing.T) {
	e, err := ParseAll(nil)
	if err != nil || !e.Eval(nil) {
		t.Fatalf("empty list: %v %v, want a match-all", e, err)
	}
	e, err = ParseAll([]string{"a == 1", "b == 2"})
	if err != nil {
		t.Fatal(err)
	}
	if e.Eval(map[string]any{"a": float64(1)}) {
		t.Errorf("both entries must hold")
	}
	if !e.Eval(map[string]any{"a": float64(1), "b": "2"}) {
		t.Errorf("both hold: want true")
	}
}
