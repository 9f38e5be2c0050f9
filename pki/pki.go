// Package pki makes the small private certificate authorities this project serves TLS with
// (the agbot's API, the agent's ESS sockets): a self-signed ECDSA P-256 CA and the leaf
// certificates it signs. Imported by agbot and ess; it imports only the standard library.
package pki

import (
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/x509"
	"crypto/x509/pkix"
	"math/big"
	"net"
	"time"
)

// NewCA makes a self-signed CA named name, valid from an hour ago until notAfter, that may sign
// leaves only (path length zero).
func NewCA(name string, notAfter time.Time) (*x509.Certificate, *ecdsa.PrivateKey, error) {
	key, tpl, err := newKeyAndTemplate(name, notAfter)
	if err != nil {
		return nil, nil, err
	}
	tpl.KeyUsage = x509.KeyUsageCertSign | x509.KeyUsageCRLSign
	tpl.IsCA = true
	tpl.MaxPathLenZero = true
	der, err := x509.CreateCertificate(rand.Reader, tpl, tpl, &key.PublicKey, key)
	if err != nil {
		return nil, nil, err
	}
	ca, err := x509.ParseCertificate(der)
	return ca, key, err
}

// NewServerLeaf makes a server certificate (CA:FALSE) for the DNS names and IP addresses in
// hosts, signed by ca, and returns its DER and its key.
func NewServerLeaf(ca *x509.Certificate, caKey *ecdsa.PrivateKey, name string, hosts []string, notAfter time.Time) ([]byte, *ecdsa.PrivateKey, error) {
	key, tpl, err := newKeyAndTemplate(name, notAfter)
	if err != nil {
		return nil, nil, err
	}
	tpl.KeyUsage = x509.KeyUsageDigitalSignature
	tpl.ExtKeyUsage = []x509.ExtKeyUsage{x509.ExtKeyUsageServerAuth}
	for _, h := range hosts {
		if h == "" {
			continue
		}
		if ip := net.ParseIP(h); ip != nil {
			tpl.IPAddresses = append(tpl.IPAddresses, ip)
		} else {
			tpl.DNSNames = append(tpl.DNSNames, h)
		}
	}
	der, err := x509.CreateCertificate(rand.Reader, tpl, ca, &key.PublicKey, caKey)
	if err != nil {
		return nil, nil, err
	}
	return der, key, nil
}

// newKeyAndTemplate makes a P-256 key and the fields every certificate here shares: a random
// serial, the name, validity from an hour ago (clock skew) until notAfter, basic constraints.
func newKeyAndTemplate(name string, notAfter time.Time) (*ecdsa.PrivateKey, *x509.Certificate, error) {
	key, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	if err != nil {
		return nil, nil, err
	}
	return key, &x509.Certificate{
		SerialNumber:          serial(),
		Subject:               pkix.Name{CommonName: name},
		NotBefore:             time.Now().Add(-time.Hour),
		NotAfter:              notAfter,
		BasicConstraintsValid: true,
	}, nil
}

func serial() *big.Int {
	n, err := rand.Int(rand.Reader, new(big.Int).Lsh(big.NewInt(1), 127))
	if err != nil {
		panic(err) // crypto/rand does not fail on the platforms this runs on
	}
	return n
}
