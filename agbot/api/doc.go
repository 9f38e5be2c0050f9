// Package api is the agbot's HTTP interface: the secure secrets API (anax routes), the
// exchange routes for users, nodes, services, deployment policies and patterns, and the node
// endpoints (registration, long-poll, replies) documented in package agbot. It authenticates
// with Basic auth (`org/user:password` or `org/node:token`), authorises with agbot/access,
// audits every secret read, write and refusal by name, caller and result (never the value),
// and maps sentinel errors to HTTP codes.
//
// Imported by agbot (the wiring) and tests.
package api
