// Package leakscan looks for the secret values a test used everywhere they must never be:
// files a run left on disk, every process's argv and environment, `docker inspect` and
// container logs. Values come from a Canaries registry so a scan knows what to look for and
// a failure message can name a value without printing it. Check plants a value of its own
// first, so a scan that finds nothing has proved it could have failed.
//
// Only tests import it (test/e2e, test/reliability).
package leakscan
