// Package access decides who may do what on the agbot: password and token hashing
// (argon2id) with a verified-credential cache, and the secure API's authorisation matrix
// for secret-manager names (design §6). Pure decisions; the HTTP layer maps the sentinels
// to 401 and 403.
//
// It also decides which bound secrets a policy or pattern may deliver (Bind at publish,
// Deliver at every proposal and update): only what its owner may read.
//
// Imported by agbot/api, agbot/engine and agbot/store (to hash on create).
package access
