package egress

import (
	"crypto/ecdsa"
	"crypto/tls"
	"crypto/x509"
	"crypto/x509/pkix"
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"sync"
	"time"

	"github.com/wharfhq/wharf/internal/pki"
)

// CA is wharf's certificate authority for HTTPS interception. Its key and
// certificate live in a directory of the data dir and are created on first
// use; containers get the certificate, never the key.
type CA struct {
	cert    *x509.Certificate
	key     *ecdsa.PrivateKey
	CertPEM []byte
	// CertPath is the PEM certificate file, for mounting into containers.
	CertPath string

	mu     sync.Mutex
	leaves map[string]*tls.Certificate
}

// LoadCA reads the CA in dir, creating it if there is none.
func LoadCA(dir string) (*CA, error) {
	certPath, keyPath := filepath.Join(dir, "ca.crt"), filepath.Join(dir, "ca.key")
	certPEM, cerr := os.ReadFile(certPath)
	keyPEM, kerr := os.ReadFile(keyPath)
	if errors.Is(cerr, os.ErrNotExist) && errors.Is(kerr, os.ErrNotExist) {
		var err error
		if certPEM, keyPEM, err = pki.NewCA(pkix.Name{CommonName: "wharf egress CA", Organization: []string{"wharf"}}); err != nil {
			return nil, err
		}
		if err := os.MkdirAll(dir, 0o755); err != nil {
			return nil, err
		}
		if err := os.WriteFile(keyPath, keyPEM, 0o600); err != nil {
			return nil, err
		}
		if err := os.WriteFile(certPath, certPEM, 0o644); err != nil {
			return nil, err
		}
	} else if err := errors.Join(cerr, kerr); err != nil {
		return nil, fmt.Errorf("wharf CA in %s: %w", dir, err)
	}
	cert, key, err := pki.Parse(certPEM, keyPEM)
	if err != nil {
		return nil, fmt.Errorf("wharf CA in %s: %w", dir, err)
	}
	return &CA{cert: cert, key: key, CertPEM: certPEM, CertPath: certPath, leaves: map[string]*tls.Certificate{}}, nil
}

// leafLifetime is how long a minted certificate is valid; it is re-minted
// a day before it ends.
const leafLifetime = 7 * 24 * time.Hour

// maxLeaves bounds the certificates kept (an HTTPS "*" rule mints one per
// name a container asks for).
const maxLeaves = 4096

// Leaf returns a certificate for name signed by the CA, minted once and
// cached.
func (ca *CA) Leaf(name string) (*tls.Certificate, error) {
	ca.mu.Lock()
	defer ca.mu.Unlock()
	if c, ok := ca.leaves[name]; ok && time.Until(c.Leaf.NotAfter) > 24*time.Hour {
		return c, nil
	}
	tmpl := &x509.Certificate{
		Subject:     pkix.Name{CommonName: name},
		DNSNames:    []string{name},
		NotBefore:   time.Now().Add(-time.Hour),
		NotAfter:    time.Now().Add(leafLifetime),
		KeyUsage:    x509.KeyUsageDigitalSignature,
		ExtKeyUsage: []x509.ExtKeyUsage{x509.ExtKeyUsageServerAuth},
	}
	der, key, err := pki.Sign(tmpl, ca.cert, ca.key)
	if err != nil {
		return nil, err
	}
	leaf, err := x509.ParseCertificate(der)
	if err != nil {
		return nil, err
	}
	c := &tls.Certificate{Certificate: [][]byte{der, ca.cert.Raw}, PrivateKey: key, Leaf: leaf}
	if len(ca.leaves) >= maxLeaves {
		clear(ca.leaves) // re-minting is cheap; unbounded growth is not
	}
	ca.leaves[name] = c
	return c, nil
}
