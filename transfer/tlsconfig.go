package transfer

import (
	"crypto/tls"
	"crypto/x509"
	"errors"
	"fmt"
	"os"
	"slices"
	"time"
)

// ALPN is the application protocol agents negotiate; a peer speaking anything
// else fails the handshake.
const ALPN = "capsec/1"

// Identity is this node's certificate and the operator CA it trusts.
type Identity struct {
	Node  string
	Cert  tls.Certificate
	Roots *x509.CertPool
}

// LoadIdentity loads a node certificate and key and the operator CA, and
// checks up front what a peer would otherwise refuse later with a vaguer
// message: the certificate is for node, signed by the CA and not expired.
func LoadIdentity(node, certFile, keyFile, caFile string) (*Identity, error) {
	if err := ValidateNodeName(node); err != nil {
		return nil, err
	}
	pair, err := tls.LoadX509KeyPair(certFile, keyFile)
	if err != nil {
		return nil, fmt.Errorf("load identity %s: %w", node, err)
	}
	caPEM, err := os.ReadFile(caFile)
	if err != nil {
		return nil, fmt.Errorf("load identity %s: read CA: %w", node, err)
	}
	roots := x509.NewCertPool()
	if !roots.AppendCertsFromPEM(caPEM) {
		return nil, fmt.Errorf("load identity %s: %s holds no PEM certificate", node, caFile)
	}
	id := &Identity{Node: node, Cert: pair, Roots: roots}
	if err := id.check(time.Now()); err != nil {
		return nil, fmt.Errorf("load identity %s from %s: %w", node, certFile, err)
	}
	return id, nil
}

// check verifies that the identity's certificate names id.Node and chains to
// id.Roots for both TLS roles at time now.
func (id *Identity) check(now time.Time) error {
	leaf := id.Cert.Leaf
	if leaf == nil {
		if len(id.Cert.Certificate) == 0 {
			return errors.New("no certificate")
		}
		var err error
		if leaf, err = x509.ParseCertificate(id.Cert.Certificate[0]); err != nil {
			return fmt.Errorf("parse certificate: %w", err)
		}
	}
	got, err := CertNode(leaf)
	if err != nil {
		return err
	}
	if got != id.Node {
		return fmt.Errorf("certificate is for node %s, not %s", got, id.Node)
	}
	inter := x509.NewCertPool()
	for _, der := range id.Cert.Certificate[1:] {
		if c, err := x509.ParseCertificate(der); err == nil {
			inter.AddCert(c)
		}
	}
	for _, usage := range []x509.ExtKeyUsage{x509.ExtKeyUsageServerAuth, x509.ExtKeyUsageClientAuth} {
		_, err := leaf.Verify(x509.VerifyOptions{
			Roots: id.Roots, Intermediates: inter, CurrentTime: now, KeyUsages: []x509.ExtKeyUsage{usage},
		})
		if err != nil {
			return fmt.Errorf("certificate does not verify against the CA: %s: %w", describeX509(err), err)
		}
	}
	return nil
}

// CertNode returns the node name a certificate stands for: its Common Name,
// which must also be one of its DNS SANs when it has any (so that the name a
// client dials and the name a server allows are the same), or its only DNS
// SAN when the CN is empty.
func CertNode(c *x509.Certificate) (string, error) {
	cn := c.Subject.CommonName
	switch {
	case cn != "" && (len(c.DNSNames) == 0 || slices.Contains(c.DNSNames, cn)):
		return cn, nil
	case cn == "" && len(c.DNSNames) == 1:
		return c.DNSNames[0], nil
	case cn == "":
		return "", fmt.Errorf("certificate (serial %s) names no node: empty CN and %d DNS SANs",
			c.SerialNumber, len(c.DNSNames))
	}
	return "", fmt.Errorf("certificate for %q does not list its CN among its DNS SANs %v", cn, c.DNSNames)
}

// ServerTLS is the listener side of mutual TLS: TLS 1.3, ALPN, a client
// certificate signed by id.Roots, and a client node in allowed. An empty
// allowed list refuses everyone: trust is granted per named peer, never by
// default. Session tickets are off so that every connection is checked
// against the current certificate and allow list.
func ServerTLS(id *Identity, allowed []string) *tls.Config {
	allow := make(map[string]bool, len(allowed))
	for _, n := range allowed {
		allow[n] = true
	}
	return &tls.Config{
		MinVersion:             tls.VersionTLS13,
		Certificates:           []tls.Certificate{id.Cert},
		ClientAuth:             tls.RequireAndVerifyClientCert,
		ClientCAs:              id.Roots,
		NextProtos:             []string{ALPN},
		SessionTicketsDisabled: true,
		// The standard checks (chain to ClientCAs, validity, ClientAuth usage)
		// have passed when this runs; what is left is who the client is.
		VerifyConnection: func(cs tls.ConnectionState) error {
			if len(cs.VerifiedChains) == 0 || len(cs.PeerCertificates) == 0 {
				return &PeerRefusedError{Reason: "sent no verified client certificate"}
			}
			node, err := CertNode(cs.PeerCertificates[0])
			if err != nil {
				return &PeerRefusedError{Reason: err.Error()}
			}
			if !allow[node] {
				return &PeerRefusedError{Peer: node, Reason: "is not in the allowed peers"}
			}
			return nil
		},
	}
}

// ClientTLS is the dialing side of mutual TLS: it presents id's certificate
// and accepts only a server whose certificate is from id.Roots and names
// peerNode.
func ClientTLS(id *Identity, peerNode string) *tls.Config {
	return &tls.Config{
		MinVersion:   tls.VersionTLS13,
		Certificates: []tls.Certificate{id.Cert},
		RootCAs:      id.Roots,
		ServerName:   peerNode,
		NextProtos:   []string{ALPN},
		// Go has already checked that peerNode is among the DNS SANs; this
		// also insists that the certificate's own node name is peerNode.
		VerifyConnection: func(cs tls.ConnectionState) error {
			if len(cs.PeerCertificates) == 0 {
				return &PeerRefusedError{Peer: peerNode, Reason: "sent no certificate"}
			}
			node, err := CertNode(cs.PeerCertificates[0])
			if err != nil {
				return &PeerRefusedError{Reason: err.Error()}
			}
			if node != peerNode {
				return &PeerRefusedError{Peer: node, Reason: "answered, but we dialed " + peerNode}
			}
			return nil
		},
	}
}

// describeX509 names the common certificate failures in operator words.
func describeX509(err error) string {
	if _, ok := errors.AsType[x509.UnknownAuthorityError](err); ok {
		return "certificate signed by unknown authority"
	}
	if ci, ok := errors.AsType[x509.CertificateInvalidError](err); ok {
		switch ci.Reason {
		case x509.Expired:
			return "certificate expired or not yet valid"
		case x509.IncompatibleUsage:
			return "certificate not valid for both TLS server and client use"
		}
	}
	return "invalid certificate"
}
