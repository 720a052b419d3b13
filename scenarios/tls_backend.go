package scenarios

import (
	"context"
	"crypto/x509"
	"errors"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"

	"github.com/spiceharness/spiceharness/harness"
	"github.com/spiceharness/spiceharness/proxy/spice"
)

func init() {
	Register(Scenario{
		Name:        "tls-backend",
		Tier:        Core,
		Exercises:   ProxySPICE | ProxyAPI | QemuDirect,
		Description: "qemu's tls-port: the exact host-subject links, a wrong one fails the TLS step; the proxy reaches it over TLS",
		Options:     []harness.Option{harness.TLSBackends()},
		Run: func(ctx context.Context, t harness.T, env *harness.Env) {
			vm := env.VM(0)
			c := vm.Console()
			if c.SecurePort == 0 || c.HostSubject == "" {
				t.Fatalf("TLS backend console has secure_port=%d host_subject=%q", c.SecurePort, c.HostSubject)
			}
			if harness.HasCapability(env.Target(), harness.CapDirectVV) {
				f, err := env.FetchVV(ctx, harness.Direct, vm)
				require.NoError(t, err, "fetch direct .vv")
				assert.Equal(t, c.SecurePort, f.TLSPort, "direct .vv tls-port=")
				assert.Equal(t, c.HostSubject, f.HostSubject, "direct .vv host-subject=")
				assert.Equal(t, string(env.BackendCA.CertPEM), f.CA, "direct .vv ca= is the source's CA")
			}
			d := directDialer(vm)
			d.TLSPort, d.HostSubject = c.SecurePort, c.HostSubject
			d.CA = x509.NewCertPool()
			d.CA.AppendCertsFromPEM(env.BackendCA.CertPEM)
			d.SecureAll = true
			s, err := d.Connect(ctx)
			require.NoError(t, err, "TLS link with the exact host-subject")
			if !s.Main.Secure {
				t.Errorf("main not on TLS")
			}
			s.Close()

			wrong := *d
			wrong.SecureAll = true
			wrong.HostSubject = "O=spice-harness,CN=not-this-host"
			_, err = wrong.Connect(ctx)
			var le *spice.LinkError
			if !errors.As(err, &le) || le.Step != spice.StepTLS || !errors.Is(err, spice.ErrHostSubject) {
				t.Fatalf("wrong host-subject: got %v, want a TLS-step host-subject failure", err)
			}
			// Through the proxy the backend leg is TLS as well: keys reach
			// the guest.
			p, _, err := env.Connect(ctx, harness.Proxy, vm)
			require.NoError(t, err, "proxy session to a TLS backend")
			defer p.Close()
			_, in, _ := openAll(ctx, t, p)
			require.NoError(t, in.Type("tls"), "type")
			waitSerial(ctx, t, vm, `READY> tls`)
		},
	})
}
