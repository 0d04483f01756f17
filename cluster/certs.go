package cluster

import (
	"crypto/ecdsa"
	"crypto/tls"
	"crypto/x509"
	"crypto/x509/pkix"
	"encoding/pem"
	"fmt"
	"os"
	"path/filepath"
	"strings"
	"time"

	"github.com/wharfhq/wharf/internal/filekind"
	"github.com/wharfhq/wharf/internal/pki"
)

// Hosts talk to each other over mutual TLS: a cluster CA (made once, by
// wharf cluster init) signs one certificate per host, naming the host, and
// a host accepts a peer only if its certificate chains to that CA; a client
// also checks that the server's certificate names the host it meant.

// File names in a cluster certificate directory.
const (
	caCertFile = "ca.pem"
	caKeyFile  = "ca-key.pem"
)

func hostCertFile(name string) string { return name + ".pem" }
func hostKeyFile(name string) string  { return name + "-key.pem" }

// InitCA creates the cluster CA in dir. It refuses to replace one.
func InitCA(dir string) error {
	if _, err := os.Stat(filepath.Join(dir, caKeyFile)); err == nil {
		return fmt.Errorf("%s already holds a cluster CA (%s)", dir, caKeyFile)
	}
	certPEM, keyPEM, err := pki.NewCA(pkix.Name{CommonName: "wharf cluster CA"})
	if err != nil {
		return err
	}
	if err := os.MkdirAll(dir, 0o700); err != nil {
		return err
	}
	return writePair(dir, caCertFile, caKeyFile, certPEM, keyPEM)
}

// IssueHost signs a certificate for host name with the CA in dir.
func IssueHost(dir, name string) error {
	if err := CheckHostName(name); err != nil {
		return err
	}
	ca, caKey, err := loadCA(dir)
	if err != nil {
		return err
	}
	der, key, err := pki.Sign(&x509.Certificate{
		Subject:     pkix.Name{CommonName: name},
		DNSNames:    []string{name},
		NotBefore:   time.Now().Add(-time.Hour),
		NotAfter:    time.Now().AddDate(2, 0, 0),
		KeyUsage:    x509.KeyUsageDigitalSignature,
		ExtKeyUsage: []x509.ExtKeyUsage{x509.ExtKeyUsageServerAuth, x509.ExtKeyUsageClientAuth},
	}, ca, caKey)
	if err != nil {
		return err
	}
	certPEM, keyPEM, err := pki.EncodePEM(der, key)
	if err != nil {
		return err
	}
	return writePair(dir, hostCertFile(name), hostKeyFile(name), certPEM, keyPEM)
}

// PeerTLS returns the TLS configurations host name serves its peers with
// and reaches them with (the client's ServerName is set per peer), from
// the certificates in dir.
func PeerTLS(dir, name string) (server, client *tls.Config, err error) {
	caPEM, err := readPEMFile(filepath.Join(dir, caCertFile))
	if err != nil {
		return nil, nil, fmt.Errorf("cluster certificates: %w (make them with wharf cluster init --certs %s, then wharf cluster cert %s --certs %s)", err, ShellQuote(dir), ShellQuote(name), ShellQuote(dir))
	}
	pool := x509.NewCertPool()
	if !pool.AppendCertsFromPEM(caPEM) {
		return nil, nil, fmt.Errorf("cluster certificates: %s holds no certificate", filepath.Join(dir, caCertFile))
	}
	cert, err := loadKeyPair(filepath.Join(dir, hostCertFile(name)), filepath.Join(dir, hostKeyFile(name)))
	if err != nil {
		return nil, nil, fmt.Errorf("cluster certificate of host %q: %w (make it with wharf cluster cert %s --certs %s)", name, err, ShellQuote(name), ShellQuote(dir))
	}
	if err := checkHostCert(cert, pool, name); err != nil {
		return nil, nil, fmt.Errorf("cluster certificate of host %q in %s: %w (make it with wharf cluster cert %s --certs %s, with the cluster's CA)", name, dir, err, ShellQuote(name), ShellQuote(dir))
	}
	server = &tls.Config{Certificates: []tls.Certificate{cert}, ClientCAs: pool, ClientAuth: tls.RequireAndVerifyClientCert, MinVersion: tls.VersionTLS13}
	client = &tls.Config{Certificates: []tls.Certificate{cert}, RootCAs: pool, MinVersion: tls.VersionTLS13}
	return server, client, nil
}

// checkHostCert refuses a certificate the peers would refuse: one that
// does not chain to the cluster CA (another cluster's, expired) or does not
// name the host. A host started with it would join and take objects that
// no peer could reach.
func checkHostCert(cert tls.Certificate, roots *x509.CertPool, name string) error {
	leaf, err := x509.ParseCertificate(cert.Certificate[0])
	if err != nil {
		return err
	}
	intermediates := x509.NewCertPool()
	for _, der := range cert.Certificate[1:] {
		if c, err := x509.ParseCertificate(der); err == nil {
			intermediates.AddCert(c)
		}
	}
	// A host serves its peers and reaches them: it needs both uses.
	for _, usage := range []x509.ExtKeyUsage{x509.ExtKeyUsageServerAuth, x509.ExtKeyUsageClientAuth} {
		if _, err := leaf.Verify(x509.VerifyOptions{Roots: roots, Intermediates: intermediates, DNSName: name, KeyUsages: []x509.ExtKeyUsage{usage}}); err != nil {
			return err
		}
	}
	return nil
}

