package static

import (
	"crypto/ed25519"
	"crypto/rand"
	"crypto/x509"
	"crypto/x509/pkix"
	"encoding/pem"
	"math/big"
	"sync"
	"testing"
	"time"
)

var (
	certsOnce sync.Once
	certsPEM  []string
	certsErr  error
)

// testCerts returns two self-signed CA certificates in PEM, made once.
func testCerts(t testing.TB) []string {
	t.Helper()
	certsOnce.Do(func() {
		for i, cn := range []string{"test CA one", "test CA two"} {
			pub, key, err := ed25519.GenerateKey(rand.Reader)
			if err != nil {
				certsErr = err
				return
			}
			tmpl := &x509.Certificate{
				SerialNumber:          big.NewInt(int64(i + 1)),
				Subject:               pkix.Name{CommonName: cn, Organization: []string{"spice-harness"}},
				NotBefore:             time.Unix(0, 0),
				NotAfter:              time.Unix(0, 0).AddDate(200, 0, 0),
				IsCA:                  true,
				BasicConstraintsValid: true,
				KeyUsage:              x509.KeyUsageCertSign,
			}
			der, err := x509.CreateCertificate(rand.Reader, tmpl, tmpl, pub, key)
			if err != nil {
				certsErr = err
				return
			}
			certsPEM = append(certsPEM, string(pem.EncodeToMemory(&pem.Block{Type: "CERTIFICATE", Bytes: der})))
		}
	})
	if certsErr != nil {
		t.Fatalf("making test certificates: %v", certsErr)
	}
	return certsPEM
}
