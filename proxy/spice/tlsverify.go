package spice

import (
	"crypto/tls"
	"crypto/x509"
	"errors"
	"fmt"
	"strings"

	"github.com/spiceharness/spiceharness/internal/pki"
)

// ErrHostSubject: the server certificate's subject is not the expected
// host-subject.
var ErrHostSubject = errors.New("spice: certificate subject does not match host-subject")

// NormalizeHostSubject trims the optional space after each comma that
// spice-gtk tolerates.
func NormalizeHostSubject(s string) string {
	parts := strings.Split(s, ",")
	for i, p := range parts {
		parts[i] = strings.TrimSpace(p)
	}
	return strings.Join(parts, ",")
}

// TLSConfig returns a client TLS config that verifies like spice-gtk: the
// chain must lead to roots (nil: the system pool); then, when hostSubject
// is set, the leaf's subject must equal it exactly, completely and in
// order (it replaces the host name check); otherwise the leaf must be
// valid for serverName (subjectAltName DNS or IP).
func TLSConfig(roots *x509.CertPool, serverName, hostSubject string) *tls.Config {
	want := NormalizeHostSubject(hostSubject)
	return &tls.Config{
		MinVersion: tls.VersionTLS12,
		ServerName: serverName,
		// Verification is done below, with spice-gtk's host-subject rule.
		InsecureSkipVerify: true,
		VerifyConnection: func(cs tls.ConnectionState) error {
			if len(cs.PeerCertificates) == 0 {
				return errors.New("spice: server sent no certificate")
			}
			opts := x509.VerifyOptions{Roots: roots, Intermediates: x509.NewCertPool()}
			for _, c := range cs.PeerCertificates[1:] {
				opts.Intermediates.AddCert(c)
			}
			if want == "" {
				opts.DNSName = serverName
			}
			leaf := cs.PeerCertificates[0]
			if _, err := leaf.Verify(opts); err != nil {
				return fmt.Errorf("spice: certificate: %w", err)
			}
			if want != "" {
				if got := pki.HostSubject(leaf); got != want {
					return fmt.Errorf("%w: certificate has %q, want %q", ErrHostSubject, got, want)
				}
			}
			return nil
		},
	}
}
