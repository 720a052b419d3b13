package scenarios

import (
	"context"
	"crypto/tls"
	"crypto/x509"
	"encoding/pem"
	"net"
	"strconv"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"

	"github.com/spiceharness/spiceharness/harness"
	"github.com/spiceharness/spiceharness/internal/pki"
)

func init() {
	Register(Scenario{
		Name:      "vv-proxy-fields",
		Tier:      Core,
		Exercises: ProxyAPI,
		Description: "the proxy console.vv has what virt-viewer and spice-gtk need: type spice, a host and ports where the proxy answers, " +
			"a fresh credential that is not qemu's ticket, and with TLS a CA the proxy's certificate chains to and a host-subject (or SAN) it matches",
		Requires: []harness.Capability{harness.CapTerminatesSPICE},
		Run: func(ctx context.Context, t harness.T, env *harness.Env) {
			vm := env.VM(0)
			f, err := env.FetchVV(ctx, harness.Proxy, vm)
			require.NoError(t, err, "fetch proxy .vv")
			assert.Equal(t, "spice", f.Type, "type=")
			require.NotEmpty(t, f.Host, "host=")
			require.True(t, f.Port != 0 || f.TLSPort != 0, "the .vv has neither port= nor tls-port=")
			assert.NotEmpty(t, f.Password, "password=")
			assert.NotEqual(t, vm.Console().Ticket, f.Password, "the proxy .vv carries the console's own ticket")
			// host may be a name: it must resolve, as clients resolve it.
			addrs, err := net.DefaultResolver.LookupHost(ctx, f.Host)
			require.NoError(t, err, "resolve host=%s", f.Host)
			t.Logf("host=%s resolves to %v", f.Host, addrs)
			if f.Port != 0 {
				c, err := net.Dial("tcp", net.JoinHostPort(f.Host, strconv.Itoa(f.Port)))
				require.NoError(t, err, "connect to port=")
				c.Close()
			}
			if f.TLSPort != 0 {
				checkProxyTLS(t, f)
			}
			// Every fetch mints a new credential.
			g, err := env.FetchVV(ctx, harness.Proxy, vm)
			require.NoError(t, err, "second fetch")
			assert.NotEqual(t, f.Password, g.Password, "two fetches returned the same credential")
		},
	})
}

// checkProxyTLS checks what spice-gtk checks on the `.vv`'s tls-port: the
// certificate chains to ca=, and matches host-subject= exactly when it is
// set, else the host name or IP in its subjectAltName.
func checkProxyTLS(t harness.T, f *harness.VVResponse) {
	t.Helper()
	block, _ := pem.Decode([]byte(f.CA))
	require.NotNil(t, block, "ca= is not PEM (a tls-port without a CA cannot be verified)")
	ca, err := x509.ParseCertificate(block.Bytes)
	require.NoError(t, err, "parse ca=")
	conn, err := tls.Dial("tcp", net.JoinHostPort(f.Host, strconv.Itoa(f.TLSPort)), &tls.Config{InsecureSkipVerify: true})
	require.NoError(t, err, "TLS dial of tls-port=")
	defer conn.Close()
	chain := conn.ConnectionState().PeerCertificates
	leaf := chain[0]
	roots := x509.NewCertPool()
	roots.AddCert(ca)
	inter := x509.NewCertPool()
	for _, c := range chain[1:] {
		inter.AddCert(c)
	}
	_, err = leaf.Verify(x509.VerifyOptions{Roots: roots, Intermediates: inter})
	assert.NoError(t, err, "the proxy's certificate does not chain to the .vv's ca=")
	if f.HostSubject != "" {
		assert.Equal(t, pki.HostSubject(leaf), f.HostSubject, "host-subject= must equal the certificate's subject exactly, in order")
	} else {
		assert.NoError(t, leaf.VerifyHostname(f.Host), "no host-subject=, so the certificate's subjectAltName must match host=")
	}
}
