package agbot_test

import (
	"flag"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/edge-secrets/anax-agent/agbot"
	"github.com/edge-secrets/anax-agent/test/browsertest"
)

var screenshotPath = flag.String("rollout-screenshot", "", "where TestRolloutPageBrowser saves its PNG (default: a temp dir)")

// TestRolloutPageBrowser: the rollout page in a real headless chromium, logged in with the
// admin's Basic auth. One node stopped: "2 of 3 acknowledged, 1 offline since T", and a
// failed node's reason; the page refreshes itself and shows "3 of 3" once they answer.
func TestRolloutPageBrowser(t *testing.T) {
	h, nodes := rolloutFleet(t)
	n1, n2, n3 := nodes[0], nodes[1], nodes[2]
	b := browsertest.Start(t, filepath.Join(h.dir, agbot.CertFile), "myorg/admin", "adminpw")

	putSecret(h, admin, "db", "canary-rollout-v2")
	n1.ack(n1.next())
	n2.ack(n2.next())
	since := nodeState(h.rollout("db", ""), "node3").LastPoll.UTC().Format(time.RFC3339)
	b.Open(h.url + "/ui/org/myorg/rollouts/db")
	b.WaitText("summary", "version 2: 2 of 3 nodes acknowledged, 1 offline since "+since, time.Minute)

	putSecret(h, admin, "db", "canary-rollout-v3")
	n1.ack(n1.next())
	n2.failUpdate(n2.next(), "read-only file system on /run/secrets")
	b.WaitText("summary", "version 3: 1 of 3 nodes acknowledged, 1 offline since "+since+
		", 1 failed: read-only file system on /run/secrets (1)", time.Minute)
	behind, err := b.Text("behind")
	for _, want := range []string{"node2\tfailed", "read-only file system on /run/secrets", "node3\toffline"} {
		if err != nil || !strings.Contains(behind, want) {
			t.Fatalf("nodes behind lack %q: %q (%v)", want, behind, err)
		}
	}
	out := *screenshotPath
	if out == "" {
		out = filepath.Join(t.TempDir(), "rollout.png")
	}
	b.Screenshot(out)

	n2.ack(n2.next())
	for _, m := range n3.poll(5) {
		n3.ack(m)
	}
	b.WaitText("summary", "version 3: 3 of 3 nodes acknowledged", time.Minute)
}
