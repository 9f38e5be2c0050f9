package openbaotest

import (
	"testing"
)

func TestStartWriteStopRestart(t *testing.T) {
	s := StartServer(t)
	c := s.Client()
	kv := c.KVv2(Mount)
	if _, err := kv.Put(t.Context(), "org/db", map[string]any{"key": "k", "value": "CANARY-openbaotest"}); err != nil {
		t.Fatalf("KV v2 put at %s: %v", Mount, err)
	}
	got, err := kv.Get(t.Context(), "org/db")
	if err != nil || got.Data["value"] != "CANARY-openbaotest" {
		t.Fatalf("KV v2 get = %v, %v", got, err)
	}
	s.Stop()
	if _, err := kv.Get(t.Context(), "org/db"); err == nil {
		t.Fatal("read from a stopped server succeeded")
	}
	s.Restart()
	if _, err := kv.Get(t.Context(), "org/db"); err == nil {
		t.Fatal("a restarted dev server still holds data")
	}
	if _, err := kv.Put(t.Context(), "org/db", map[string]any{"key": "k", "value": "v2"}); err != nil {
		t.Fatalf("put after restart: %v", err)
	}
}
