// Package pki makes the throwaway X.509 material a SPICE test lane needs:
// an ephemeral CA, server certificates it signs (for qemu's x509 dir and
// for the proxy's TLS listener), and certificate subjects rendered in the
// exact, ordered form spice-gtk's host-subject check expects.
//
// Keys are ECDSA P-256: fast to generate, accepted by spice-gtk and
// spice-server's OpenSSL. (The RSA-1024 keys of the SPICE ticket exchange
// have nothing to do with TLS and live in package spice.)
package pki

import (
	"crypto"
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/tls"
	"crypto/x509"
	"crypto/x509/pkix"
	"encoding/asn1"
	"encoding/pem"
	"errors"
	"fmt"
	"math/big"
	"net"
	"os"
	"path/filepath"
	"strings"
	"time"
)

// Validity of everything this package issues.
const Validity = 7 * 24 * time.Hour

// CA is a certificate authority whose key never leaves memory.
type CA struct {
	Cert    *x509.Certificate
	CertPEM []byte
	key     crypto.Signer
}

// Leaf is a server certificate and its key.
type Leaf struct {
	Cert    *x509.Certificate
	CertPEM []byte
	KeyPEM  []byte
	// TLS is ready for tls.Config.Certificates (chain: leaf only).
	TLS tls.Certificate
}

// NewCA creates a self-signed CA named commonName.
func NewCA(commonName string) (*CA, error) {
	key, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	if err != nil {
		return nil, fmt.Errorf("pki: CA key: %w", err)
	}
	now := time.Now()
	tmpl := &x509.Certificate{
		SerialNumber:          serial(),
		Subject:               pkix.Name{Organization: []string{"spice-harness"}, CommonName: commonName},
		NotBefore:             now.Add(-time.Hour),
		NotAfter:              now.Add(Validity),
		KeyUsage:              x509.KeyUsageCertSign | x509.KeyUsageCRLSign | x509.KeyUsageDigitalSignature,
		BasicConstraintsValid: true,
		IsCA:                  true,
		MaxPathLenZero:        true,
	}
	der, err := x509.CreateCertificate(rand.Reader, tmpl, tmpl, key.Public(), key)
	if err != nil {
		return nil, fmt.Errorf("pki: CA certificate: %w", err)
	}
	cert, err := x509.ParseCertificate(der)
	if err != nil {
		return nil, fmt.Errorf("pki: CA certificate: %w", err)
	}
	return &CA{Cert: cert, CertPEM: pemBlock("CERTIFICATE", der), key: key}, nil
}

// Pool returns a cert pool holding only this CA.
func (ca *CA) Pool() *x509.CertPool {
	p := x509.NewCertPool()
	p.AddCert(ca.Cert)
	return p
}

// Issue signs a server certificate for subject, valid for hosts (DNS
// names or IP addresses, which become subjectAltNames).
func (ca *CA) Issue(subject pkix.Name, hosts ...string) (*Leaf, error) {
	return ca.issue(subject, x509.ExtKeyUsageServerAuth, hosts)
}

// IssueClient signs a client certificate for subject (TLS client
// authentication, as libvirtd's TLS transport asks of its clients).
func (ca *CA) IssueClient(subject pkix.Name) (*Leaf, error) {
	return ca.issue(subject, x509.ExtKeyUsageClientAuth, nil)
}

func (ca *CA) issue(subject pkix.Name, usage x509.ExtKeyUsage, hosts []string) (*Leaf, error) {
	if ca == nil || ca.key == nil {
		return nil, errors.New("pki: Issue on a nil CA")
	}
	key, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	if err != nil {
		return nil, fmt.Errorf("pki: server key: %w", err)
	}
	now := time.Now()
	tmpl := &x509.Certificate{
		SerialNumber: serial(),
		Subject:      subject,
		NotBefore:    now.Add(-time.Hour),
		NotAfter:     now.Add(Validity),
		KeyUsage:     x509.KeyUsageDigitalSignature | x509.KeyUsageKeyEncipherment,
		ExtKeyUsage:  []x509.ExtKeyUsage{usage},
	}
	for _, h := range hosts {
		if ip := net.ParseIP(h); ip != nil {
			tmpl.IPAddresses = append(tmpl.IPAddresses, ip)
		} else {
			tmpl.DNSNames = append(tmpl.DNSNames, h)
		}
	}
	der, err := x509.CreateCertificate(rand.Reader, tmpl, ca.Cert, key.Public(), ca.key)
	if err != nil {
		return nil, fmt.Errorf("pki: server certificate: %w", err)
	}
	cert, err := x509.ParseCertificate(der)
	if err != nil {
		return nil, fmt.Errorf("pki: server certificate: %w", err)
	}
	keyDER, err := x509.MarshalPKCS8PrivateKey(key)
	if err != nil {
		return nil, fmt.Errorf("pki: server key: %w", err)
	}
	return &Leaf{
		Cert:    cert,
		CertPEM: pemBlock("CERTIFICATE", der),
		KeyPEM:  pemBlock("PRIVATE KEY", keyDER),
		TLS:     tls.Certificate{Certificate: [][]byte{der}, PrivateKey: key, Leaf: cert},
	}, nil
}

