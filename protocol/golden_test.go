package protocol

import (
	"bytes"
	"encoding/json"
	"flag"
	"os"
	"path/filepath"
	"reflect"
	"testing"
)

var update = flag.Bool("update", false, "rewrite golden files (and the fuzz seed corpus) in testdata/")

// checkGolden compares got (compact JSON) with testdata/golden/<name>.json, which is stored
// indented for review; -update rewrites it.
func checkGolden(t *testing.T, name string, got []byte) {
	t.Helper()
	path := filepath.Join("testdata", "golden", name+".json")
	if *update {
		var pretty bytes.Buffer
		if err := json.Indent(&pretty, got, "", "  "); err != nil {
			t.Fatal(err)
		}
		pretty.WriteByte('\n')
		if err := os.MkdirAll(filepath.Dir(path), 0o755); err != nil {
			t.Fatal(err)
		}
		if err := os.WriteFile(path, pretty.Bytes(), 0o644); err != nil {
			t.Fatal(err)
		}
	}
	want, err := os.ReadFile(path)
	if err != nil {
		t.Fatalf("%v (run go test -run Golden -update to create it)", err)
	}
	var compact bytes.Buffer
	if err := json.Compact(&compact, want); err != nil {
		t.Fatalf("%s: %v", path, err)
	}
	if !bytes.Equal(got, compact.Bytes()) {
		t.Errorf("wire format changed for %s:\n got %s\nwant %s\n(if on purpose, bump ProtocolVersion or run with -update)", name, got, compact.Bytes())
	}
}

// TestGoldenMessages pins the JSON of every message type: the bytes that are signed.
func TestGoldenMessages(t *testing.T) {
	if *update {
		writeFuzzCorpus(t)
	}
	for name, m := range allMessages() {
		t.Run(name, func(t *testing.T) {
			got, err := Encode(m)
			if err != nil {
				t.Fatal(err)
			}
			checkGolden(t, name, got)
			want, err := os.ReadFile(filepath.Join("testdata", "golden", name+".json"))
			if err != nil {
				t.Fatal(err)
			}
			back, err := Decode(want)
			if err != nil {
				t.Fatalf("Decode(golden) = %v", err)
			}
			if !reflect.DeepEqual(back, m) {
				t.Errorf("Decode(golden) = %#v, want %#v", back, m)
			}
			if err := back.Validate(Limits{}); err != nil {
				t.Errorf("golden %s does not validate: %v", name, err)
			}
		})
	}
}

// TestGoldenKeysAndHeader pins the public key registration JSON and the envelope header.
func TestGoldenKeysAndHeader(t *testing.T) {
	pub := fixedKeys(t, 0).Public()
	got, err := json.Marshal(pub)
	if err != nil {
		t.Fatal(err)
	}
	checkGolden(t, "public_keys", got)
	if fp, want := pub.Fingerprint(), "SHA256:"; len(fp) != len(want)+43 || fp[:7] != want {
		t.Errorf("Fingerprint = %q, want SHA256: and 43 base64 characters", fp)
	}

	p := newParties(t, true)
	env, err := p.agbot.Seal(testProposal())
	if err != nil {
		t.Fatal(err)
	}
	var e Envelope
	if err := json.Unmarshal(env, &e); err != nil {
		t.Fatal(err)
	}
	checkGolden(t, "header_hybrid", e.Header)
	// The envelope's other fields are random; pin their names.
	var fields map[string]json.RawMessage
	if err := json.Unmarshal(env, &fields); err != nil {
		t.Fatal(err)
	}
	var names []string
	for k := range fields {
		names = append(names, k)
	}
	if got, want := len(names), 3; got != want || fields["header"] == nil || fields["enc"] == nil || fields["ct"] == nil {
		t.Errorf("envelope fields = %v, want header, enc, ct", names)
	}
}
