package agreement

import (
	"crypto/sha256"
	"encoding/hex"
)

// maxInstanceLen keeps "<instance>-<container>" container names short enough for Docker.
const maxInstanceLen = 64

// instanceID is the agreement's name on the node: in container names and labels and in store
// ids. An agreement id that is already a safe, short name (anax uses 64 hex digits) is used as
// it is, so an operator recognises it in `docker ps`; any other (protocol ids may hold '/',
// ':', '@', '+' and be 256 bytes long) is replaced by a digest of it.
func instanceID(agreement string) string {
	if len(agreement) <= maxInstanceLen && safeName(agreement) {
		return agreement
	}
	sum := sha256.Sum256([]byte(agreement))
	return "a" + hex.EncodeToString(sum[:16])
}

// storeID names the secret store of one container of an instance. The name appears in host
// paths (the secrets root, the ESS root) that every local user can see in the world-readable
// /proc/*/mountinfo, so it is a digest: it reveals neither the agreement id nor the container
// name (agreement ids are random, so the digest can not be reversed by trying them).
func storeID(instance, containerName string) string {
	sum := sha256.Sum256([]byte("anax-agent store\x00" + instance + "\x00" + containerName))
	return "s" + hex.EncodeToString(sum[:16])
}

// safeName: [A-Za-z0-9][A-Za-z0-9_.-]*, what Docker accepts in a container name.
func safeName(s string) bool {
	if s == "" {
		return false
	}
	for i := 0; i < len(s); i++ {
		c := s[i]
		alnum := c >= 'a' && c <= 'z' || c >= 'A' && c <= 'Z' || c >= '0' && c <= '9'
		if !alnum && (i == 0 || c != '_' && c != '.' && c != '-') {
			return false
		}
	}
	return true
}