// WriteQemuDir writes the three files qemu's `-spice x509-dir=DIR` reads:
// ca-cert.pem, server-cert.pem and server-key.pem (mode 0600). The CA key
// is never written.
func (ca *CA) WriteQemuDir(dir string, leaf *Leaf) error {
	if err := os.MkdirAll(dir, 0o700); err != nil {
		return fmt.Errorf("pki: %w", err)
	}
	files := []struct {
		name string
		data []byte
	}{
		{"ca-cert.pem", ca.CertPEM},
		{"server-cert.pem", leaf.CertPEM},
		{"server-key.pem", leaf.KeyPEM},
	}
	for _, f := range files {
		if err := os.WriteFile(filepath.Join(dir, f.name), f.data, 0o600); err != nil {
			return fmt.Errorf("pki: %w", err)
		}
	}
	return nil
}

// shortNames are OpenSSL's short attribute names, the ones spice-gtk's
// host-subject parser compares against.
var shortNames = map[string]string{
	"2.5.4.6":                    "C",
	"2.5.4.8":                    "ST",
	"2.5.4.7":                    "L",
	"2.5.4.9":                    "street",
	"2.5.4.10":                   "O",
	"2.5.4.11":                   "OU",
	"2.5.4.3":                    "CN",
	"2.5.4.5":                    "serialNumber",
	"2.5.4.17":                   "postalCode",
	"0.9.2342.19200300.100.1.25": "DC",
	"0.9.2342.19200300.100.1.1":  "UID",
	"1.2.840.113549.1.9.1":       "emailAddress",
}

// HostSubject renders a certificate's subject the way spice-gtk's
// host-subject check wants it: every RDN attribute in certificate order,
// as `KEY=value`, joined by commas with no spaces
// (e.g. "O=spice-harness,CN=localhost"). The match in spice-gtk is exact,
// complete and order-sensitive.
func HostSubject(cert *x509.Certificate) string {
	var parts []string
	for _, atv := range cert.Subject.Names {
		key, ok := shortNames[atv.Type.String()]
		if !ok {
			key = atv.Type.String()
		}
		parts = append(parts, key+"="+fmt.Sprint(atv.Value))
	}
	return strings.Join(parts, ",")
}

// ParseSubject turns "C=XX,O=Test,CN=host" back into a pkix.Name whose
// encoding keeps that order; used to issue certificates for a given
// host-subject.
func ParseSubject(s string) (pkix.Name, error) {
	var rdns pkix.RDNSequence
	oids := map[string]asn1.ObjectIdentifier{}
	for oid, short := range shortNames {
		oids[short] = parseOID(oid)
	}
	for _, part := range strings.Split(s, ",") {
		k, v, ok := strings.Cut(strings.TrimSpace(part), "=")
		if !ok || k == "" {
			return pkix.Name{}, fmt.Errorf("pki: subject %q: %q is not KEY=value", s, part)
		}
		oid, ok := oids[k]
		if !ok {
			return pkix.Name{}, fmt.Errorf("pki: subject %q: unknown attribute %q", s, k)
		}
		rdns = append(rdns, pkix.RelativeDistinguishedNameSET{{Type: oid, Value: v}})
	}
	var n pkix.Name
	n.FillFromRDNSequence(&rdns)
	// ExtraNames keeps the given order when the certificate is encoded.
	for _, rdn := range rdns {
		n.ExtraNames = append(n.ExtraNames, rdn[0])
	}
	return n, nil
}

func parseOID(s string) asn1.ObjectIdentifier {
	var oid asn1.ObjectIdentifier
	for _, p := range strings.Split(s, ".") {
		var n int
		fmt.Sscan(p, &n)
		oid = append(oid, n)
	}
	return oid
}

func serial() *big.Int {
	n, err := rand.Int(rand.Reader, new(big.Int).Lsh(big.NewInt(1), 120))
	if err != nil {
		panic(err) // crypto/rand never fails on Linux
	}
	return n
}

func pemBlock(typ string, der []byte) []byte {
	return pem.EncodeToMemory(&pem.Block{Type: typ, Bytes: der})
}
