package agreement

import (
	"strings"
	"testing"

	"github.com/edge-secrets/anax-agent/secretfs"
)

// TestStoreIDHidesNames: store ids appear in host paths every local user can read in
// /proc/*/mountinfo, so they must not carry the agreement id or the container name.
func TestStoreIDHidesNames(t *testing.T) {
	tests := []struct{ name, instance, container string }{
		{"anax-style agreement id", "7b2c4f0e1d3a4b5c6d7e8f9012345678", "web"},
		{"digested agreement id", instanceID("acme/ag:1"), "worker"},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			id := storeID(tc.instance, tc.container)
			if strings.Contains(id, tc.instance) || strings.Contains(id, tc.container) {
				t.Errorf("store id %q reveals %q or %q", id, tc.instance, tc.container)
			}
			if err := secretfs.ValidateID(id); err != nil {
				t.Error(err)
			}
			if again := storeID(tc.instance, tc.container); again != id {
				t.Errorf("store id not stable: %q, %q", id, again)
			}
			if other := storeID(tc.instance, tc.container+"2"); other == id {
				t.Error("two containers share a store id")
			}
		})
	}
}
