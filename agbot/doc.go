// Package agbot is the compact agreement bot: it keeps users, nodes, services, deployment
// policies and patterns (agbot/store), secrets (agbot/secrets), decides which nodes run
// which service with which secret values (agbot/engine) and talks HTTPS (agbot/api). This
// package wires them: Init creates a data directory, Open and Serve run it, Shutdown drains.
// cmd/agbot is its thin main; tests and the agent's daemon read the endpoint contract below.
//
// # Data directory
//
//	state.db          bbolt: exchange records, agreements, the per-node outbox (sealed envelopes only);
//	                  with --db the same lives in PostgreSQL (agbot/store), shared by a fleet of agbots
//	agbot-keys.json   the agbot's protocol keys (Ed25519 + HPKE), mode 0600
//	secrets.db/.key   the embedded secrets manager (values sealed with AES-256-GCM); with --db only
//	                  the key is here, the sealed records are in the database
//	tls/ca.pem        the CA clients trust (its private key is discarded at init)
//	tls/cert.pem      leaf certificate (CA:FALSE) for 127.0.0.1, ::1, localhost and the host name,
//	                  followed by the CA; tls/key.pem its key
//
// # Node endpoints
//
// A node authenticates with HTTP Basic auth, user "<org>/<node>", password the node token
// given at `hzn exchange node create -n NODE:TOKEN`. Every other credential gets 403 on
// these routes (401 when the credentials are wrong). Errors are {"code": N, "error": "..."}.
// Any route with auth may answer 429 (too many failed logins for the identity or from the
// address; the attempt was not checked) or 503 (password checks saturated), both with
// Retry-After in seconds: retry after it.
// Protocol messages are the envelopes of package protocol: the agbot seals to the node's
// registered keys and signs with its own; the node seals replies to the agbot's keys.
// Protocol ids: the agbot is GET /agbot's agbotId; a node is "<org>/<node>".
//
//	GET /agbot                                         (no auth)
//	  200 {"agbotId": "...", "publicKeys": protocol.PublicKeys, "fingerprint": "SHA256:..."}
//	  The node compares fingerprint with the one `agbot init` printed and pins the keys.
//
//	PUT /org/{org}/nodes/{node}/registration           (node auth)
//	  body {"publicKeys": protocol.PublicKeys, "arch": "amd64|arm64|arm|...",
//	        "properties": [{"name": "...", "value": any}], "pattern": "[org/]name"}
//	  200 {"agbotId", "publicKeys", "fingerprint"} (as GET /agbot).
//	  400 names the field (bad keys, missing arch, unknown pattern). Registering again
//	  replaces arch, properties and pattern, and re-evaluates the node's agreements: the
//	  ones the node declined or cancelled are forgotten, so a node that unregistered and
//	  registers again gets new proposals (new agreement ids). Without a registration, a
//	  declined or node-cancelled agreement is not proposed again until its binding changes.
//	  Keys: the token registers a node with no keys (never registered, or released) or its
//	  own keys again. Other keys need header X-Anax-User-Authorization: Basic
//	  base64("<org>/<user>:<password>") of the node's owner or an org admin (403 naming the
//	  rule without it, 401 when it does not authenticate). Then everything queued for the
//	  node is dropped, and each agreement still proposed, agreed or ending is forgotten with
//	  a cancel sealed to the OLD keys queued (reason "node keys replaced: ..."); the old
//	  node's cancel_reply signed with the old keys removes it (anything else signed with
//	  them gets 400), and an unanswered one goes after 24 h. New proposals follow.
//
//	DELETE /org/{org}/nodes/{node}/registration         (node auth)
//	  body {"time": RFC 3339, "signature": base64 of protocol.SignKeyRelease}: the node
//	  releases its keys (hzn unregister), proving it holds them; time within 5 min of the
//	  agbot's clock. 200 {"node", "released": bool}; the agbot forgets the keys, the node's
//	  agreements and queue, and the token alone may register new keys. 403 names the rule.
//
//	GET /org/{org}/nodes/{node}/msgs?wait=S&after=ID   (node auth)
//	  Long-poll: answers as soon as there is something, else after S seconds (0..60, default
//	  0) with an empty list. after is the highest message id the client received in an
//	  earlier answer (0, or absent, after the client starts). An HTTP/1.1 keep-alive
//	  request that has to wait is parked (package park): the answer, framed by
//	  Content-Length, comes on the same connection, which then serves the next request.
//	  200 {"messages": [{"id": uint64, "agreementId": "...", "type": "proposal|update|cancel|
//	       cancel_reply", "seq": uint64, "envelope": base64 of the envelope JSON}]}
//	  Messages are in id order per node. Every message with id > after is returned at once;
//	  one already returned (id <= after) and not yet acknowledged is returned again after a
//	  backoff (1 s, doubling, at most 30 s). A message stays queued, across agbot restarts,
//	  until the reply that acknowledges it arrives: nothing expires while the agreement
//	  lives. A proposal that waited longer than half the protocol's proposal TTL is resealed
//	  (same agreement and seq, current values, fresh time) when offered. Proposals are sealed
//	  to the node's keys and, for a node whose keys advertise agreement-keys, carry the
//	  agreement's key; that agreement's other messages are sealed with it. At most
//	  --max-in-flight answered polls (1024) are back in net/http at once; other answers
//	  wait their turn (package park).
//	  A cancel_reply is the exception: nothing acknowledges a reply, so it is offered only to
//	  polls whose after is below its id (never again by backoff), and the first poll with
//	  after >= its id removes it from the queue.
//	  On agbot shutdown an open poll answers 200 with an empty list.
//
//	POST /org/{org}/nodes/{node}/msgs[?wait=S&after=ID] (node auth)
//	  body: one envelope JSON (Content-Type application/json), at most 1 MiB, from the node
//	  to the agbot: proposal_reply, update_reply, cancel, cancel_reply or resync, sealed
//	  with the agreement's key (protocol.SealAgreement) when its proposal carried one, else
//	  sealed to the agbot's keys, or signed only for a reply (older agents).
//	  204 accepted. With wait or after (as GET .../msgs; checked first: 400 naming the
//	  parameter changes nothing) the message, once accepted, is also the node's next
//	  long-poll: 200 {"messages": [...]} as GET .../msgs answers, parked the same way (the
//	  agent sends the reply to a poll's last message so: one request per message instead of
//	  two). A refused message is answered at once with its error and polls nothing. Agbots
//	  before this form ignore the query and answer 204: the node polls then.
//	  A reply acknowledges the queued message of the type it answers with the
//	  same agreement and seq (update_reply "failed" leaves the update queued to be resent).
//	  Only the proposal_reply carrying the seq of the agreement's latest proposal, while the
//	  agreement is proposed, decides it (accepted or declined); a duplicate or stale one (a
//	  copy offered again or resealed and answered twice, an older seq, or the agreement
//	  already decided) is acknowledged and changes nothing. A cancel_reply ends only an
//	  agreement the agbot is cancelling. A cancel ends the agreement and is answered with a
//	  cancel_reply in the queue; a resync is answered with an update holding every current
//	  value (full=true).
//	  400 names the problem (signature, recipient, replay, unknown agreement, shape);
//	  413 when too large.
//
//	GET /org/{org}/nodes/{node}/agreements             (node, its owner, or an org admin)
//	  200 [engine.Agreement]: id, state (held|proposed|agreed|declined|ending), service,
//	  source, and per service secret the manager name in use. Never a value.
//
// The user-facing routes (secrets, users, nodes, services, business policies, patterns)
// are listed in package agbot/api and used by package hzn. The secure secrets API answers
// as anax's agbot: PUT 201, DELETE 204, LIST {"exists"} or [names], refusals as a JSON
// string. GET /v1/admin/version|status and /v1/orgs/{org}/users|nodes answer as the Open
// Horizon Exchange ({"code","msg"} refusals), for anax's hzn with HZN_EXCHANGE_URL.
package agbot
