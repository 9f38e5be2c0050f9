package protocol

import (
	"errors"
	"testing"
	"time"
)

// A key release verifies only with the keys it releases, for the node it names, at the time
// it states, within MaxReleaseSkew of the verifier's clock.
func TestKeyRelease(t *testing.T) {
	k, err := GenerateKeys()
	if err != nil {
		t.Fatal(err)
	}
	other, err := GenerateKeys()
	if err != nil {
		t.Fatal(err)
	}
	now := time.Unix(1_800_000_000, 0)
	sig := SignKeyRelease(k, "o/n", now)
	tests := []struct {
		name string
		pub  *PublicKeys
		node string
		at   time.Time
		now  time.Time
		sig  []byte
		want error
	}{
		{"good", k.Public(), "o/n", now, now, sig, nil},
		{"good, clocks apart within the skew", k.Public(), "o/n", now, now.Add(MaxReleaseSkew), sig, nil},
		{"other keys", other.Public(), "o/n", now, now, sig, ErrBadSignature},
		{"other node", k.Public(), "o/m", now, now, sig, ErrBadSignature},
		{"other time", k.Public(), "o/n", now.Add(time.Second), now, sig, ErrBadSignature},
		{"truncated signature", k.Public(), "o/n", now, now, sig[:10], ErrBadSignature},
		{"too old", k.Public(), "o/n", now, now.Add(MaxReleaseSkew + time.Second), sig, ErrExpired},
		{"from the future", k.Public(), "o/n", now, now.Add(-MaxReleaseSkew - time.Second), sig, ErrExpired},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			err := VerifyKeyRelease(tc.pub, tc.node, tc.at, tc.now, tc.sig)
			if tc.want == nil && err != nil || tc.want != nil && !errors.Is(err, tc.want) {
				t.Fatalf("VerifyKeyRelease = %v, want %v", err, tc.want)
			}
		})
	}
}
