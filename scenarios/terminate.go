package scenarios

import (
	"context"
	"time"

	"github.com/spiceharness/spiceharness/harness"
	"github.com/spiceharness/spiceharness/proxy/spice"
)

func init() {
	Register(Scenario{
		Name:        "terminate",
		Description: "terminating a session through the API drops all its live channels within a second",
		Run: func(ctx context.Context, t harness.T, env *harness.Env) {
			vm := env.VM(0)
			s, f, err := env.Connect(ctx, harness.Proxy, vm)
			check(t, err, "session")
			defer s.Close()
			display, inputs, cursor := openAll(ctx, t, s)
			id := sessionIDFromTitle(f.Title)
			if id == "" {
				t.Fatalf("no session id in title %q", f.Title)
			}
			start := time.Now()
			check(t, env.Terminate(ctx, id), "POST /session/{id}/terminate")
			took := waitClosed(t, start, time.Second, "terminate", s.Main, display, inputs, cursor)
			t.Logf("terminate → 4 channels closed in %v", took)
			alive(ctx, t, vm)
			// The session cannot be rejoined.
			_, err = harness.Dialer(f.File).DialChannel(ctx, s.ID, spice.ChannelCursor, 0)
			if _, refused := spice.CodeOf(err); !refused {
				t.Errorf("joining a terminated session: got %v, want a link refusal", err)
			}
		},
	})
}

// sessionIDFromTitle reads the session id from "NAME via proxy session ID".
func sessionIDFromTitle(title string) string {
	const marker = " via proxy session "
	for i := len(title) - len(marker); i >= 0; i-- {
		if title[i:i+len(marker)] == marker {
			return title[i+len(marker):]
		}
	}
	return ""
}
