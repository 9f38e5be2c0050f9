package agbot

import (
	"log/slog"
	"testing"
)

// An agbot that steps down (it could not renew its lease) must not keep itself as the leader:
// it would forward every request to itself (the 10,000-node fan-out on PostgreSQL ran out of
// file descriptors that way). Until its next try learns the holder, it has no leader.
func TestStepDownForgetsItselfAsLeader(t *testing.T) {
	tests := []struct {
		name, leader, want string
	}{
		{"was the leader", "https://a:3090", ""},
		{"another agbot leads", "https://b:3090", "https://b:3090"},
		{"no leader known", "", ""},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			h := &ha{advertise: "https://a:3090", leader: tc.leader}
			h.stepDown("lease could not be renewed")
			if _, leader := h.current(); leader != tc.want {
				t.Fatalf("leader after stepping down = %q, want %q", leader, tc.want)
			}
		})
	}
}

// A restarted agbot finds the lease of its killed predecessor, which served at the same
// address, until it expires: that holder is not a leader to forward to (it would be this
// agbot itself). Another agbot's address is.
func TestHolderAtOwnAddressIsNoLeader(t *testing.T) {
	tests := []struct {
		name, holder, want string
	}{
		{"predecessor at this address", "https://a:3090", ""},
		{"another agbot", "https://b:3090", "https://b:3090"},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			h := &ha{advertise: "https://a:3090", log: slog.New(slog.DiscardHandler)}
			h.setLeader(tc.holder)
			if _, leader := h.current(); leader != tc.want {
				t.Fatalf("leader after a try finding the lease held at %q = %q, want %q", tc.holder, leader, tc.want)
			}
		})
	}
}
