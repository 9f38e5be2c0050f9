package pki

import (
	"crypto/x509"
	"testing"
	"time"
)

// The leaf verifies against the CA for each host it names, and only as a server; the CA signs
// leaves only.
func TestLeafVerifies(t *testing.T) {
	ca, caKey, err := NewCA("test CA", time.Now().AddDate(1, 0, 0))
	if err != nil {
		t.Fatal(err)
	}
	der, _, err := NewServerLeaf(ca, caKey, "srv", []string{"localhost", "127.0.0.1", "::1", "agbot.example"}, time.Now().AddDate(1, 0, 0))
	if err != nil {
		t.Fatal(err)
	}
	leaf, err := x509.ParseCertificate(der)
	if err != nil {
		t.Fatal(err)
	}
	if leaf.IsCA || !ca.IsCA || !ca.MaxPathLenZero {
		t.Errorf("leaf IsCA %v, CA IsCA %v MaxPathLenZero %v", leaf.IsCA, ca.IsCA, ca.MaxPathLenZero)
	}
	pool := x509.NewCertPool()
	pool.AddCert(ca)
	tests := []struct {
		name, host string
		usage      x509.ExtKeyUsage
		ok         bool
	}{
		{"dns", "localhost", x509.ExtKeyUsageServerAuth, true},
		{"ipv4", "127.0.0.1", x509.ExtKeyUsageServerAuth, true},
		{"ipv6", "::1", x509.ExtKeyUsageServerAuth, true},
		{"extra host", "agbot.example", x509.ExtKeyUsageServerAuth, true},
		{"other host", "evil.example", x509.ExtKeyUsageServerAuth, false},
		{"as a client", "localhost", x509.ExtKeyUsageClientAuth, false},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			_, err := leaf.Verify(x509.VerifyOptions{DNSName: tc.host, Roots: pool, KeyUsages: []x509.ExtKeyUsage{tc.usage}})
			if (err == nil) != tc.ok {
				t.Errorf("verify %s: %v, want ok %v", tc.host, err, tc.ok)
			}
		})
	}
}
