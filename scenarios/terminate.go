package scenarios

import (
	"context"
	"time"

	"github.com/stretchr/testify/require"

	"github.com/spiceharness/spiceharness/harness"
	"github.com/spiceharness/spiceharness/proxy/spice"
)

// terminateWithin bounds how long a terminated session's channels may
// stay open after the terminate call returned. This repository's proxy
// closes them before the call returns (the client sees EOF a loopback
// hop later); the bound is wide so a loaded machine cannot fail it, yet
// a proxy that only expires tokens (and leaves the channels open) does.
const terminateWithin = 5 * time.Second

func init() {
	Register(Scenario{
		Name:        "terminate",
		Tier:        Hardening,
		Description: "terminating a session through the API drops all its live channels, and the session cannot be rejoined",
		Requires:    []harness.Capability{harness.CapTerminate},
		Run: func(ctx context.Context, t harness.T, env *harness.Env) {
			vm := env.VM(0)
			s, f, err := env.Connect(ctx, harness.Proxy, vm)
			require.NoError(t, err, "session")
			defer s.Close()
			display, inputs, cursor := openAll(ctx, t, s)
			id, err := env.SessionID(ctx, f)
			require.NoError(t, err, "the session of the .vv")
			start := time.Now()
			require.NoError(t, env.Terminate(ctx, id), "terminate session %s", id)
			call := time.Since(start)
			took := waitClosed(t, time.Now(), terminateWithin, "terminate", s.Main, display, inputs, cursor)
			t.Logf("terminate call %v; its 4 channels closed %v after it returned", call.Round(time.Millisecond), took.Round(time.Millisecond))
			alive(ctx, t, vm)
			// The session cannot be rejoined.
			_, err = harness.DialerFor(f).DialChannel(ctx, s.ID, spice.ChannelCursor, 0)
			wantRefused(t, err, "a channel joining the terminated session")
		},
	})
}
