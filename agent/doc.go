// Package agent is the node daemon: configuration, registration with the agbot, the message
// loop that carries protocol messages to the agreement manager, the local API that hzn reads,
// systemd integration and metrics. cmd/anax-agent is a thin main over it.
//
// It wires protocol, secretfs, container and agreement together; nothing imports it but cmd/.
package agent
