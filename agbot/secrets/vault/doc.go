// Package vault is the agbot's secrets manager over Vault or OpenBao KV v2, through
// github.com/hashicorp/vault/api. A secret named N in org O lives at <mount>/data/O/N (the anax
// layout: O/N, O/user/U/N, O/node/X/N, O/user/U/node/X/N) as {"key": K, "value": V}.
//
// Writes through the manager are announced to watchers at once. Writes made directly in Vault
// are found by a poll whose cost depends on the number of secrets, never on agreements: on
// OpenBao one SCAN of detailed-metadata for the whole mount per poll; on HashiCorp Vault (no
// SCAN) a recursive LIST walk plus one metadata read per secret. Vault down or refusing the
// token gives secrets.ErrUnavailable; the poll and the token renewal retry in the background.
//
// Only the agbot (agbot/, cmd/agbot) and tests import it.
package vault
