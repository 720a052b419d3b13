package proxy_test

import (
	"testing"
	"time"

	"github.com/spiceharness/spiceharness/proxy"
	"github.com/spiceharness/spiceharness/proxy/spice"
)

// TestIdleTimeoutIsPerSession: a quiet main channel lives while its
// session's inputs carry keys, well past IdleTimeout; once the whole
// session is quiet, its channels close.
func TestIdleTimeoutIsPerSession(t *testing.T) {
	const idle = 300 * time.Millisecond
	e := newEnv(t, func(p *proxy.Proxy) { p.IdleTimeout = idle })
	ctx := ctxT(t)
	s, _ := e.session(t, ctx, 0)
	in, err := s.Open(ctx, spice.ChannelInputs, 0)
	if err != nil {
		t.Fatal(err)
	}
	// Pacing the user's keys: four idle limits of them.
	for end := time.Now().Add(4 * idle); time.Now().Before(end); {
		if err := in.Type("a"); err != nil {
			t.Fatalf("typing on inputs: %v", err)
		}
		time.Sleep(idle / 6)
	}
	select {
	case <-s.Main.Done():
		t.Fatalf("the quiet main channel was cut while inputs carried keys: %v", s.Main.Err())
	default:
	}
	// Now nothing moves: the session ends within a few limits.
	for _, c := range []*spice.Channel{s.Main, in} {
		select {
		case <-c.Done():
		case <-time.After(10 * idle):
			t.Fatalf("%s still open %v after the session went quiet (IdleTimeout %v)", c.ID, 10*idle, idle)
		}
	}
}
