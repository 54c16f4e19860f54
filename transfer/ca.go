package transfer

import (
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/sha256"
	"crypto/tls"
	"crypto/x509"
	"crypto/x509/pkix"
	"encoding/pem"
	"errors"
	"fmt"
	"io/fs"
	"math/big"
	"net"
	"os"
	"path/filepath"
	"time"
)

// File names inside a CA directory.
const (
	CACertFile = "ca.pem"
	CAKeyFile  = "ca.key"
)

// caValidity is long because re-keying a lab CA means re-issuing every node.
const caValidity = 10 * 365 * 24 * time.Hour

// clockSkew back-dates NotBefore so that a node whose clock is slightly behind
// the issuer's still accepts a freshly issued certificate.
const clockSkew = 5 * time.Minute

// CA is an operator certificate authority held in memory.
type CA struct {
	Cert *x509.Certificate
	Key  *ecdsa.PrivateKey
}

// NewCA creates a self-signed ECDSA P-256 CA in memory.
func NewCA() (*CA, error) {
	key, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	if err != nil {
		return nil, fmt.Errorf("generate CA key: %w", err)
	}
	serial, err := randomSerial()
	if err != nil {
		return nil, err
	}
	now := time.Now()
	tmpl := &x509.Certificate{
		SerialNumber:          serial,
		Subject:               pkix.Name{CommonName: "capsec operator CA", Organization: []string{"capsec"}},
		NotBefore:             now.Add(-clockSkew),
		NotAfter:              now.Add(caValidity),
		KeyUsage:              x509.KeyUsageCertSign | x509.KeyUsageCRLSign,
		BasicConstraintsValid: true,
		IsCA:                  true,
		MaxPathLen:            0,
		MaxPathLenZero:        true, // node certificates only; no intermediates
		SubjectKeyId:          keyID(&key.PublicKey),
	}
	der, err := x509.CreateCertificate(rand.Reader, tmpl, tmpl, &key.PublicKey, key)
	if err != nil {
		return nil, fmt.Errorf("self-sign CA certificate: %w", err)
	}
	cert, err := x509.ParseCertificate(der)
	if err != nil {
		return nil, fmt.Errorf("parse new CA certificate: %w", err)
	}
	return &CA{Cert: cert, Key: key}, nil
}

// Pool returns a pool holding only this CA, for Identity.Roots.
func (ca *CA) Pool() *x509.CertPool {
	p := x509.NewCertPool()
	p.AddCert(ca.Cert)
	return p
}

// Issue signs a node certificate valid from notBefore to notAfter with
// CN = node and DNS SAN = node (plus any IP SANs), usable as both TLS server
// and client. Tests use explicit times to make expired certificates.
func (ca *CA) Issue(node string, notBefore, notAfter time.Time, ips ...net.IP) (tls.Certificate, error) {
	if err := ValidateNodeName(node); err != nil {
		return tls.Certificate{}, err
	}
	if !notAfter.After(notBefore) {
		return tls.Certificate{}, fmt.Errorf("issue certificate for %s: validity ends (%s) before it starts (%s)",
			node, notAfter.Format(time.RFC3339), notBefore.Format(time.RFC3339))
	}
	key, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	if err != nil {
		return tls.Certificate{}, fmt.Errorf("generate key for %s: %w", node, err)
	}
	serial, err := randomSerial()
	if err != nil {
		return tls.Certificate{}, err
	}
	tmpl := &x509.Certificate{
		SerialNumber:   serial,
		Subject:        pkix.Name{CommonName: node, Organization: []string{"capsec"}},
		DNSNames:       []string{node},
		IPAddresses:    ips,
		NotBefore:      notBefore,
		NotAfter:       notAfter,
		KeyUsage:       x509.KeyUsageDigitalSignature,
		ExtKeyUsage:    []x509.ExtKeyUsage{x509.ExtKeyUsageServerAuth, x509.ExtKeyUsageClientAuth},
		SubjectKeyId:   keyID(&key.PublicKey),
		AuthorityKeyId: ca.Cert.SubjectKeyId,
	}
	der, err := x509.CreateCertificate(rand.Reader, tmpl, ca.Cert, &key.PublicKey, ca.Key)
	if err != nil {
		return tls.Certificate{}, fmt.Errorf("sign certificate for %s: %w", node, err)
	}
	leaf, err := x509.ParseCertificate(der)
	if err != nil {
		return tls.Certificate{}, fmt.Errorf("parse certificate for %s: %w", node, err)
	}
	return tls.Certificate{Certificate: [][]byte{der}, PrivateKey: key, Leaf: leaf}, nil
}

// InitCA creates a new CA in dir (created 0700 if missing) as ca.pem and
// ca.key (0600). It refuses to overwrite an existing CA, because doing so
// would silently invalidate every node certificate already issued.
func InitCA(dir string) error {
	for _, name := range []string{CACertFile, CAKeyFile} {
		if _, err := os.Lstat(filepath.Join(dir, name)); err == nil {
			return fmt.Errorf("init CA in %s: %s already exists (refusing to overwrite an existing CA): %w",
				dir, name, fs.ErrExist)
		}
	}
	ca, err := NewCA()
	if err != nil {
		return err
	}
	if err := os.MkdirAll(dir, 0o700); err != nil {
		return fmt.Errorf("init CA: create %s: %w", dir, err)
	}
	keyPEM, err := encodeKey(ca.Key)
	if err != nil {
		return err
	}
	return writePair(dir, CACertFile, encodeCert(ca.Cert.Raw), CAKeyFile, keyPEM)
}

