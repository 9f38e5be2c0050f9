// Package reliability is the reliability suite of issue 8: hostile input against the wire
// protocol and a real agbot's API, full file systems under the secret stores and the state
// dir, faults (kill -9 of the agent during an update stream, agbot restarts with pending
// updates, a cut or stalled link, a restart of a private dockerd started by the test:
// test/dockertest.Daemon), a leak scan for secret values, and load.
//
// It runs in `make test` within a few minutes; `make soak` runs the long variants (a link cut
// longer than anax's 240 s message lifetime, 1,000 services on one node,
// 100 updates a second). Everything runs against real parts: the kernel, dockerd, the agbot,
// anax-agent and hzn binaries.
//
// Its one non-test file, scenario.go, is the Scenario the suite and bench/'s end-to-end
// benchmarks share (an agbot and agents on loopback, driven through hzn). Only tests import
// this package.
package reliability
