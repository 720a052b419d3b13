package scenarios

import (
	"context"

	"github.com/spiceharness/spiceharness/harness"
	"github.com/spiceharness/spiceharness/proxy/spice"
)

func init() {
	Register(Scenario{
		Name:        "need-secured",
		Description: "the proxy's plain port answers NEED_SECURED and spice-gtk follows to the TLS port",
		Needs:       []string{needScreenshot},
		Run: func(ctx context.Context, t harness.T, env *harness.Env) {
			vm := env.VM(0)
			f, err := env.FetchVV(ctx, harness.Proxy, vm)
			check(t, err, "fetch proxy .vv")
			// A client with only the plain port is told NEED_SECURED.
			plainOnly := harness.Dialer(f.File)
			plainOnly.TLSPort = 0
			_, err = plainOnly.Connect(ctx)
			wantLinkCode(t, err, spice.StepLinkReply, spice.ErrNeedSecured)
			// spice-gtk with both ports tries plain first, gets
			// NEED_SECURED and re-links on TLS: the capture succeeds.
			img, err := env.ScreenshotVV(ctx, f.File)
			check(t, err, "spicy-screenshot with both ports")
			if img.Blank() {
				t.Errorf("blank capture")
			}
			// So does the Go client, which records the switch.
			g, err := env.FetchVV(ctx, harness.Proxy, vm)
			check(t, err, "fetch proxy .vv")
			s, err := harness.Dialer(g.File).Connect(ctx)
			check(t, err, "Go client with both ports")
			defer s.Close()
			if !s.Main.FollowedNeedSecured || !s.Main.Secure {
				t.Errorf("main did not go plain → NEED_SECURED → TLS (followed=%v secure=%v)", s.Main.FollowedNeedSecured, s.Main.Secure)
			}
		},
	})
}
