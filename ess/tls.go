package ess

import (
	"crypto/ecdsa"
	"crypto/tls"
	"crypto/x509"
	"encoding/pem"
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"time"

	"github.com/edge-secrets/anax-agent/pki"
)

// authority is the CA every container trusts and the server certificate for "localhost" it
// signs (a new one at every start; the CA stays while the root tmpfs does).
type authority struct {
	caPEM []byte
	cert  tls.Certificate
}

// loadAuthority reads the CA from dir or makes one, then issues the server certificate.
func loadAuthority(dir string) (*authority, error) {
	if err := os.MkdirAll(dir, 0o700); err != nil {
		return nil, err
	}
	keyPath, certPath := filepath.Join(dir, "key.pem"), filepath.Join(dir, "cert.pem")
	caKey, caCert, caPEM, err := readCA(keyPath, certPath)
	if errors.Is(err, os.ErrNotExist) {
		caKey, caCert, caPEM, err = makeCA(keyPath, certPath)
	}
	if err != nil {
		return nil, fmt.Errorf("ess CA in %s: %w", dir, err)
	}
	der, leafKey, err := pki.NewServerLeaf(caCert, caKey, "localhost", []string{"localhost"}, caCert.NotAfter)
	if err != nil {
		return nil, err
	}
	return &authority{caPEM: caPEM, cert: tls.Certificate{Certificate: [][]byte{der}, PrivateKey: leafKey}}, nil
}

func readCA(keyPath, certPath string) (*ecdsa.PrivateKey, *x509.Certificate, []byte, error) {
	keyPEM, err := os.ReadFile(keyPath)
	if err != nil {
		return nil, nil, nil, err
	}
	certPEM, err := os.ReadFile(certPath)
	if err != nil {
		return nil, nil, nil, err
	}
	kb, _ := pem.Decode(keyPEM)
	cb, _ := pem.Decode(certPEM)
	if kb == nil || cb == nil {
		return nil, nil, nil, errors.New("not PEM")
	}
	key, err := x509.ParseECPrivateKey(kb.Bytes)
	if err != nil {
		return nil, nil, nil, err
	}
	cert, err := x509.ParseCertificate(cb.Bytes)
	if err != nil {
		return nil, nil, nil, err
	}
	return key, cert, certPEM, nil
}

func makeCA(keyPath, certPath string) (*ecdsa.PrivateKey, *x509.Certificate, []byte, error) {
	cert, key, err := pki.NewCA("anax-agent ESS CA", time.Now().AddDate(10, 0, 0))
	if err != nil {
		return nil, nil, nil, err
	}
	kd, err := x509.MarshalECPrivateKey(key)
	if err != nil {
		return nil, nil, nil, err
	}
	certPEM := pem.EncodeToMemory(&pem.Block{Type: "CERTIFICATE", Bytes: cert.Raw})
	if err := os.WriteFile(keyPath, pem.EncodeToMemory(&pem.Block{Type: "EC PRIVATE KEY", Bytes: kd}), 0o600); err != nil {
		return nil, nil, nil, err
	}
	if err := os.WriteFile(certPath, certPEM, 0o600); err != nil {
		return nil, nil, nil, err
	}
	return key, cert, certPEM, nil
}
