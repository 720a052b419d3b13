package daemon

import (
	"bytes"
	"errors"
	"log/slog"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"
)

// TestStateDirRenewal: a server certificate close to its end is issued
// again from the kept CA with the same subject, so `.vv` files (CA and
// host-subject) stay valid; a damaged CA is not silently replaced.
func TestStateDirRenewal(t *testing.T) {
	dir := filepath.Join(t.TempDir(), "state")
	c := Config{StateDir: dir, ProxyHost: "127.0.0.1"}
	log := slog.New(slog.DiscardHandler)
	now := time.Now()
	m1, err := c.tlsFromStateDir(log, now)
	if err != nil {
		t.Fatal(err)
	}
	m2, err := c.tlsFromStateDir(log, now.Add(time.Hour))
	if err != nil {
		t.Fatal(err)
	}
	if !bytes.Equal(m1.cert.Certificate[0], m2.cert.Certificate[0]) {
		t.Error("a fresh server certificate was issued again")
	}
	later := m1.cert.Leaf.NotAfter.Add(-renewBefore / 2)
	m3, err := c.tlsFromStateDir(log, later)
	if err != nil {
		t.Fatal(err)
	}
	switch {
	case bytes.Equal(m1.cert.Certificate[0], m3.cert.Certificate[0]):
		t.Error("a server certificate two weeks from its end was not issued again")
	case !bytes.Equal(m1.caPEM, m3.caPEM):
		t.Error("renewing the server certificate changed the CA")
	case m3.cert.Leaf.Subject.String() != m1.cert.Leaf.Subject.String():
		t.Errorf("renewal changed the subject: %s, was %s", m3.cert.Leaf.Subject, m1.cert.Leaf.Subject)
	case m3.cert.Leaf.NotAfter.Before(later.Add(leafValidity - time.Hour)):
		t.Errorf("the renewed certificate ends %v", m3.cert.Leaf.NotAfter)
	}

	if err := os.WriteFile(filepath.Join(dir, StateCAFile), []byte("garbage"), 0o644); err != nil {
		t.Fatal(err)
	}
	c.Names = map[Setting]string{SettingStateDir: "--state-dir"}
	_, err = c.tlsFromStateDir(log, now)
	if !errors.Is(err, ErrConfig) || !strings.Contains(err.Error(), "--state-dir "+dir+": proxy-ca.pem is unreadable") {
		t.Errorf("damaged CA: %v", err)
	}
	if err := os.Remove(filepath.Join(dir, StateCAFile)); err != nil {
		t.Fatal(err)
	}
	if _, err = c.tlsFromStateDir(log, now); !errors.Is(err, ErrConfig) || !strings.Contains(err.Error(), "the proxy CA is incomplete") {
		t.Errorf("CA key without its certificate: %v", err)
	}
}
