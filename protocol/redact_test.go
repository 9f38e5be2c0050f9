package protocol

import (
	"bytes"
	"fmt"
	"log/slog"
	"strings"
	"testing"
)

// TestRedaction: printing or logging messages and values never shows a value.
func TestRedaction(t *testing.T) {
	p := testProposal()
	u := testUpdate()
	sv := p.Secrets["db_password"]
	for _, verb := range []string{"%v", "%+v", "%#v", "%s", "%q", "%x", "%X", "%d"} {
		for name, v := range map[string]any{"proposal": p, "*proposal": *p, "update": u, "value": sv, "changed": u.Secrets["db_password"], "map": p.Secrets} {
			if out := fmt.Sprintf(verb, v); strings.Contains(out, "CANARY-") {
				t.Errorf("fmt %s of %s leaks a value: %s", verb, name, out)
			}
		}
	}
	var buf bytes.Buffer
	log := slog.New(slog.NewJSONHandler(&buf, &slog.HandlerOptions{Level: slog.LevelDebug}))
	log.Info("secret", "secret", sv, "proposal", p, "update", u)
	slog.New(slog.NewTextHandler(&buf, nil)).Info("secret", "secret", sv, "proposal", p)
	for name, m := range allMessages() {
		log.Info("message", name, m)
	}
	if !strings.Contains(buf.String(), `"db_password":23`) {
		t.Errorf("slog output does not name the secrets with their sizes: %s", buf.String())
	}
	if strings.Contains(buf.String(), "CANARY-") {
		t.Errorf("slog output leaks a value: %s", buf.String())
	}
	if got := sv.String(); got != `{key:"password" value:<redacted 23 bytes>}` {
		t.Errorf("String = %s", got)
	}
}

func TestDigest(t *testing.T) {
	k1, k2 := bytes.Repeat([]byte{1}, 32), bytes.Repeat([]byte{2}, 32)
	a := SecretValue{Key: "ab", Value: "c"}
	b := SecretValue{Key: "a", Value: "bc"}
	if a.Digest(k1) == b.Digest(k1) {
		t.Errorf("key/value boundary not in the digest")
	}
	if a.Digest(k1) == a.Digest(k2) {
		t.Errorf("digest does not depend on the HMAC key")
	}
	first, again := a.Digest(k1), a.Digest(k1)
	if first != again || len(first) != 64 {
		t.Errorf("digest not stable or not 32 bytes hex: %s, %s", first, again)
	}
}
