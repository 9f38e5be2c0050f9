// Package browsertest drives Debian's chromium headless (through chromedp) for the tests of
// the agbot's pages: a fresh profile, only the agbot's certificate trusted (pinned by its
// public key), the caller's Basic auth on every request. Without chromium the test is
// skipped outside CI and fails in CI (test/testenv); test/prepare.sh browser installs it.
//
// Only tests import it.
package browsertest

import (
	"context"
	"crypto/sha256"
	"crypto/x509"
	"encoding/base64"
	"encoding/pem"
	"fmt"
	"os"
	"os/exec"
	"testing"
	"time"

	"github.com/chromedp/cdproto/cdp"
	"github.com/chromedp/cdproto/network"
	"github.com/chromedp/chromedp"

	"github.com/edge-secrets/anax-agent/test/testenv"
)

// Browser is one headless chromium tab.
type Browser struct {
	t   testing.TB
	ctx context.Context
}

// Start starts chromium trusting the leaf certificate at the start of certFile (PEM) and
// sending Basic auth user:password; it stops at the test's end.
func Start(t testing.TB, certFile, user, password string) *Browser {
	t.Helper()
	path, err := exec.LookPath("chromium")
	if err != nil {
		testenv.Skip(t, "no chromium (test/prepare.sh browser installs Debian's chromium and chromium-driver)")
	}
	pin, err := spki(certFile)
	if err != nil {
		t.Fatal(err)
	}
	alloc, cancel := chromedp.NewExecAllocator(context.Background(),
		chromedp.ExecPath(path), chromedp.Headless, chromedp.NoSandbox, chromedp.DisableGPU, chromedp.NoFirstRun,
		chromedp.Flag("disable-background-networking", true), chromedp.Flag("disable-component-update", true),
		chromedp.Flag("disable-sync", true), chromedp.UserDataDir(t.TempDir()), chromedp.WindowSize(1100, 900),
		chromedp.Flag("ignore-certificate-errors-spki-list", pin))
	t.Cleanup(cancel)
	ctx, cancelCtx := chromedp.NewContext(alloc)
	t.Cleanup(cancelCtx)
	auth := "Basic " + base64.StdEncoding.EncodeToString([]byte(user+":"+password))
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
	return &Browser{t: t, ctx: ctx}
}

// spki is the base64 SHA-256 of the first certificate's public key in a PEM file.
func spki(certFile string) (string, error) {
	raw, err := os.ReadFile(certFile)
	if err != nil {
		return "", err
	}
	b, _ := pem.Decode(raw)
	if b == nil {
		return "", fmt.Errorf("%s: no PEM certificate", certFile)
	}
	cert, err := x509.ParseCertificate(b.Bytes)
	if err != nil {
		return "", err
	}
	sum := sha256.Sum256(cert.RawSubjectPublicKeyInfo)
	return base64.StdEncoding.EncodeToString(sum[:]), nil
}

// Open navigates to url.
func (b *Browser) Open(url string) {
	b.t.Helper()
	if err := chromedp.Do(b.ctx, chromedp.Navigate(url)); err != nil {
		b.t.Fatalf("open %s: %v", url, err)
	}
}

// Text is the rendered text of the element with id ("" if there is none).
func (b *Browser) Text(id string) (string, error) {
	return chromedp.Run(b.ctx, chromedp.Evaluate[string](
		`(function(){ var e = document.getElementById(`+fmt.Sprintf("%q", id)+`); return e === null ? "" : e.innerText; })()`))
}

// WaitText waits until the element with id shows want (the page may reload itself meanwhile:
// an evaluation a reload interrupts is tried again), up to timeout.
func (b *Browser) WaitText(id, want string, timeout time.Duration) {
	b.t.Helper()
	var got string
	var err error
	for deadline := time.Now().Add(timeout); time.Now().Before(deadline); time.Sleep(100 * time.Millisecond) {
		if got, err = b.Text(id); err == nil && got == want {
			return
		}
	}
	b.t.Fatalf("#%s shows %q (%v), want %q", id, got, err, want)
}

// Screenshot saves the whole page as PNG to path.
func (b *Browser) Screenshot(path string) {
	b.t.Helper()
	png, err := chromedp.Run(b.ctx, chromedp.FullScreenshot(100))
	if err != nil {
		b.t.Fatal(err)
	}
	if err := os.WriteFile(path, png, 0o644); err != nil {
		b.t.Fatal(err)
	}
	b.t.Logf("screenshot: %s (%d bytes)", path, len(png))
}
