package main

import (
	"bytes"
	"context"
	"crypto/rand"
	"crypto/x509"
	"net/http"
	"os"
	"path/filepath"
	"time"

	"github.com/spiceharness/spiceharness/proxy/spice"
	"github.com/spiceharness/spiceharness/proxy/spice/spicetest"
	"github.com/spiceharness/spiceharness/static"
)

const (
	benchSource = "bench"
	benchUUID   = "5e1c0000-0000-4000-8000-000000000001"
)

// randomTicket is a fresh 26-character ticket (kept in memory and in
// the 0600 sources.yaml only).
func randomTicket() string { return rand.Text() }

// synthetic is a proxy-helper process in front of a synthetic SPICE
// backend, reachable through the helper's `.vv` API.
type synthetic struct {
	dir    string
	helper *helper
	http   *http.Client
	ca     *x509.CertPool
}

// startSynthetic writes a sources.yaml with one console at srv (already
// started, with its Password) and starts a proxy-helper serving it: this
// binary, or helperBin (another build of it, for A/B comparisons), with
// extra args.
func startSynthetic(ctx context.Context, srv *spicetest.Server, helperBin string, args ...string) (*synthetic, error) {
	dir, err := os.MkdirTemp("", "spice-bench-")
	if err != nil {
		return nil, err
	}
	s := &synthetic{dir: dir, http: &http.Client{Timeout: 30 * time.Second}}
	src := static.Source{Name: benchSource, Type: static.TypeStatic, Consoles: []static.Console{{
		UUID: benchUUID, Name: "synthetic", Hypervisor: "localhost", HypervisorIP: "127.0.0.1",
		InsecurePort: srv.Port(), Ticket: srv.Password,
	}}}
	var buf bytes.Buffer
	if err := static.Emit(&buf, []static.Source{src}); err != nil {
		s.Close()
		return nil, err
	}
	sources := filepath.Join(dir, "sources.yaml")
	if err := os.WriteFile(sources, buf.Bytes(), 0o600); err != nil {
		s.Close()
		return nil, err
	}
	if s.helper, err = startHelper(ctx, sources, helperBin, args...); err != nil {
		s.Close()
		return nil, err
	}
	pem, err := os.ReadFile(s.helper.CAFile)
	if err != nil {
		s.Close()
		return nil, err
	}
	s.ca = x509.NewCertPool()
	s.ca.AppendCertsFromPEM(pem)
	// The proxy fills its RSA key pool right after it starts (32 keys,
	// ~0.3 s of CPU): let it finish before anything is measured.
	time.Sleep(time.Second)
	return s, nil
}

// dialer fetches a proxy `.vv` (a fresh one-session token) and returns a
// Go client for the proxy's plain or TLS listener.
func (s *synthetic) dialer(ctx context.Context, secure bool) (*spice.Dialer, error) {
	return fetchProxyDialer(ctx, s.http, s.helper.API, benchSource, benchUUID, secure)
}

// Close stops the helper and removes the state dir.
func (s *synthetic) Close() error {
	var err error
	if s.helper != nil {
		err = s.helper.Close()
	}
	os.RemoveAll(s.dir)
	return err
}
