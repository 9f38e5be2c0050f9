package protocol

import (
	"crypto/ed25519"
	"fmt"
	"strconv"
	"time"
)

// CancelKeysReplaced starts the reason of the cancel an agbot sends, sealed to a node's old
// keys, when the node's owner or an org admin registered other keys for it: the node that
// gets it is no longer the registered one.
const CancelKeysReplaced = "node keys replaced"

// MaxReleaseSkew is how far the time of a key release may be from the agbot's clock.
const MaxReleaseSkew = 5 * time.Minute

const releaseDomain = "anax-agent key release v1\x00"

// releaseStatement is what a key release signs: the node, the keys it gives up and when.
func releaseStatement(node string, pub *PublicKeys, t time.Time) []byte {
	b := []byte(releaseDomain)
	b = append(b, node...)
	b = append(b, 0)
	b = append(b, pub.Fingerprint()...)
	b = append(b, 0)
	return strconv.AppendInt(b, t.Unix(), 10)
}

// SignKeyRelease signs node's ("org/node") release of the keys k at time t (`hzn
// unregister`): the agbot then forgets them, and the node token alone may register new ones.
func SignKeyRelease(k *PrivateKeys, node string, t time.Time) []byte {
	return ed25519.Sign(k.sign, releaseStatement(node, k.Public(), t))
}

// VerifyKeyRelease checks a release of pub (the keys registered for node) signed at t, as
// seen at now. It wraps ErrBadSignature or ErrExpired.
func VerifyKeyRelease(pub *PublicKeys, node string, t, now time.Time, sig []byte) error {
	if d := now.Sub(t); d > MaxReleaseSkew || d < -MaxReleaseSkew {
		return fmt.Errorf("key release dated %s, more than %s from the agbot's clock: %w", t.UTC().Format(time.RFC3339), MaxReleaseSkew, ErrExpired)
	}
	if len(sig) != ed25519.SignatureSize || !ed25519.Verify(pub.Signing, releaseStatement(node, pub, t), sig) {
		return fmt.Errorf("key release of %s: not signed by its registered keys %s: %w", quote(node), pub.Fingerprint(), ErrBadSignature)
	}
	return nil
}
