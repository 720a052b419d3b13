package scenarios

import (
	"context"
	"crypto/tls"
	"crypto/x509"
	"encoding/pem"
	"regexp"
	"strconv"

	"github.com/spiceharness/spiceharness/harness"
	"github.com/spiceharness/spiceharness/internal/pki"
)

func init() {
	Register(Scenario{
		Name:        "vv-proxy-fields",
		Description: "the proxy console.vv points at the proxy with a fresh token, its CA and exact host-subject",
		Run: func(ctx context.Context, t harness.T, env *harness.Env) {
			vm := env.VM(0)
			f, err := env.FetchVV(ctx, harness.Proxy, vm)
			check(t, err, "fetch proxy .vv")
			for h, want := range map[string]string{
				"Content-Type":        "application/x-virt-viewer",
				"Content-Disposition": `attachment; filename="console.vv"`,
				"Cache-Control":       "no-store",
			} {
				if got := f.Header.Get(h); got != want {
					t.Errorf("unexpected %s (-want +got):\n-%s\n+%s", h, want, got)
				}
			}
			if f.Type != "spice" || !f.DeleteThisFile {
				t.Errorf("type=%q delete-this-file=%v, want spice and 1", f.Type, f.DeleteThisFile)
			}
			if !regexp.MustCompile(`^[A-Za-z0-9]{48}$`).MatchString(f.Password) {
				t.Errorf("password is not a 48-character [A-Za-z0-9] token (length %d)", len(f.Password))
			}
			if f.Password == vm.Console().Ticket {
				t.Errorf("the proxy .vv carries the console's own ticket")
			}
			name := regexp.QuoteMeta(vm.Console().Name)
			if !regexp.MustCompile(`^` + name + ` via proxy session [A-Za-z0-9]+$`).MatchString(f.Title) {
				t.Errorf("title %q is not %q", f.Title, vm.Console().Name+" via proxy session <id>")
			}
			if f.Port == 0 || f.TLSPort == 0 || f.Port == vm.Console().InsecurePort {
				t.Errorf("port=%d tls-port=%d: want the proxy's listeners, not qemu's %d", f.Port, f.TLSPort, vm.Console().InsecurePort)
			}
			if env.Proxy != nil {
				if f.Port != env.Proxy.PlainAddr().Port || f.TLSPort != env.Proxy.TLSAddr().Port {
					t.Errorf("ports %d/%d, proxy listens on %v/%v", f.Port, f.TLSPort, env.Proxy.PlainAddr(), env.Proxy.TLSAddr())
				}
			}
			// ca holds a CA certificate, and the proxy's TLS certificate
			// chains to it and has exactly the advertised subject.
			block, _ := pem.Decode([]byte(f.CA))
			if block == nil {
				t.Fatalf("ca= is not PEM")
			}
			ca, err := x509.ParseCertificate(block.Bytes)
			check(t, err, "parse ca=")
			if !ca.IsCA {
				t.Errorf("ca= is not a CA certificate")
			}
			conn, err := tls.Dial("tcp", f.Host+":"+strconv.Itoa(f.TLSPort), &tls.Config{InsecureSkipVerify: true})
			check(t, err, "TLS dial of the proxy")
			defer conn.Close()
			leaf := conn.ConnectionState().PeerCertificates[0]
			pool := x509.NewCertPool()
			pool.AddCert(ca)
			if _, err := leaf.Verify(x509.VerifyOptions{Roots: pool}); err != nil {
				t.Errorf("proxy certificate does not chain to the .vv's ca: %v", err)
			}
			if got := pki.HostSubject(leaf); got != f.HostSubject {
				t.Errorf("unexpected host-subject (-want +got):\n-%s\n+%s", got, f.HostSubject)
			}
			// Every fetch mints a new token.
			g, err := env.FetchVV(ctx, harness.Proxy, vm)
			check(t, err, "second fetch")
			if g.Password == f.Password {
				t.Errorf("two fetches returned the same token")
			}
		},
	})
}
