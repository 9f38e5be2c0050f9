package agbot_test

import (
	"context"
	"crypto/sha256"
	"crypto/x509"
	"encoding/base64"
	"encoding/pem"
	"flag"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/chromedp/cdproto/cdp"
	"github.com/chromedp/cdproto/network"
	"github.com/chromedp/chromedp"

	"github.com/edge-secrets/anax-agent/agbot"
	"github.com/edge-secrets/anax-agent/test/testenv"
)

var screenshotPath = flag.String("rollout-screenshot", "", "where TestRolloutPageBrowser saves its PNG (default: a temp dir)")

// browser starts Debian's chromium headless with a fresh profile, trusting only the
// harness's certificate (pinned by its public key), sending the admin's Basic auth.
func browser(t *testing.T, h *harness) context.Context {
	t.Helper()
	path, err := exec.LookPath("chromium")
	if err != nil {
		testenv.Skip(t, "no chromium (test/prepare.sh browser installs Debian's chromium and chromium-driver)")
	}
	alloc, cancel := chromedp.NewExecAllocator(context.Background(),
		chromedp.ExecPath(path), chromedp.Headless, chromedp.NoSandbox, chromedp.DisableGPU, chromedp.NoFirstRun,
		chromedp.Flag("disable-background-networking", true), chromedp.Flag("disable-component-update", true),
		chromedp.Flag("disable-sync", true), chromedp.UserDataDir(t.TempDir()), chromedp.WindowSize(1100, 900),
		chromedp.Flag("ignore-certificate-errors-spki-list", leafSPKI(t, h.dir)))
	t.Cleanup(cancel)
	ctx, cancelCtx := chromedp.NewContext(alloc)
	t.Cleanup(cancelCtx)
	auth := "Basic " + base64.StdEncoding.EncodeToString([]byte("myorg/admin:adminpw"))
	err = chromedp.Do(ctx, chromedp.Func(func(ctx context.Context, tg *chromedp.Target) error {
		if _, err := cdp.Call(ctx, tg, network.Enable, network.EnableParams{}); err != nil {
			return err
		}
		_, err := cdp.Call(ctx, tg, network.SetExtraHTTPHeaders, network.SetExtraHTTPHeadersParams{Headers: network.Headers{"Authorization": auth}})
		return err
	}))
	if err != nil {
		t.Fatalf("start chromium: %v", err)
	}
	return ctx
}

// leafSPKI is the base64 SHA-256 of the agbot certificate's public key (chromium's pin).
func leafSPKI(t *testing.T, dir string) string {
	t.Helper()
	raw, err := os.ReadFile(filepath.Join(dir, agbot.CertFile))
	if err != nil {
		t.Fatal(err)
	}
	b, _ := pem.Decode(raw)
	cert, err := x509.ParseCertificate(b.Bytes)
	if err != nil {
		t.Fatal(err)
	}
	sum := sha256.Sum256(cert.RawSubjectPublicKeyInfo)
	return base64.StdEncoding.EncodeToString(sum[:])
}

// summaryIs waits until the page (which reloads itself every few seconds) shows want as its
// summary. A reload may interrupt an evaluation: it is tried again, up to a minute.
func summaryIs(t *testing.T, ctx context.Context, want string) {
	t.Helper()
	js := `(function(){ var e = document.getElementById("summary"); return e === null ? "" : e.textContent; })()`
	var got string
	var err error
	for deadline := time.Now().Add(time.Minute); time.Now().Before(deadline); time.Sleep(100 * time.Millisecond) {
		if got, err = chromedp.Run(ctx, chromedp.Evaluate[string](js)); err == nil && got == want {
			return
		}
	}
	t.Fatalf("page summary %q (%v), want %q", got, err, want)
}

// TestRolloutPageBrowser: the rollout page in a real headless chromium, logged in with the
// admin's Basic auth. One node stopped: "2 of 3 acknowledged, 1 offline since T", and a
// failed node's reason; the page refreshes itself and shows "3 of 3" once they answer.
func TestRolloutPageBrowser(t *testing.T) {
	h, nodes := rolloutFleet(t)
	n1, n2, n3 := nodes[0], nodes[1], nodes[2]
	ctx := browser(t, h)

	putSecret(h, admin, "db", "canary-rollout-v2")
	n1.ack(n1.next())
	n2.ack(n2.next())
	s3 := nodeState(h.rollout("db", ""), "node3")
	since := s3.LastPoll.UTC().Format(time.RFC3339)
	if err := chromedp.Do(ctx, chromedp.Navigate(h.url+"/ui/org/myorg/rollouts/db")); err != nil {
		t.Fatal(err)
	}
	summaryIs(t, ctx, "version 2: 2 of 3 nodes acknowledged, 1 offline since "+since)

	putSecret(h, admin, "db", "canary-rollout-v3")
	n1.ack(n1.next())
	n2.failUpdate(n2.next(), "read-only file system on /run/secrets")
	want := "version 3: 1 of 3 nodes acknowledged, 1 offline since " + since + ", 1 failed: read-only file system on /run/secrets (1)"
	summaryIs(t, ctx, want)
	// Right after a reload showed it: the next one is seconds away.
	behind, err := chromedp.Run(ctx, chromedp.Evaluate[string](`document.getElementById("behind").innerText`))
	if err != nil || !containsAll(behind, "node2", "failed", "read-only file system on /run/secrets", "node3", "offline") {
		t.Fatalf("nodes behind: %q (%v)", behind, err)
	}
	shot, err := chromedp.Run(ctx, chromedp.FullScreenshot(100))
	if err != nil {
		t.Fatal(err)
	}
	out := *screenshotPath
	if out == "" {
		out = filepath.Join(t.TempDir(), "rollout.png")
	}
	if err := os.WriteFile(out, shot, 0o644); err != nil {
		t.Fatal(err)
	}
	t.Logf("screenshot: %s (%d bytes)", out, len(shot))

	n2.ack(n2.next())
	for _, m := range n3.poll(5) {
		n3.ack(m)
	}
	summaryIs(t, ctx, "version 3: 3 of 3 nodes acknowledged")
}

func containsAll(s string, subs ...string) bool {
	for _, sub := range subs {
		if !strings.Contains(s, sub) {
			return false
		}
	}
	return true
}
