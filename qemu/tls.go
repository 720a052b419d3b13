package qemu

import (
	"crypto/x509/pkix"
	"fmt"
	"net"
	"path/filepath"
	"strings"

	"github.com/spiceharness/spiceharness/internal/pki"
)

// CA is a certificate authority for SPICE TLS: TLS issues each VM's
// server certificate from it. Make one with NewCA. Its fields are the
// CA certificate (Cert, and CertPEM for a client's ca-file or a
// sources.yaml ca_cert); Pool returns a cert pool holding only it. The
// key never leaves memory.
type CA = pki.CA

// NewCA creates a self-signed CA named commonName (subject
// O=spice-harness,CN=commonName; ECDSA P-256; valid 7 days) to pass to
// TLS. One CA can serve many VMs.
func NewCA(commonName string) (*CA, error) { return pki.NewCA(commonName) }

// TLS turns on SPICE TLS: Start issues a server certificate from ca
// (subject O=spice-harness,CN=localhost; SANs localhost, 127.0.0.1, the
// SPICE address and TLSNames), writes a per-VM x509 dir and listens on a
// TLS port as well. The Endpoint's TLSPort and HostSubject are set accordingly.
// Direct backend only: on libvirt, Start fails with an error matching
// ErrUnsupported (and ErrInvalidConfig); a libvirt host's own TLS is
// HostTLS.
func TLS(ca *CA) Option {
	return func(c *config) error {
		if ca == nil {
			return configErr("TLS", "<nil>", "needs a CA")
		}
		c.tlsCA = ca
		return nil
	}
}

// TLSPort fixes the TLS SPICE port (default 0: picked like SPICEPort).
// It needs TLS.
func TLSPort(port int) Option {
	return func(c *config) error {
		if port < 0 || port > 65535 {
			return configErr("TLSPort", port, "want 0..65535")
		}
		c.tlsPort = port
		return nil
	}
}

// TLSNames adds names to the server certificate TLS issues, next to
// localhost, 127.0.0.1 and the SPICE address: DNS names (a wildcard
// "*.tunnel.example" matches one label, as spice-gtk checks it) or IP
// addresses. Clients that check the host name instead of a host-subject
// (spicy-screenshot) need one when they reach qemu under another name,
// such as a CONNECT proxy's signed tunnel host. It needs TLS.
func TLSNames(names ...string) Option {
	return func(c *config) error {
		for _, n := range names {
			if !validCertName(n) {
				return configErr("TLSNames", n, "want a DNS name (labels of letters, digits and '-'; a leading \"*.\" for a wildcard) or an IP address")
			}
		}
		c.tlsNames = append(c.tlsNames, names...)
		return nil
	}
}

func validCertName(n string) bool {
	if net.ParseIP(n) != nil {
		return true
	}
	n = strings.TrimPrefix(n, "*.")
	if n == "" || len(n) > 253 {
		return false
	}
	for _, l := range strings.Split(n, ".") {
		if l == "" || len(l) > 63 || l[0] == '-' || l[len(l)-1] == '-' {
			return false
		}
		for _, r := range l {
			if !(r >= 'a' && r <= 'z' || r >= 'A' && r <= 'Z' || r >= '0' && r <= '9' || r == '-') {
				return false
			}
		}
	}
	return true
}

// writeX509 issues the VM's server certificate and writes qemu's x509
// dir. The dir is readable only by this user; the CA key never leaves
// memory.
func (p *Process) writeX509() error {
	subject := pkix.Name{Organization: []string{"spice-harness"}, CommonName: "localhost"}
	hosts := []string{"localhost", "127.0.0.1"}
	if p.cfg.spiceAddr != "127.0.0.1" {
		hosts = append(hosts, p.cfg.spiceAddr)
	}
	hosts = append(hosts, p.cfg.tlsNames...)
	leaf, err := p.cfg.tlsCA.Issue(subject, hosts...)
	if err != nil {
		return fmt.Errorf("qemu: TLS: %w", err)
	}
	if err := p.cfg.tlsCA.WriteQemuDir(filepath.Join(p.stateDir, x509DirName), leaf); err != nil {
		return fmt.Errorf("qemu: TLS: %w", err)
	}
	p.core.mu.Lock()
	p.core.ep.HostSubject = pki.HostSubject(leaf.Cert)
	p.core.mu.Unlock()
	return nil
}
