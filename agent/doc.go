// Package agent is the node daemon: configuration, registration with the agbot, the message
// loop that carries protocol messages to the agreement manager, the local API that hzn reads,
// systemd integration, metrics, and the watchers (config file, secret stores).
// cmd/anax-agent is a thin main over Main; the end-to-end harness (test/e2e) reads its
// Config and Status types. Nothing else imports it.
//
// # Life of the daemon
//
//	Main(args, stderr, getenv)     flags and config (ParseFlags), Harden (no core dumps, umask 077),
//	                               logger (JSON under systemd), New, Serve, Shutdown on SIGTERM/SIGINT,
//	                               Reload on SIGHUP
//	New(Config, Options)           state dir 0700, registration, secretfs.Open, container worker,
//	                               agreement.Open, then Recover (intact agreements untouched, lost
//	                               ones wait for a resync, orphans removed)
//	(*Agent).Serve(ctx)            local API socket (0600, peer uid checked), metrics, message loop
//	                               when registered, store guard, config watch, container deaths,
//	                               systemd READY/STATUS/WATCHDOG
//	(*Agent).Register / Unregister what hzn register / unregister do through the local API
//	(*Agent).Reload()              log level, poll wait, backoff cap, without a restart
//	(*Agent).Shutdown(ctx)         stops the loop, lets messages in hand finish, closes; containers
//	                               and stores stay for the next start
//
// # State directory (0700; every file 0600)
//
//	registration.json  org, node, node token, node policy, pinned agbot id and keys
//	node-keys.json     the node's protocol keys (protocol.LoadOrCreateKeys)
//	agreements.db      the agreement manager's state: no secret value, digests only
//	digest.key         the agreement manager's HMAC key for those digests
//
// The container-label agent id is derived from the state dir's path (AgentID), so agents with
// different state dirs, secrets roots and sockets share one machine and one Docker engine.
//
// # Local API (--api-socket; see api.go)
//
//	GET /status, GET /node, POST /node (register), DELETE /node (unregister),
//	GET /agreement, GET /agreement/{id}
//
// Nothing it returns or logs holds a secret value or the node token.
package agent
