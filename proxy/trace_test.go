package proxy_test

import (
	"sync"
	"testing"
	"time"

	"github.com/google/go-cmp/cmp"
	"github.com/spiceharness/spiceharness/proxy"
	"github.com/spiceharness/spiceharness/proxy/spice"
)

// A traced main channel reports every step once, in order, with its
// channel once the link message was read.
func TestTraceStepsOfAMainChannel(t *testing.T) {
	var mu sync.Mutex
	var got []proxy.TraceEvent
	e := newEnv(t, func(p *proxy.Proxy) {
		p.SetTrace(func(ev proxy.TraceEvent) {
			mu.Lock()
			got = append(got, ev)
			mu.Unlock()
		})
	})
	ctx := ctxT(t)
	e.session(t, ctx, 0) // MAIN_INIT relayed, ATTACH_CHANNELS sent
	steps := func() []string {
		mu.Lock()
		defer mu.Unlock()
		var out []string
		for _, ev := range got {
			if ev.Conn == 1 {
				out = append(out, ev.Step.String())
			}
		}
		return out
	}
	eventually(t, 5*time.Second, "the first message to qemu", func() bool { return len(steps()) == 12 })
	want := []string{"accepted", "tls_done", "link_read", "reply_sent", "ticket_read", "authorized",
		"backend_dialed", "backend_reply", "backend_result", "client_result"}
	s := steps()
	// The two relay directions race each other.
	if diff := cmp.Diff(want, s[:10]); diff != "" {
		t.Fatalf("unexpected steps (-want +got):\n%s", diff)
	}
	mu.Lock()
	defer mu.Unlock()
	for i, ev := range got {
		if ev.Conn != 1 {
			continue
		}
		if wantType := spice.ChannelMain; i >= 2 && ev.Channel != wantType {
			t.Errorf("step %s: unexpected channel %v, want %v", ev.Step, ev.Channel, wantType)
		}
		if i > 0 && ev.At.Before(got[i-1].At) && i < 10 {
			t.Errorf("step %s at %v is before %s", ev.Step, ev.At, got[i-1].Step)
		}
	}

	// Off again: a new connection reports nothing.
	e.proxy.SetTrace(nil)
	n := len(got)
	mu.Unlock()
	e.session(t, ctx, 0)
	mu.Lock()
	if len(got) != n {
		t.Errorf("%d steps traced after SetTrace(nil)", len(got)-n)
	}
}
