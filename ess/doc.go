// Package ess serves anax's ESS secrets API to service containers, so that services written for
// Open Horizon learn which secrets changed the way they do on anax (resource/secret_api.go):
//
//	GET  /api/v1/secrets                 names updated and not yet acknowledged (200 JSON list; 404 none)
//	GET  /api/v1/secrets/{name}          {"key": ..., "value": ...} of the current value (200; 404)
//	POST /api/v1/secrets/{name}?received=true   acknowledge (201; 404 when not updated)
//
// Each store (one per container) gets, under the package's root (a small tmpfs the agent
// mounts, root-only):
//
//	<id>/auth.json    {"id","token"}: the container's credentials, 0400 owned by its user
//	                  (mounted at HZN_ESS_AUTH=/ess-auth/auth.json)
//	<id>/cert.pem     the CA certificate the container trusts (HZN_ESS_CERT=/ess-cert/cert.pem)
//	<id>/sock/        0500 owned by its user, mounted at /var/run/horizon; holds essapi.sock,
//	                  an HTTPS socket that serves only this store (HZN_ESS_API_ADDRESS)
//	<id>/updated.json root-only: the names updated and not acknowledged, kept for a restart
//	.ca/              the CA key and certificate, root-only, so the agent's restarts keep the
//	                  certificate every container trusts (a reboot empties the tmpfs: stores
//	                  are rebuilt then anyway)
//
// A container reaches only its own socket, and a request must also carry that store's
// credentials (basic auth, constant-time compare): wrong ones get 401. One HTTPS server serves
// every socket (the socket a connection arrived on names its store); the server never logs a
// value or a token, and every socket has its own connection limit, every connection its own
// goroutine, timeouts and body bound, so a slow or hostile client holds up only itself.
//
// The agent imports this package; it imports protocol (secret-name rule) and platform/linux.
package ess