// LoadCA reads ca.pem and ca.key from dir.
func LoadCA(dir string) (*CA, error) {
	pair, err := tls.LoadX509KeyPair(filepath.Join(dir, CACertFile), filepath.Join(dir, CAKeyFile))
	if err != nil {
		return nil, fmt.Errorf("load CA from %s: %w", dir, err)
	}
	key, ok := pair.PrivateKey.(*ecdsa.PrivateKey)
	if !ok {
		return nil, fmt.Errorf("load CA from %s: key is %T, want ECDSA", dir, pair.PrivateKey)
	}
	if !pair.Leaf.IsCA {
		return nil, fmt.Errorf("load CA from %s: %s is not a CA certificate", dir, CACertFile)
	}
	return &CA{Cert: pair.Leaf, Key: key}, nil
}

// IssueNode signs a certificate for node with the CA in caDir and writes
// <node>.pem and <node>.key (0600) into outDir (created 0700 if missing).
// Existing files are never overwritten: remove them first to re-issue.
func IssueNode(caDir, node, outDir string, validity time.Duration, ips []net.IP) error {
	if err := ValidateNodeName(node); err != nil {
		return err
	}
	if validity <= 0 {
		return fmt.Errorf("issue certificate for %s: validity %s must be positive", node, validity)
	}
	certName, keyName := node+".pem", node+".key"
	for _, name := range []string{certName, keyName} {
		if _, err := os.Lstat(filepath.Join(outDir, name)); err == nil {
			return fmt.Errorf("issue certificate for %s: %s already exists in %s (remove it to re-issue): %w",
				node, name, outDir, fs.ErrExist)
		}
	}
	ca, err := LoadCA(caDir)
	if err != nil {
		return err
	}
	now := time.Now()
	pair, err := ca.Issue(node, now.Add(-clockSkew), now.Add(validity), ips...)
	if err != nil {
		return err
	}
	if err := os.MkdirAll(outDir, 0o700); err != nil {
		return fmt.Errorf("issue certificate for %s: create %s: %w", node, outDir, err)
	}
	keyPEM, err := encodeKey(pair.PrivateKey.(*ecdsa.PrivateKey))
	if err != nil {
		return err
	}
	return writePair(outDir, certName, encodeCert(pair.Certificate[0]), keyName, keyPEM)
}

// writePair writes a certificate and its key with O_EXCL, removing both if
// either fails so that no half-written identity is left behind.
func writePair(dir, certName string, certPEM []byte, keyName string, keyPEM []byte) error {
	keyPath, certPath := filepath.Join(dir, keyName), filepath.Join(dir, certName)
	if err := writeExclusive(keyPath, keyPEM, 0o600); err != nil {
		return err
	}
	if err := writeExclusive(certPath, certPEM, 0o644); err != nil {
		return errors.Join(err, os.Remove(keyPath))
	}
	return nil
}

func writeExclusive(path string, data []byte, perm fs.FileMode) error {
	f, err := os.OpenFile(path, os.O_WRONLY|os.O_CREATE|os.O_EXCL, perm)
	if err != nil {
		return fmt.Errorf("create %s: %w", path, err)
	}
	if _, err := f.Write(data); err != nil {
		f.Close()
		return errors.Join(fmt.Errorf("write %s: %w", path, err), os.Remove(path))
	}
	if err := f.Close(); err != nil {
		return errors.Join(fmt.Errorf("close %s: %w", path, err), os.Remove(path))
	}
	return nil
}

func encodeCert(der []byte) []byte {
	return pem.EncodeToMemory(&pem.Block{Type: "CERTIFICATE", Bytes: der})
}

func encodeKey(key *ecdsa.PrivateKey) ([]byte, error) {
	der, err := x509.MarshalPKCS8PrivateKey(key)
	if err != nil {
		return nil, fmt.Errorf("encode private key: %w", err)
	}
	return pem.EncodeToMemory(&pem.Block{Type: "PRIVATE KEY", Bytes: der}), nil
}

func randomSerial() (*big.Int, error) {
	serial, err := rand.Int(rand.Reader, new(big.Int).Lsh(big.NewInt(1), 127))
	if err != nil {
		return nil, fmt.Errorf("generate certificate serial: %w", err)
	}
	return serial, nil
}

func keyID(pub *ecdsa.PublicKey) []byte {
	der, err := x509.MarshalPKIXPublicKey(pub)
	if err != nil {
		return nil // the SKI is informative only; x509 computes one if empty
	}
	sum := sha256.Sum256(der)
	return sum[:20]
}

// ValidateNodeName accepts lowercase DNS-style names (letters, digits, '-'
// and '.'; up to 63 characters). Node names become file names, TLS server
// names and allow-list entries, so they must be unambiguous in all three.
func ValidateNodeName(node string) error {
	if node == "" || len(node) > 63 {
		return fmt.Errorf("node name %q: must be 1 to 63 characters", node)
	}
	for i := 0; i < len(node); i++ {
		c := node[i]
		ok := c >= 'a' && c <= 'z' || c >= '0' && c <= '9' || c == '-' || c == '.'
		if !ok {
			return fmt.Errorf("node name %q: only lowercase letters, digits, '-' and '.' are allowed", node)
		}
	}
	first, last := node[0], node[len(node)-1]
	if first == '-' || first == '.' || last == '-' || last == '.' {
		return fmt.Errorf("node name %q: must start and end with a letter or digit", node)
	}
	for i := 1; i < len(node); i++ {
		if node[i] == '.' && node[i-1] == '.' {
			return fmt.Errorf("node name %q: empty label", node)
		}
	}
	if net.ParseIP(node) != nil {
		// TLS would match an IP-shaped server name against IP SANs, not the node name.
		return fmt.Errorf("node name %q: must not be an IP address", node)
	}
	return nil
}
