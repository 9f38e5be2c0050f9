// Package hzn is the logic of the hzn CLI, with Open Horizon's (anax's) command tree,
// flags, prompts, JSON output shapes and exit codes, built on kingpin as anax's is:
// secretsmanager (sm, secretmanager) secret list|add|read|remove against the agbot's
// secure API; exchange version|status|user|node|service|deployment|pattern against the
// agbot's exchange routes; and register, unregister, node list, agreement list,
// agent status, architecture and version against the local agent's unix socket.
// cmd/hzn calls Main; nothing else imports it.
//
// Environment, as anax's hzn (also read from /etc/horizon/hzn.json, /etc/default/horizon
// and ~/.hzn/hzn.json; the process environment wins): HZN_AGBOT_URL, HZN_MGMT_HUB_CERT_PATH
// (CA to trust; HZN_AGBOT_CA is an alias), HZN_ORG_ID, HZN_EXCHANGE_USER_AUTH,
// HZN_EXCHANGE_NODE_AUTH, and HZN_AGENT_SOCKET for the agent. Passwords and tokens can come
// from stdin ("user:-", "node:-") or a file (--password-file, --token-file) instead of argv.
package hzn
