package proxy

// The TLS listener's certificate (generated, given, or replaced while the
// proxy runs) and the CA pools of the sources' hypervisors.

import (
	"crypto/tls"
	"crypto/x509"
	"crypto/x509/pkix"
	"errors"
	"fmt"
	"sync"

	"github.com/spiceharness/spiceharness/internal/pki"
)

func parseLeaf(c *tls.Certificate) error {
	leaf, err := x509.ParseCertificate(c.Certificate[0])
	if err != nil {
		return err
	}
	c.Leaf = leaf
	return nil
}

// caPools caches parsed CA bundles of sources (PEM → pool).
var caPools sync.Map

func caPool(pem string) *x509.CertPool {
	if pem == "" {
		return nil // system roots
	}
	if p, ok := caPools.Load(pem); ok {
		return p.(*x509.CertPool)
	}
	pool := x509.NewCertPool()
	pool.AppendCertsFromPEM([]byte(pem))
	caPools.Store(pem, pool)
	return pool
}

func (p *Proxy) initTLS() error {
	if p.Certificate == nil {
		ca, err := pki.NewCA("spice-harness proxy CA")
		if err != nil {
			return err
		}
		leaf, err := ca.Issue(pkix.Name{Organization: []string{"spice-harness"}, CommonName: "spice-harness proxy"}, "localhost", "127.0.0.1", "::1")
		if err != nil {
			return err
		}
		p.Certificate, p.CACertPEM = &leaf.TLS, ca.CertPEM
	}
	sc, err := newServedCert(p.Certificate, p.CACertPEM)
	if err != nil {
		return err
	}
	p.served.Store(sc)
	p.tlsConf = &tls.Config{MinVersion: tls.VersionTLS12,
		GetCertificate: func(*tls.ClientHelloInfo) (*tls.Certificate, error) { return p.served.Load().cert, nil }}
	return nil
}

// servedCert is a certificate the TLS listener presents, with what `.vv`
// files say about it.
type servedCert struct {
	cert  *tls.Certificate
	caPEM []byte
	host  string // host subject, spice-gtk's form
}

func newServedCert(cert *tls.Certificate, caPEM []byte) (*servedCert, error) {
	if cert == nil || len(cert.Certificate) == 0 || cert.PrivateKey == nil {
		return nil, errors.New("proxy: certificate: no certificate or no key")
	}
	c := *cert
	if c.Leaf == nil {
		if err := parseLeaf(&c); err != nil {
			return nil, fmt.Errorf("proxy: certificate: %w", err)
		}
	}
	return &servedCert{cert: &c, caPEM: caPEM, host: pki.HostSubject(c.Leaf)}, nil
}

// SetCertificate makes the TLS listener present cert from the next
// handshake on, and `.vv` files name caPEM and cert's subject; sessions
// already open keep the TLS session they have. For a certificate rotated
// on disk: nothing is dropped. Fields Certificate and CACertPEM keep what
// the proxy started with.
func (p *Proxy) SetCertificate(cert *tls.Certificate, caPEM []byte) error {
	if p.init(); p.initErr != nil {
		return p.initErr
	}
	sc, err := newServedCert(cert, caPEM)
	if err != nil {
		return err
	}
	p.served.Store(sc)
	return nil
}

// HostSubject is the served TLS certificate's subject in spice-gtk's
// host-subject form (for `.vv` files).
func (p *Proxy) HostSubject() string {
	if p.init(); p.initErr != nil {
		return ""
	}
	return p.served.Load().host
}

// CAPEM is the PEM of the CA clients should trust for the served
// certificate.
func (p *Proxy) CAPEM() []byte {
	if p.init(); p.initErr != nil {
		return nil
	}
	return p.served.Load().caPEM
}

// ServedCertificate is the certificate the TLS listener presents now.
func (p *Proxy) ServedCertificate() *tls.Certificate {
	cert, _, _ := p.Served()
	return cert
}

// Served is the certificate the TLS listener presents now with its CA
// and host subject, read together: a SetCertificate meanwhile cannot
// mix two certificates' facts (a .vv's ca= and host-subject=).
func (p *Proxy) Served() (cert *tls.Certificate, caPEM []byte, hostSubject string) {
	if p.init(); p.initErr != nil {
		return nil, nil, ""
	}
	sc := p.served.Load()
	return sc.cert, sc.caPEM, sc.host
}
