package scenarios

import (
	"context"
	"errors"
	"time"

	"github.com/stretchr/testify/require"

	"github.com/spiceharness/spiceharness/harness"
	"github.com/spiceharness/spiceharness/proxy/spice"
)

// tunnelTicketTTL is the tunnel tickets' lifetime in tunnel-ticket-expiry.
const tunnelTicketTTL = 5 * time.Second

func init() {
	Register(Scenario{
		Name: "tunnel-ticket-expiry",
		Tier: Core,
		Description: "the qemu ticket of a tunnel .vv opens channels until its expiry and none after (Go client, spicy-screenshot); " +
			"a session linked in time outlives it and keeps typing; a fresh .vv opens a new session",
		Options:  append([]harness.Option{harness.TunnelTicketTTL(tunnelTicketTTL)}, tunnelLane...),
		Requires: []harness.Capability{harness.CapTunnelVV, harness.CapTunnelTicketTTL},
		Needs:    []string{needScreenshot},
		Run: func(ctx context.Context, t harness.T, env *harness.Env) {
			vm := env.VM(0)
			ttl := env.TunnelTicketTTL()
			asked := time.Now()
			f := fetchTunnelVV(ctx, t, env, vm)
			got := time.Now()
			s, err := harness.DialerFor(f).Connect(ctx)
			require.NoError(t, err, "main channel with the fresh ticket")
			defer s.Close()
			display, err := s.Open(ctx, spice.ChannelDisplay, 0)
			require.NoError(t, err, "display channel")
			require.NoError(t, display.InitDisplay(), "DISPLAY_INIT")
			inputs, err := s.Open(ctx, spice.ChannelInputs, 0)
			require.NoError(t, err, "inputs channel")

			// The expiry is the clock under test: qemu's, in whole seconds,
			// so within a second of ttl after the .vv was made. Until then
			// the ticket still opens channels: two seconds before, a new
			// channel of the session links.
			until(ctx, t, asked.Add(ttl-2*time.Second))
			cursor, err := s.Open(ctx, spice.ChannelCursor, 0)
			require.NoError(t, err, "a channel of the session two seconds before the ticket's expiry")
			require.NoError(t, cursor.Close(), "close the cursor channel")

			// From a second after the expiry on, nothing links with it.
			until(ctx, t, got.Add(ttl+1500*time.Millisecond))
			_, err = harness.DialerFor(f).Connect(ctx)
			wantLinkCode(t, err, spice.StepLinkResult, spice.ErrPermissionDenied)
			_, err = s.Open(ctx, spice.ChannelCursor, 0)
			if !errors.Is(err, spice.ErrPermissionDenied) {
				t.Errorf("a new channel of the live session after the expiry: %v, want PERMISSION_DENIED", err)
			}
			_, err = env.ScreenshotVV(ctx, f.File)
			var ce *harness.ClientError
			if !errors.As(err, &ce) || ce.Event != 23 {
				t.Errorf("spicy-screenshot with the expired ticket: got %v, want main channel event 23 (ERROR_AUTH)", err)
			}

			// The session linked in time lives on.
			wantOpen(t, "after the ticket's expiry", s.Main, display, inputs)
			require.NoError(t, inputs.Type("live"), "type through the session after the expiry")
			waitSerial(ctx, t, vm, `READY> live`)

			// A fresh .vv opens a new session (qemu serves one client: it
			// replaces the old one).
			s2, _, err := env.Connect(ctx, harness.Tunnel, vm)
			require.NoError(t, err, "a session from a fresh tunnel .vv")
			s2.Close()
		},
	})
}

// until waits for the wall clock to reach when: the clock under test is
// qemu's own (expire_password), which the test cannot move and which
// announces no expiry event.
func until(ctx context.Context, t harness.T, when time.Time) {
	t.Helper()
	select {
	case <-ctx.Done():
		t.Fatalf("waiting until %s: %v", when.Format(time.TimeOnly), context.Cause(ctx))
	case <-time.After(time.Until(when)):
	}
}
