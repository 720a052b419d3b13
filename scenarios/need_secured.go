package scenarios

import (
	"context"
	"errors"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"

	"github.com/spiceharness/spiceharness/harness"
	"github.com/spiceharness/spiceharness/proxy/spice"
)

func init() {
	Register(Scenario{
		Name:        "need-secured",
		Tier:        Core,
		Exercises:   ProxySPICE,
		Description: "a plain port that answers NEED_SECURED sends spice-gtk (and the Go client) on to the TLS port: with both ports in the .vv, sessions open",
		Needs:       []string{needScreenshot},
		Requires:    []harness.Capability{harness.CapSPICEClients}, // spice-gtk speaks no WebSocket
		Run: func(ctx context.Context, t harness.T, env *harness.Env) {
			vm := env.VM(0)
			f, err := env.FetchVV(ctx, harness.Proxy, vm)
			require.NoError(t, err, "fetch proxy .vv")
			if f.Port == 0 || f.TLSPort == 0 {
				t.Skipf("the proxy .vv has port=%d tls-port=%d: NEED_SECURED needs both", f.Port, f.TLSPort)
			}
			// A client with only the plain port: NEED_SECURED, unless the
			// proxy serves plain sessions (nothing to follow then). The Go
			// clients here ignore the .vv's secure-channels (which would
			// send them straight to TLS), as spicy-screenshot does.
			f.SecureChannels = nil
			plainOnly := harness.DialerFor(f)
			plainOnly.TLSPort = 0
			s, err := plainOnly.Connect(ctx)
			var le *spice.LinkError
			switch {
			case err == nil:
				s.Close()
				t.Skipf("the proxy serves sessions on its plain port: it sends no NEED_SECURED to follow")
			case !errors.As(err, &le) || le.Code != spice.ErrNeedSecured:
				wantLinkCode(t, err, spice.StepLinkReply, spice.ErrNeedSecured)
			}
			// spice-gtk with both ports tries plain first, gets
			// NEED_SECURED and re-links on TLS: the capture succeeds.
			g, err := env.FetchVV(ctx, harness.Proxy, vm) // the plain-only try may have used f's token
			require.NoError(t, err, "fetch proxy .vv")
			img, err := env.ScreenshotVV(ctx, g.File)
			require.NoError(t, err, "spicy-screenshot with both ports")
			assert.False(t, img.Blank(), "blank capture")
			// So does the Go client, which records the switch.
			h, err := env.FetchVV(ctx, harness.Proxy, vm)
			require.NoError(t, err, "fetch proxy .vv")
			h.SecureChannels = nil
			s, err = harness.DialerFor(h).Connect(ctx)
			require.NoError(t, err, "Go client with both ports")
			defer s.Close()
			assert.True(t, s.Main.FollowedNeedSecured, "main followed NEED_SECURED")
			assert.True(t, s.Main.Secure, "main ended on TLS")
		},
	})
}
