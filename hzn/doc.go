// Package hzn is the logic of the hzn CLI: a command tree (exchange, secretsmanager/sm, and
// later the agent-side register, unregister, node, agreement and agent commands, which other
// files add with Register), flag parsing that allows flags after arguments, an HTTPS client
// for the agbot, and the output rules: JSON for list and read, one line for add and remove,
// errors on stderr with a non-zero exit. cmd/hzn calls Main.
//
// Environment: HZN_AGBOT_URL (e.g. https://127.0.0.1:3090), HZN_AGBOT_CA (PEM file to
// trust, e.g. the agbot's DIR/tls/cert.pem), HZN_ORG_ID, HZN_EXCHANGE_USER_AUTH
// (user:password, or org/user:password).
package hzn
