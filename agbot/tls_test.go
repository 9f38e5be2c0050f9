package agbot_test

import (
	"bytes"
	"crypto/tls"
	"crypto/x509"
	"encoding/pem"
	"io/fs"
	"net/http"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/edge-secrets/anax-agent/agbot"
)

func certs(t *testing.T, path string) []*x509.Certificate {
	t.Helper()
	raw, err := os.ReadFile(path)
	if err != nil {
		t.Fatal(err)
	}
	var out []*x509.Certificate
	for {
		var b *pem.Block
		if b, raw = pem.Decode(raw); b == nil {
			return out
		}
		c, err := x509.ParseCertificate(b.Bytes)
		if err != nil {
			t.Fatal(err)
		}
		out = append(out, c)
	}
}

// TestTLSLeafAndCA: the agbot serves a CA:FALSE leaf signed by a CA of its own whose private
// key is nowhere in the data dir; clients trust tls/ca.pem, and tls/cert.pem (the bundle
// older setups point HZN_AGBOT_CA at) still verifies (issue 12, item 6).
func TestTLSLeafAndCA(t *testing.T) {
	h := newHarness(t, nil)
	chain := certs(t, filepath.Join(h.dir, agbot.CertFile))
	cas := certs(t, filepath.Join(h.dir, agbot.CAFile))
	if len(chain) != 2 || len(cas) != 1 {
		t.Fatalf("cert.pem holds %d certificates, ca.pem %d: want leaf+CA and the CA", len(chain), len(cas))
	}
	leaf, ca := chain[0], cas[0]
	t.Run("leaf", func(t *testing.T) {
		if leaf.IsCA || !leaf.BasicConstraintsValid || leaf.KeyUsage&x509.KeyUsageCertSign != 0 {
			t.Errorf("leaf: IsCA %v, basic constraints %v, cert sign %v: want CA:FALSE and no cert signing",
				leaf.IsCA, leaf.BasicConstraintsValid, leaf.KeyUsage&x509.KeyUsageCertSign != 0)
		}
		if bytes.Equal(leaf.Raw, ca.Raw) || !ca.IsCA {
			t.Error("the CA is the leaf, or not a CA")
		}
		pool := x509.NewCertPool()
		pool.AddCert(ca)
		if _, err := leaf.Verify(x509.VerifyOptions{Roots: pool, DNSName: "localhost"}); err != nil {
			t.Errorf("leaf does not verify against ca.pem: %v", err)
		}
	})
	t.Run("no CA key on disk", func(t *testing.T) {
		filepath.WalkDir(h.dir, func(p string, d fs.DirEntry, err error) error {
			if err != nil || d.IsDir() || strings.HasSuffix(p, agbot.TLSKey) {
				return err
			}
			b, _ := os.ReadFile(p)
			if bytes.Contains(b, []byte("PRIVATE KEY")) {
				t.Errorf("%s holds a PEM private key", p)
			}
			return nil
		})
		k, err := tls.LoadX509KeyPair(filepath.Join(h.dir, agbot.CertFile), filepath.Join(h.dir, agbot.TLSKey))
		if err != nil || !bytes.Equal(k.Certificate[0], leaf.Raw) {
			t.Errorf("tls/key.pem is not the leaf's key: %v", err)
		}
	})
	t.Run("client trusting ca.pem only", func(t *testing.T) {
		pool := x509.NewCertPool()
		pool.AddCert(ca)
		c := &http.Client{Transport: &http.Transport{TLSClientConfig: &tls.Config{RootCAs: pool}}}
		resp, err := c.Get(h.url + "/healthz")
		if err != nil {
			t.Fatal(err)
		}
		resp.Body.Close()
		if st := resp.TLS; st == nil || len(st.PeerCertificates) == 0 || st.PeerCertificates[0].IsCA {
			t.Error("the served certificate is a CA")
		}
	})
}