func loadCA(dir string) (*x509.Certificate, *ecdsa.PrivateKey, error) {
	certPEM, err := readPEMFile(filepath.Join(dir, caCertFile))
	if err != nil {
		return nil, nil, fmt.Errorf("cluster CA: %w (make it with wharf cluster init --certs %s, once per cluster)", err, ShellQuote(dir))
	}
	keyPEM, err := readPEMFile(filepath.Join(dir, caKeyFile))
	if err != nil { // another cluster init would make another CA, which the hosts would not trust
		return nil, nil, fmt.Errorf("cluster CA: %w (only the directory wharf cluster init made holds the CA's key: run wharf cluster cert there)", err)
	}
	cert, key, err := pki.Parse(certPEM, keyPEM)
	if err != nil {
		return nil, nil, fmt.Errorf("cluster CA: %w", err)
	}
	return cert, key, nil
}

func writePair(dir, certName, keyName string, certPEM, keyPEM []byte) error {
	if err := os.WriteFile(filepath.Join(dir, keyName), keyPEM, 0o600); err != nil {
		return err
	}
	return os.WriteFile(filepath.Join(dir, certName), certPEM, 0o644)
}

// EtcdFile is one of the files EtcdTLS loads.
type EtcdFile int

const (
	EtcdCA   EtcdFile = iota // the CA certificate that signed etcd's
	EtcdCert                 // the client certificate
	EtcdKey                  // the client certificate's key
)

// EtcdFileError is an error of EtcdTLS about one of its files: one that
// cannot be read or used, or the one missing of a client certificate and
// its key.
type EtcdFileError struct {
	File EtcdFile
	Err  error
}

func (e *EtcdFileError) Error() string { return e.Err.Error() }
func (e *EtcdFileError) Unwrap() error { return e.Err }

// EtcdTLS returns the TLS configuration a host reaches an etcd served over
// https with: caFile is the CA certificate that signed etcd's server
// certificate (empty: the system's roots), certFile and keyFile the
// client certificate the host presents (both or neither; an etcd run with
// --client-cert-auth refuses a client without one). Files are PEM. Its
// errors are *EtcdFileError: a key that does not go with a certificate is
// the key's.
func EtcdTLS(caFile, certFile, keyFile string) (*tls.Config, error) {
	fileErr := func(file EtcdFile, format string, a ...any) error {
		return &EtcdFileError{File: file, Err: fmt.Errorf(format, a...)}
	}
	cfg := &tls.Config{MinVersion: tls.VersionTLS12}
	if caFile != "" {
		caPEM, err := readPEMFile(caFile)
		if err != nil {
			return nil, fileErr(EtcdCA, "etcd's CA certificate: %w", err)
		}
		cfg.RootCAs = x509.NewCertPool()
		if !cfg.RootCAs.AppendCertsFromPEM(caPEM) {
			return nil, fileErr(EtcdCA, "etcd's CA certificate: %s holds no PEM certificate", caFile)
		}
	}
	if (certFile == "") != (keyFile == "") {
		missing := EtcdCert
		if keyFile == "" {
			missing = EtcdKey
		}
		return nil, fileErr(missing, "etcd's client certificate and its key go together: give both or neither")
	}
	if certFile == "" {
		return cfg, nil
	}
	certPEM, err := readPEMFile(certFile)
	if err != nil {
		return nil, fileErr(EtcdCert, "etcd's client certificate: %w", err)
	}
	keyPEM, err := readPEMFile(keyFile)
	if err != nil {
		return nil, fileErr(EtcdKey, "etcd's client key: %w", err)
	}
	cert, err := tls.X509KeyPair(certPEM, keyPEM)
	if err != nil {
		if !holdsCertificate(certPEM) {
			return nil, fileErr(EtcdCert, "etcd's client certificate: %w", err)
		}
		return nil, fileErr(EtcdKey, "etcd's client key: %w", err)
	}
	cfg.Certificates = []tls.Certificate{cert}
	return cfg, nil
}

// holdsCertificate reports whether the first certificate of the PEM data
// parses (what tls.X509KeyPair looks at before the key).
func holdsCertificate(data []byte) bool {
	for {
		var block *pem.Block
		if block, data = pem.Decode(data); block == nil {
			return false
		}
		if block.Type == "CERTIFICATE" {
			_, err := x509.ParseCertificate(block.Bytes)
			return err == nil
		}
	}
}

// maxPEMFile bounds what is read of a certificate or key file: a bundle
// of every public root CA is a few hundred KiB.
const maxPEMFile = 1 << 20

// readPEMFile reads the certificate or key file at path (see
// filekind.ReadSmall).
func readPEMFile(path string) ([]byte, error) {
	return filekind.ReadSmall(path, "a PEM file", maxPEMFile)
}

// loadKeyPair is tls.LoadX509KeyPair, with the files read by readPEMFile.
func loadKeyPair(certFile, keyFile string) (tls.Certificate, error) {
	certPEM, err := readPEMFile(certFile)
	if err != nil {
		return tls.Certificate{}, err
	}
	keyPEM, err := readPEMFile(keyFile)
	if err != nil {
		return tls.Certificate{}, err
	}
	return tls.X509KeyPair(certPEM, keyPEM)
}

// ShellQuote is s as a shell word, for the commands hints give to copy:
// as it is if it holds only characters no shell treats specially, else in
// single quotes (a --certs directory with a space in it was cut in two).
func ShellQuote(s string) string {
	if s != "" && strings.IndexFunc(s, func(r rune) bool {
		return !(r >= 'a' && r <= 'z' || r >= 'A' && r <= 'Z' || r >= '0' && r <= '9' || strings.ContainsRune("_-./:@%+=,", r))
	}) < 0 {
		return s
	}
	return "'" + strings.ReplaceAll(s, "'", `'\''`) + "'"
}
