package proxy

import (
	"crypto/tls"
	"crypto/x509"
	"sync"
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
