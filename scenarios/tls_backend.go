package scenarios

import (
	"context"
	"errors"

	"github.com/spiceharness/spiceharness/harness"
	"github.com/spiceharness/spiceharness/proxy/spice"
)

func init() {
	Register(Scenario{
		Name:        "tls-backend",
		Description: "qemu's tls-port: the exact host-subject links, a wrong one fails the TLS step; the proxy reaches it over TLS",
		Options:     []harness.Option{harness.TLSBackends()},
		Run: func(ctx context.Context, t harness.T, env *harness.Env) {
			vm := env.VM(0)
			c := vm.Console()
			if c.SecurePort == 0 || c.HostSubject == "" {
				t.Fatalf("TLS backend console has secure_port=%d host_subject=%q", c.SecurePort, c.HostSubject)
			}
			f, err := env.FetchVV(ctx, harness.Direct, vm)
			check(t, err, "fetch direct .vv")
			if f.TLSPort != c.SecurePort || f.HostSubject != c.HostSubject || f.CA == "" {
				t.Errorf("direct .vv: tls-port=%d host-subject=%q ca=%d bytes; want %d, %q and the source CA", f.TLSPort, f.HostSubject, len(f.CA), c.SecurePort, c.HostSubject)
			}
			d := harness.Dialer(f.File)
			d.SecureAll = true
			s, err := d.Connect(ctx)
			check(t, err, "TLS link with the exact host-subject")
			if !s.Main.Secure {
				t.Errorf("main not on TLS")
			}
			s.Close()

			wrong := harness.Dialer(f.File)
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
			check(t, err, "proxy session to a TLS backend")
			defer p.Close()
			_, in, _ := openAll(ctx, t, p)
			check(t, in.Type("tls"), "type")
			waitSerial(ctx, t, vm, `READY> tls`)
		},
	})
}
